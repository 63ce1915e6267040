from codefactory.cli import main

main()
