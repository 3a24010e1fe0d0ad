"""The git drivers on a sops stack's files (`secrets/<stack>/*.sops.yaml`, issue 20 §2): real git,
the drivers `ksecrets git setup` installs, edits made with `ksecrets sops set`, and the real `sops`
(the e2e tool cache, when built) decrypting every merged file, so verifying its MAC.

- Two branches changing different keys merge clean, and the merged file decrypts (MAC valid).
- The same key changed to different values on both sides is a conflict: git exits non-zero, the
  file is ours as it was (valid, decryptable), the message names the key and never a value.
- Without an age key (SOPS_AGE_KEY_FILE) a merge that needs one is a conflict, never a file with a
  broken MAC. Branches with different data keys (the file created on both) merge by value.
- Property (Hypothesis): generated Secrets (unusual key names, empty values, `=`, unicode, CRLF env
  files), random `sops set` edits on two branches, maybe a re-key on one, real `git merge`: every
  value present and decrypting to the three-way merge of the branches' values, or a conflict
  that some key really has; never a silent loss.
- The textconv shows which keys changed, never a value or a ciphertext.

Examples: KSECRETS_SOPS_MERGE_EXAMPLES in all, split over two shards (two test items, which
pytest-xdist runs on two workers at once). Default 10 (a local `make test`); CI
(.github/workflows/ci.yml, .ci/run) sets 25, the count before the suite was made faster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ksecrets.envfile import parse_env_file
from ksecrets.sealing import sops
from tests.git.test_drivers import env
from tests.backends.test_sops import STACK

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

EXAMPLES = int(os.environ.get("KSECRETS_SOPS_MERGE_EXAMPLES", "10"))
SHARDS = 2  # test items sharing EXAMPLES: each draws its own random examples
REL = "secrets/dev/web-secrets.sops.yaml"
COUNTS = {"examples": 0, "clean": 0, "conflict": 0, "sops_verified": 0, "rekeyed_branch": 0, "both_created": 0}


def sops_bin() -> Path | None:
    from tests.e2e.harness import binaries, missing_binaries

    return None if missing_binaries(["sops"]) else binaries()["sops"]


def real_sops(path: Path, key_file: Path) -> dict | None:
    """`sops decrypt` of the file (None when the binary is not built); asserts it succeeds."""
    binary = sops_bin()
    if binary is None:
        return None
    e = {"PATH": "/usr/bin:/bin", "HOME": str(key_file.parent), "SOPS_DISABLE_VERSION_CHECK": "1"}
    e["SOPS_AGE_KEY_FILE"] = str(key_file)
    proc = subprocess.run(
        [str(binary), "decrypt", "--input-type", "yaml", "--output-type", "yaml", str(path)],
        env=e,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    COUNTS["sops_verified"] += 1
    return yaml.safe_load(proc.stdout)


def git(repo: Path, *argv: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    res = subprocess.run(["git", *argv], cwd=repo, capture_output=True, text=True, env=env(**extra))
    if check and res.returncode != 0:
        raise AssertionError(f"git {argv}: {res.stdout}{res.stderr}")
    return res


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agekeys")
    out = {}
    for name in ("a", "b"):
        key = sops.generate_age_key()
        path = folder / f"{name}.agekey"
        path.write_text(key.key_file())
        out[name] = (key, path)
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory, keys):
    """A repository with the sops stack committed and the drivers installed by `ksecrets git setup`."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "Pulumi.dev.yaml").write_text(STACK.format(recipient=keys["a"][0].recipient))
    res = subprocess.run(
        [os.sys.executable, "-m", "ksecrets", "git", "setup"], cwd=repo, capture_output=True, text=True, env=env()
    )
    assert res.returncode == 0, res.stderr
    assert "/secrets/*/*.sops.yaml merge=ksecrets diff=ksecrets" in (repo / ".gitattributes").read_text()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "stack")
    return repo


def fresh(template: Path, where: Path) -> Path:
    repo = where / "repo"
    shutil.copytree(template, repo, symlinks=True)
    return repo


def sops_set(repo: Path, env_bytes: bytes, key_file: Path) -> None:
    from ksecrets.usecases.sops_set import sops_set as set_values

    values = parse_env_file(env_bytes, ".env")
    set_values(repo, "dev", name="web-secrets", values=values, key_file=key_file)


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message, "--allow-empty")


def values_of(repo: Path, key_file: Path) -> dict[str, bytes]:
    return sops.secret_values((repo / REL).read_text(), sops.identities_from_key_file(key_file.read_text(), "k"), REL)


def merge(repo: Path, key_file: Path | None) -> subprocess.CompletedProcess:
    extra = {"SOPS_AGE_KEY_FILE": str(key_file)} if key_file else {}
    return git(repo, "merge", "-q", "--no-edit", "theirs", check=False, **extra)


