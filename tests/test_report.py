"""The HTML report renders in a real headless Chromium: no console message, charts drawn, a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codefactory import pipeline
from codefactory.report import write_report
from tests.planted import PLANTED, billing_repo, responder, workspace
from tests.servers import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>"


def chromium() -> str:
    """Debian's chromium (scripts/system-deps.sh installs it); a test run without it is broken, not skipped."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: run `bash scripts/system-deps.sh` (scripts/test.sh does)")
    return path


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        # Any request that leaves the page would fail and be logged: the page must need none.
        "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,2200", *args, page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture
def report_page(tmp_path: Path, scripted_server: ScriptedServer) -> Path:
    root = billing_repo(tmp_path)
    planted = dict(PLANTED)
    hostile = dict(PLANTED["refusal"][0], answer="As an AI I cannot say. " + HOSTILE)
    planted["refusal"] = (hostile, "refusal")
    responder(scripted_server, planted)
    ws = workspace(root, scripted_server, **{"scene1.qa_count": len(planted), "scene2.count": 2})
    assert not pipeline.run_build(ws).failed
    return write_report(ws, tmp_path / "report.html")


def test_report_is_self_contained(report_page: Path) -> None:
    html = report_page.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.I)
    assert "url(" not in html and "@import" not in html
    assert "<script src" not in html and "<link" not in html
    assert HOSTILE not in html, "sample text is escaped inside the embedded JSON"
    assert html.count("</script>") == 2  # the data block and the script, nothing a sample could close


def test_report_renders_in_headless_chromium(report_page: Path, tmp_path: Path) -> None:
    dom = run_chromium(report_page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, "the page logged to the console:\n" + "\n".join(console)
    page = dom.stdout
    assert 'data-rendered="true"' in page, "the report script did not finish"
    assert '<div id="script-error"></div>' in page, "the page's error handler fired"
    assert page.count('class="chart"') >= 6, "every chart was drawn as SVG"
    assert page.count('class="bar"') >= 10
    for reason in ("placeholder", "refusal", "unknown_identifiers", "near_duplicate", "reinvents_existing"):
        assert reason in page, reason
    assert page.count('<li data-id="') >= len(PLANTED)
    assert 'class="no">' in page and "def void(self, invoice: Invoice)" in page, "source code beside the sample"
    # The hostile sample text is shown as text: the title is intact and no element was injected.
    assert "<title>codefactory report: billing v1</title>" in page and '<img src="x"' not in page

    shot = tmp_path / "report.png"
    taken = run_chromium(report_page, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_cli_report(report_page: Path, tmp_path: Path) -> None:
    repo = report_page.parent / "billing"
    result = subprocess.run([sys.executable, "-m", "codefactory", "--repo", str(repo), "report"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (repo / "data" / "report.html").is_file() and "report -> " in result.stderr
