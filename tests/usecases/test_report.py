"""`ksecrets report`: one self-contained page (and its JSON) rendered by a real headless Chromium:
the matrix has the expected cells, nothing loads from outside, no value appears anywhere.

`KSECRETS_WRITE_SCREENSHOT=1` also copies the screenshot to docs/report.png (the README's)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import ROOT, ksecrets_in_process

SEAL_KEY = "dGVzdC1mbGVldC1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A="
CANARIES = ("canary-report-api-1", "canary-report-api-2", "canary-report-db", "canary-report-extra")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _ok(res) -> None:
    assert res.returncode == 0, res.stdout + res.stderr


def demo_fleet(root: Path, tmp: Path) -> None:
    """staging + stg-2 (sealed, own keys), production + prod-eu-2 (vault): one value differs
    between the staging clusters, one key is sealed in staging only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSECRETS_")}
    env |= {"KSECRETS_SEAL_KEY": SEAL_KEY, "KSECRETS_BACKUP_PASSPHRASE": "a-long-test-passphrase-0123"}
    for name, e in (("stg-2", "staging"), ("prod-eu-2", "production")):
        _ok(ksecrets_in_process("stack", "new", name, "--env", e, "--root", str(root)))
    _ok(
        ksecrets_in_process(
            "keygen", "--stack", "stg-2", "--backup-file", str(tmp / "k.ksbackup"), "--root", str(root), env=env
        )
    )
    values = tmp / ".env"
    values.write_text(f"API_KEY={CANARIES[0]}\nDATABASE_URL={CANARIES[2]}\n")
    seal = ("seal", "--name", "my-app-secrets", "--from-env-file", str(values), "--root", str(root))
    _ok(ksecrets_in_process(*seal, "--stack", "staging", "--stack", "stg-2", env=env))
    values.write_text(f"API_KEY={CANARIES[1]}\n")
    _ok(ksecrets_in_process(*seal, "--stack", "stg-2", env=env))
    values.write_text(f"EXTRA_TOKEN={CANARIES[3]}\n")
    _ok(ksecrets_in_process(*seal, "--stack", "staging", env=env))


class _Cells(HTMLParser):
    """data-slot rows → data-stack → data-state of the matrix's cells, as the browser laid them out."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, dict[str, str]] = {}
        self.slot: str | None = None
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for k in ("src", "href"):
            if a.get(k):
                self.external.append(f"{tag} {k}={a[k]}")
        if tag == "tr":
            self.slot = a.get("data-slot")
        if tag == "td" and self.slot and "data-state" in a:
            self.cells.setdefault(self.slot, {})[a["data-stack"]] = a["data-state"]


def _chromium(*args: str, tmp: Path, timeout: float = 120) -> str:
    """Run headless Chromium (its own process group, killed by that id whatever happens)."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--hide-scrollbars",
        *args,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "HOME": str(tmp)},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return out


@pytest.fixture
def report(repo_copy: Path, tmp_path: Path) -> Path:
    demo_fleet(repo_copy, tmp_path)
    out = tmp_path / "fleet.html"
    res = ksecrets_in_process("report", "--out", str(out), "--root", str(repo_copy))
    _ok(res)
    assert res.stdout.splitlines()[0] == f"{out}: 4 cluster(s), 3 secret key(s), 3 finding(s)"
    return out


EXPECTED = {
    "my-app/my-app-secrets/API_KEY": {"staging": "differs", "stg-2": "differs", "production": "ok", "prod-eu-2": "ok"},
    "my-app/my-app-secrets/DATABASE_URL": {s: "ok" for s in ("staging", "stg-2", "production", "prod-eu-2")},
    "my-app/my-app-secrets/EXTRA_TOKEN": {
        "staging": "ok",
        "stg-2": "missing",
        "production": "absent",
        "prod-eu-2": "absent",
    },
}


def test_the_json_holds_the_matrix_and_the_readers_and_no_value(report):
    doc = json.loads(report.with_suffix(".json").read_text())
    assert doc["matrix"] == EXPECTED
    assert sorted(f["kind"] for f in doc["findings"]) == ["missing-key", "missing-key", "value-differs"]
    assert doc["readers"]["staging"]["my-app/my-app-secrets"] == [
        "Deployment/my-app (envFrom)",
        "Deployment/my-app (secretKeyRef DATABASE_URL)",
    ]
    assert doc["clusters"]["staging"]["certificate"]["days_left"] > 0
    assert doc["clusters"]["staging"]["certificate"]["age_days"] >= 0
    for text in (report.read_text(), report.with_suffix(".json").read_text()):
        for canary in CANARIES:
            assert canary not in text
        assert "hmac-sha256:" not in text and "AgA" not in text  # no digest, no ciphertext


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_matrix_and_loads_nothing_from_outside(report, tmp_path):
    page = report.read_text()
    assert "<script" not in page.lower()
    dom = _chromium("--dump-dom", report.as_uri(), tmp=tmp_path)
    parsed = _Cells()
    parsed.feed(dom)
    assert parsed.cells == EXPECTED  # every cell, as the browser built the DOM
    assert parsed.external == []  # no src/href: nothing to fetch
    assert "script" not in parsed.tags
    assert "Fleet report" in dom and 'id="certificates"' in dom and "Deployment/my-app (envFrom)" in dom
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,1500", report.as_uri(), tmp=tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a page was drawn, not a blank
    import struct

    assert struct.unpack(">II", data[16:24]) == (1200, 1500)
    if os.environ.get("KSECRETS_WRITE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy2(shot, ROOT / "docs" / "report.png")