def branches(repo: Path, key_file: Path, base: bytes | None, ours: list[bytes], theirs: list[bytes]) -> None:
    if base is not None:
        sops_set(repo, base, key_file)
        commit(repo, "base")
    git(repo, "branch", "theirs")
    for n, e in enumerate(ours):
        sops_set(repo, e, key_file)
        commit(repo, f"ours {n}")
    git(repo, "checkout", "-q", "theirs")
    for n, e in enumerate(theirs):
        sops_set(repo, e, key_file)
        commit(repo, f"theirs {n}")
    git(repo, "checkout", "-q", "main")


# --- examples -------------------------------------------------------------------------------------


def test_different_keys_merge_clean_and_sops_verifies_the_mac(template, keys, tmp_path):
    repo = fresh(template, tmp_path)
    _, key_file = keys["a"]
    branches(repo, key_file, b"A=1\nB=2\n", [b"A=ours\n"], [b"B=theirs\nC=\n"])
    res = merge(repo, key_file)
    assert res.returncode == 0, res.stdout + res.stderr
    assert values_of(repo, key_file) == {"A": b"ours", "B": b"theirs", "C": b""}
    shown = real_sops(repo / REL, key_file)
    if shown is not None:
        assert shown["data"]["A"] == "b3Vycw==" and shown["data"]["C"] == ""


def test_the_same_key_changed_on_both_sides_is_a_conflict_naming_it(template, keys, tmp_path):
    repo = fresh(template, tmp_path)
    _, key_file = keys["a"]
    branches(repo, key_file, b"A=1\nB=2\n", [b"A=our-secret-value\n"], [b"A=their-secret-value\nB=3\n"])
    ours_text = (repo / REL).read_text()
    res = merge(repo, key_file)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "data.A: changed on both branches" in out and "secret-value" not in out
    assert "CONFLICT" in out and (repo / REL).read_text() == ours_text  # ours, as it was: valid
    assert values_of(repo, key_file)["A"] == b"our-secret-value"
    assert git(repo, "show", f"MERGE_HEAD:{REL}").stdout  # theirs is kept by git


def test_without_an_age_key_a_merge_is_a_conflict_never_a_broken_mac(template, keys, tmp_path):
    repo = fresh(template, tmp_path)
    _, key_file = keys["a"]
    branches(repo, key_file, b"A=1\nB=2\n", [b"A=x\n"], [b"B=y\n"])
    ours_text = (repo / REL).read_text()
    res = merge(repo, None)
    assert res.returncode != 0 and "SOPS_AGE_KEY_FILE" in res.stdout + res.stderr
    assert (repo / REL).read_text() == ours_text
    # A key that opens no side: a conflict too.
    res2 = git(repo, "merge", "--abort")
    assert res2.returncode == 0
    res = merge(repo, keys["b"][1])
    assert res.returncode != 0 and "none of the given age identities" in res.stdout + res.stderr
    assert (repo / REL).read_text() == ours_text


def test_different_data_keys_merge_by_value(template, keys, tmp_path):
    repo = fresh(template, tmp_path)
    _, key_file = keys["a"]
    branches(repo, key_file, None, [b"A=1\nSAME=s\n"], [b"B=2\nSAME=s\n"])  # created on both sides
    res = merge(repo, key_file)
    assert res.returncode == 0, res.stdout + res.stderr
    assert values_of(repo, key_file) == {"A": b"1", "SAME": b"s", "B": b"2"}
    real_sops(repo / REL, key_file)


def test_a_rekey_on_one_branch_and_an_edit_on_the_other(template, keys, tmp_path):
    repo = fresh(template, tmp_path)
    (a, a_file), (b, b_file) = keys["a"], keys["b"]
    sops_set(repo, b"A=1\n", a_file)
    commit(repo, "base")
    git(repo, "branch", "theirs")
    sops_set(repo, b"B=2\n", a_file)
    commit(repo, "ours")
    git(repo, "checkout", "-q", "theirs")
    text = (repo / REL).read_text()
    (repo / REL).write_text(sops.updatekeys(text, [a.identity], [a.recipient, b.recipient], REL))
    commit(repo, "theirs: b joins")
    git(repo, "checkout", "-q", "main")
    res = merge(repo, a_file)
    assert res.returncode == 0, res.stdout + res.stderr
    assert values_of(repo, b_file) == {"A": b"1", "B": b"2"}  # b's key opens the merged file
    real_sops(repo / REL, b_file)


