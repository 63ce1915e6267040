#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Debian's chromium, in which the HTML report
# is rendered headless (tests/test_report.py). Idempotent and silent when everything is installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "scripts/system-deps.sh: no apt-get here; install Chromium yourself (the report test needs \`chromium\`)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "scripts/system-deps.sh: run as root (or install sudo) to apt-get install chromium" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "==> installing chromium (apt-get; the report test renders the page in it)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-dejavu-core: without recommends, chromium would draw the screenshot's text as boxes.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
