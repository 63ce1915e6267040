from codefactory.cli import run

run()