def test_textconv_shows_changed_keys_never_values(template, keys, tmp_path):
    repo = fresh(template, tmp_path)
    _, key_file = keys["a"]
    sops_set(repo, b"A=alpha-value\nB=beta-value\n", key_file)
    commit(repo, "base")
    before = (repo / REL).read_text()
    sops_set(repo, b"B=gamma-value\nC=delta-value\n", key_file)
    diff = git(repo, "diff", "--", REL).stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert sorted(line.split(":")[0] for line in changed) == ["+  B", "+  C", "-  B"]
    after = (repo / REL).read_text()
    for secret in ("alpha", "beta", "gamma", "delta"):
        assert secret not in diff
    for text in (before, after):
        doc = yaml.safe_load(text)
        for ciphertext in doc["data"].values():
            assert ciphertext[20:40] not in diff  # no ciphertext either
        assert doc["sops"]["age"][0]["enc"].splitlines()[1] not in diff


# --- the property ---------------------------------------------------------------------------------

KEY_NAMES = st.sampled_from(["A", "b", "-x", "_", "a.b", "K-1", ".dot", "Z" * 30, "x_y.z-w"])
VALUES = st.one_of(
    st.sampled_from(["", "=", "a=b=c", "ünï€ødé", "x y", "🔑", "0", "true", "null"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=+/-_.:@ ", max_size=12).map(str.strip),
)
ENV = st.dictionaries(KEY_NAMES, VALUES, min_size=1, max_size=4)


def env_bytes(values: dict[str, str], crlf: bool) -> bytes:
    nl = "\r\n" if crlf else "\n"
    return "".join(f"{k}={v}{nl}" for k, v in values.items()).encode("utf-8")


@pytest.mark.parametrize("shard", range(SHARDS))
@settings(
    max_examples=-(-EXAMPLES // SHARDS),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    base=st.one_of(st.none(), ENV),
    ours=st.lists(ENV, min_size=1, max_size=2),
    theirs=st.lists(ENV, min_size=1, max_size=2),
    crlf=st.booleans(),
    rekey=st.booleans(),
)
def test_property_every_value_or_a_conflict(shard, template, keys, tmp_path_factory, base, ours, theirs, crlf, rekey):
    COUNTS["examples"] += 1
    repo = fresh(template, tmp_path_factory.mktemp("prop"))
    (a, a_file), (b, _) = keys["a"], keys["b"]
    models: dict[str, dict[str, bytes]] = {}
    as_env = lambda d: env_bytes(d, crlf)  # noqa: E731
    if base is not None:
        sops_set(repo, as_env(base), a_file)
        commit(repo, "base")
    else:
        COUNTS["both_created"] += 1
    models["base"] = values_of(repo, a_file) if (repo / REL).exists() else {}
    git(repo, "branch", "theirs")
    for n, e in enumerate(ours):
        sops_set(repo, as_env(e), a_file)
        commit(repo, f"ours {n}")
    models["ours"] = values_of(repo, a_file)
    git(repo, "checkout", "-q", "theirs")
    for n, e in enumerate(theirs):
        sops_set(repo, as_env(e), a_file)
        commit(repo, f"theirs {n}")
    if rekey:  # b joins on their branch (sops updatekeys: same data key, new recipients)
        COUNTS["rekeyed_branch"] += 1
        text = (repo / REL).read_text()
        (repo / REL).write_text(sops.updatekeys(text, [a.identity], [a.recipient, b.recipient], REL))
        commit(repo, "theirs: b joins")
    models["theirs"] = values_of(repo, a_file)
    git(repo, "checkout", "-q", "main")
    ours_text = (repo / REL).read_text()
    res = merge(repo, a_file)
    bm, om, tm = models["base"], models["ours"], models["theirs"]
    clashing = [k for k in {*om, *tm} if om.get(k) != tm.get(k) and bm.get(k) not in (om.get(k), tm.get(k))]
    assert "Traceback" not in res.stderr
    if res.returncode != 0:
        COUNTS["conflict"] += 1
        event("conflict")
        assert clashing, f"a conflict with nothing to conflict about: {res.stdout}{res.stderr}"
        assert (repo / REL).read_text() == ours_text  # ours, as it was: valid and decryptable
        assert values_of(repo, a_file) == om
        return
    COUNTS["clean"] += 1
    event("clean")
    assert not clashing, f"merged clean although {clashing} changed on both sides"
    expected = {}
    for k in dict.fromkeys([*om, *tm]):
        o, t, bv = om.get(k), tm.get(k), bm.get(k)
        expected[k] = t if o == bv and t != bv else o
    assert values_of(repo, a_file) == expected
    shown = real_sops(repo / REL, a_file)
    if shown is not None:
        import base64

        assert {k: base64.b64decode(v or "") for k, v in shown["data"].items()} == expected
    if rekey:
        assert len(yaml.safe_load((repo / REL).read_text())["sops"]["age"]) == 2


def test_property_counts():
    """Printed with -s: the property's case counts of this run."""
    print("\nsops merge property:", ", ".join(f"{k} {v}" for k, v in COUNTS.items()))
