"""The package type-checks: mypy, configured in pyproject.toml ([tool.mypy]), reports no error.

mypy comes with the `test` extra (scripts/setup.sh installs it); without it this test fails rather than skips,
so that a checkout missing it is not taken for one that type-checks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A cold run takes about 10 s; with .mypy_cache (in the repository root, git-ignored) under 1 s.
TIMEOUT_S = 300


def test_mypy_reports_no_error() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, f"mypy exited with {result.returncode}:\n{result.stdout}{result.stderr}"
