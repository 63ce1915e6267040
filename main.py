"""Compatibility entry point: `python3 main.py scene1 --limit 5 --dry-run` from the repo root."""

from codefactory.cli import run

if __name__ == "__main__":
    run()
