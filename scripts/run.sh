#!/usr/bin/env bash
# Quick start, part 1: set up, then generate a real dataset from this repository's own
# sources with the embedded model (no API key, no network). Extra arguments go to `build`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> codefactory build on $(pwd) with the embedded model (a few minutes on 2 cores; the model is tiny, so expect rough samples)"
# Samples the grounding check flags stay in, marked in their meta: a 135M model rarely names the code's
# identifiers, and the quick start shows the pipeline, not a training set.
export CODEFACTORY_QUALITY_FLAGGED=${CODEFACTORY_QUALITY_FLAGGED:-keep}
# It also writes one-sentence reasoning, which the default gate (3 steps) drops; the other checks
# (empty, placeholder, refusal, duplicates, ...) still apply.
export CODEFACTORY_QUALITY_MIN_TRACE_STEPS=${CODEFACTORY_QUALITY_MIN_TRACE_STEPS:-1}
status=0
.venv/bin/codefactory --backend local build --limit "${LIMIT:-8}" --qa-count "${QA_COUNT:-2}" --count "${COUNT:-1}" "$@" || status=$?
# 1 means the run finished but some samples failed (the summary above lists them): the dataset is still written.
if [ "$status" -gt 1 ]; then exit "$status"; fi
samples=$(wc -l < data/combined_sft.jsonl)
echo "==> dataset: $(pwd)/data/combined_sft.jsonl ($samples samples; quality verdicts in data/quality.json)"
if [ "$samples" -eq 0 ]; then
  echo "no sample passed the quality checks: run again with a larger LIMIT, or point codefactory at a bigger model (README)" >&2
  exit 1
fi
