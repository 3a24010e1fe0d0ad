"""promtool (the real one, from Debian's prometheus package via .ci/tools.sh) and stack configs."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
CERT_DAYS = 40


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool") or (
        str(ROOT / ".tools/bin/promtool") if (ROOT / ".tools/bin/promtool").is_file() else None
    )
    if not found:
        pytest.skip("promtool not found on PATH or in .tools/bin (run `bash .ci/tools.sh`)")
    return found


@pytest.fixture(scope="session")
def vault_cfg():
    from ksecrets.config.load import load_stack_file

    return load_stack_file(ROOT / "tests/jobs/rotate/fixtures/Pulumi.rotating.yaml")


@pytest.fixture(scope="session")
def sealed_cfg(tmp_path_factory):
    """The sealed-secrets fixture stack, with a certificate valid for CERT_DAYS from the epoch."""
    from ksecrets.config.load import load_stack_file
    from ksecrets.sealing.keys import cert_pem, generate_key_and_cert

    d = tmp_path_factory.mktemp("sealedmon")
    shutil.copy(FIXTURES / "Pulumi.sealedmon.yaml", d / "Pulumi.sealedmon.yaml")
    _, cert = generate_key_and_cert(2048, dt.timedelta(days=CERT_DAYS), now=EPOCH)
    (d / "cert.pem").write_bytes(cert_pem(cert))
    return load_stack_file(d / "Pulumi.sealedmon.yaml")
