#!/usr/bin/env bash
# Quick start, part 2: set up and run the whole test suite, end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/system-deps.sh ]; then bash scripts/system-deps.sh; fi
echo "==> running tests"
.venv/bin/python -m pytest -q "$@"
