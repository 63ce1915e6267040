"""Compatibility entry point: `python3 main.py scene1 --limit 5 --dry-run` from the repo root."""

from codefactory.cli import main

if __name__ == "__main__":
    main()
