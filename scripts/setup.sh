#!/usr/bin/env bash
# Creates .venv and installs codefactory with the embedded model and test tools.
# Safe to re-run: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "codefactory needs Python >= 3.10 (found: $("$PYTHON" --version 2>&1))" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip

extras=${CODEFACTORY_EXTRAS:-local,test}
if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null && [[ $extras == *local* ]]; then
  echo "==> building llama-cpp-python for the embedded model (compiles llama.cpp from source: about 6-12 minutes on 2 cores)"
  # A portable build (AVX2, FMA, F16C on x86): llama.cpp's default, -march=native, takes whatever the building
  # CPU advertises, and a virtual machine may advertise instructions it then refuses (AVX-512 FP16, AMX:
  # "Illegal instruction" in llama_cpp). No cached wheel either: one built natively would carry them.
  # Built in the background with progress lines, so a long silent compile is never mistaken for a hang.
  CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"} \
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    .venv/bin/python -m pip install --quiet --no-cache-dir 'llama-cpp-python[server]>=0.3.8' > .venv/llama-build.log 2>&1 &
  pid=$!
  start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    kill -0 "$pid" 2>/dev/null && echo "    ... still compiling llama.cpp ($((SECONDS - start)) s; log: .venv/llama-build.log)"
  done
  if ! wait "$pid"; then
    tail -n 30 .venv/llama-build.log >&2
    echo "building llama-cpp-python failed (full log: .venv/llama-build.log)" >&2
    exit 1
  fi
  echo "    llama-cpp-python installed in $((SECONDS - start)) s"
fi
echo "==> installing codefactory[$extras]"
.venv/bin/python -m pip install --quiet -e ".[$extras]"
# An editable install leaves the package uncompiled, and where PYTHONDONTWRITEBYTECODE is set (CI images)
# every run would compile it again (~0.1 s a command): byte-compile it as a regular install does.
.venv/bin/python -m compileall -q codefactory >/dev/null
