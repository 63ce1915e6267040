#!/usr/bin/env bash
# Quick start, part 1: set up, then generate a real dataset from this repository's own
# sources with the embedded model (no API key, no network). Extra arguments go to `build`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> codefactory build on $(pwd) with the embedded model"
.venv/bin/codefactory --backend local build --limit "${LIMIT:-6}" --qa-count "${QA_COUNT:-2}" --count "${COUNT:-1}" "$@"
echo "==> dataset: $(pwd)/data/combined_sft.jsonl ($(wc -l < data/combined_sft.jsonl) samples)"
