"""A fleet at size: C clusters of one environment × A apps (default 1, 10 and 50 clusters × 200 apps:
up to 10,000 SealedSecrets), every fleet-wide command timed in one run, per object.

The fleet is what `ksecrets stack new --env production` makes: `environments/production.yaml` with
the A apps (the export benchmark's apps: Namespace, ServiceAccount, Role, RoleBinding, Deployment,
SealedSecret each), and C cluster stacks extending it, each with its own RSA-4096 sealing key and
its sealed values: A Secrets × 3 values, sealed for real with that cluster's certificate by the code
`ksecrets seal` runs, with digests and fleet digests (KSECRETS_SEAL_KEY); one value differs in the
last cluster, so `drift` has one finding to report. Then, as a user runs them (the `ksecrets`
command, a process each, with --all-stacks):

- `export`: k8s/<stack>/ for every cluster;
- `verify`: every entry against its cluster's certificate;
- `drift --json`: keys and values across clusters by their stored fleet digests, never decrypting;
- `report`: the HTML page and its JSON;
- `seal --env production`: one Secret (3 values) sealed into every cluster, one lock order;
- `reseal --all-stacks --jobs 1` and `--jobs 2`, after every cluster renewed its key: each cluster
  re-sealed for its own new certificate with every cluster's old key given (one RSA private and one
  public operation per value; each value decrypted with the key of the fingerprint it records).

Printed per command and size: wall seconds, CPU seconds of the process tree (user+sys from
getrusage of the waited children, so two busy cores show as CPU ≈ 2 × wall), microseconds of wall
and of CPU per SealedSecret (C × A; per cluster for `seal --env`), and each one's ratio to the
one-cluster run (CPU is the figure to read on a machine that other work shares). Beside reseal, the
time its RSA alone takes on one core: one private and one public RSA-4096 OAEP operation per value
at the rate of the OpenSSL that `cryptography` bundles (what ksecrets runs; the system's `openssl
speed rsa4096` is printed too, and is slower), and a line per fleet size comparing `--jobs 1` with
`--jobs <cores>`: wall and CPU. The load average is printed before and after each command, and,
before each fleet size's reseal, how many cores this session gets with one busy process and with
two: with the kernel's autogroup scheduling, CPU is shared between sessions, so on a loaded machine
the second figure stays near the first and `--jobs 2` cannot be faster (README, round 9).

Run: .venv/bin/python bench/fleet.py [--clusters 1,10,50] [--apps 200]   (about 12 min on a busy 2-core machine)
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.export import stack_doc  # noqa: E402
from bench.seal import openssl_rsa4096  # noqa: E402
from ksecrets import yamlio  # noqa: E402
from ksecrets.sealing import churn  # noqa: E402
from ksecrets.sealing.certs import load_certificate  # noqa: E402
from ksecrets.sealing.crypto import encrypt_value, label_for  # noqa: E402

KSECRETS = ROOT / ".venv" / "bin" / "ksecrets"
SEAL_KEY = base64.b64encode(b"bench-fleet-seal-key-0123456789ab").decode()
KEYS = ("API_KEY", "DATABASE_URL", "PASSWORD")


def _keypair(tag: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a fresh RSA-4096 sealing key, as the controller makes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sealed-secret-{tag}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem


def library_rsa4096(seconds: float = 2.0) -> tuple[float, float]:
    """(private, public) RSA-4096 OAEP operations/s on one core with the OpenSSL that ksecrets
    actually uses (the one `cryptography` bundles, not the system's `openssl speed`): CPU time of
    this process, one operation of each kind as reseal does per value."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=b"ns/name")
    ct = key.public_key().encrypt(bytes(32), oaep)
    rates = []
    for op in (lambda: key.decrypt(ct, oaep), lambda: key.public_key().encrypt(bytes(32), oaep)):
        n, start = 0, time.process_time()
        while time.process_time() - start < seconds / 2:
            op()
            n += 1
        rates.append(n / (time.process_time() - start))
    return rates[0], rates[1]


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _spin(seconds: float) -> float:
    """CPU seconds of this process while it computes for `seconds` of wall time (RSA, as reseal)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    ct = key.public_key().encrypt(bytes(32), oaep)
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        key.decrypt(ct, oaep)
    return time.process_time() - cpu


def session_share(seconds: float = 3.0) -> tuple[float, float]:
    """(cores one busy process of this session gets, cores two get together), measured now. With the
    kernel's autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled) a loaded machine's CPU
    is shared between sessions, not processes: a second process of `ksecrets reseal --jobs 2` (its
    workers are in its session) then gets no more of the machine, and the second figure stays near
    the first. `--jobs 2` can only be faster where this second figure is near 2."""
    import multiprocessing

    one = _spin(seconds) / seconds
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        two = sum(pool.map(_spin, [seconds, seconds])) / seconds
    return one, two


def autogroup() -> str:
    try:
        return "on" if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1" else "off"
    except OSError:
        return "unknown"


def environment(apps: int) -> dict:
    """The export benchmark's stack (bench/export.py) as an environment file: its config without the
    `k8s-secrets:` prefix, without its sealed values and certificate (those are each cluster's own)."""
    config = stack_doc(apps)["config"]
    env = {key.removeprefix("k8s-secrets:"): value for key, value in config.items() if key != "k8s-secrets:sealed"}
    env["sealedSecrets"] = {k: v for k, v in env["sealedSecrets"].items() if k != "certificate"}
    return env


def _sealed_entries(args: tuple[str, bytes, int, bool]) -> list[dict]:
    """A cluster's A sealed Secrets, sealed for its certificate (a worker process per cluster)."""
    stack, cert_pem, apps, odd = args
    cert = load_certificate_pem(cert_pem, stack)
    seal_key = base64.b64decode(SEAL_KEY)
    out = []
    for i in range(apps):
        name, ns = f"app{i}-secrets", f"team{i}"
        label = label_for("strict", ns, name)
        enc, dig, fleet = {}, {}, {}
        for key in KEYS:
            value = f"{key.lower()}-of-app{i}".encode()
            if odd and i == 0 and key == "PASSWORD":
                value = b"this cluster's own, unlike the others"
            enc[key] = encrypt_value(cert.public_key, value, label)
            slot = {"namespace": ns, "name": name, "key": key}
            dig[key] = churn.value_digest(seal_key, **slot, scope="strict", fingerprint=cert.fingerprint, value=value)
            fleet[key] = churn.fleet_digest(seal_key, **slot, value=value)
        out.append(
            {
                "name": name,
                "namespace": ns,
                "scope": "strict",
                "certificateFingerprint": cert.fingerprint,
                "encryptedData": enc,
                "digests": dig,
                "fleetDigests": fleet,
            }
        )
    return out


def load_certificate_pem(pem: bytes, stack: str):
    with tempfile.NamedTemporaryFile(suffix=".pem") as f:  # a public certificate: nothing secret
        f.write(pem)
        f.flush()
        return load_certificate(f.name, source=f"certs/{stack}.pem")


def build_fleet(root: Path, clusters: int, apps: int, old: list[tuple[bytes, bytes]], pool) -> list[str]:
    (root / "environments").mkdir(parents=True)
    (root / "certs").mkdir()
    (root / "keys").mkdir()
    shutil.copy2(ROOT / "Pulumi.yaml", root)
    (root / "environments" / "production.yaml").write_text(yamlio.dump(environment(apps)))
    stacks = [f"prod-{i:02d}" for i in range(clusters)]
    for stack, (cert, key) in zip(stacks, old):
        (root / "certs" / f"{stack}.pem").write_bytes(cert)
        (root / "keys" / f"{stack}.key").write_bytes(key)
    work = [(s, old[i][0], apps, i == clusters - 1 and clusters > 1) for i, s in enumerate(stacks)]
    for stack, sealed in zip(stacks, pool.map(_sealed_entries, work)):
        doc = {
            "config": {
                "k8s-secrets:extends": "environments/production.yaml",
                "k8s-secrets:sealedSecrets": {"certificate": f"certs/{stack}.pem"},
                "k8s-secrets:sealed": sealed,
            }
        }
        (root / f"Pulumi.{stack}.yaml").write_text(yamlio.dump(doc))
    return stacks


def run(root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """(wall, CPU of the process tree) of `ksecrets ARGS --root root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSECRETS_")}
    env[churn.ENV_VAR] = SEAL_KEY
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run([str(KSECRETS), *args, "--root", str(root)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode not in ok:
        raise SystemExit(f"ksecrets {' '.join(args)}: exit {res.returncode}\n{res.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", default="1,10,50", help="fleet sizes, comma-separated")
    parser.add_argument("--apps", type=int, default=200, help="apps (sealed Secrets) per cluster")
    args = parser.parse_args()
    sizes = [int(s) for s in args.clusters.split(",")]
    if not KSECRETS.exists():
        raise SystemExit(f"{KSECRETS}: missing (make .venv/.installed)")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {load()}")
    sign, verify = openssl_rsa4096()
    print(f"system `openssl speed rsa4096`: {sign:.0f} private and {verify:.0f} public operations/s per core")
    sign, verify = library_rsa4096()
    per_value = 1 / (1 / sign + 1 / verify)
    print(
        f"the OpenSSL ksecrets uses (cryptography's): {sign:.0f} private and {verify:.0f} public operations/s per core;"
    )
    print(f"reseal's RSA limit (one of each per value): {per_value:.0f} values/s per core, {cpus} core(s) here")
    print(f"the kernel's autogroup scheduling (CPU shared between sessions, not processes): {autogroup()}\n")

    most = max(sizes)
    with ProcessPoolExecutor(cpus) as pool:
        t0 = time.perf_counter()
        old = list(pool.map(_keypair, [f"old-{i}" for i in range(most)]))
        new = list(pool.map(_keypair, [f"new-{i}" for i in range(most)]))
        print(f"({2 * most} RSA-4096 sealing keys made in {time.perf_counter() - t0:.0f} s)\n")
        rows: list[tuple[str, int, int, float, float]] = []
        jobs_lines: list[str] = []
        for clusters in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp) / "repo"
                t0 = time.perf_counter()
                stacks = build_fleet(root, clusters, args.apps, old, pool)
                objects = clusters * args.apps
                print(f"{clusters} cluster(s): {objects} SealedSecrets sealed in {time.perf_counter() - t0:.0f} s")

                print(f"  {load()}")

                def measure(what: str, *cmd: str, ok: tuple[int, ...] = (0,)) -> None:
                    wall, cpu = run(root, *cmd, ok=ok)
                    rows.append((what, clusters, objects, wall, cpu))
                    print(f"  {what}: {wall:.2f} s wall, {cpu:.2f} s CPU ({load()})", flush=True)

                measure("export", "export", "--all-stacks")
                measure("verify", "verify", "--all-stacks")
                measure("drift --json", "drift", "--all-stacks", "--json", ok=(0, 1) if clusters > 1 else (0,))
                measure("report", "report", "--all-stacks", "--out", str(root / "report.html"))
                values = root.parent / "one.env"
                values.write_text("".join(f"{k}=fresh-{secrets.token_hex(8)}\n" for k in KEYS))
                wall, cpu = run(
                    root, "seal", "--env", "production", "--name", "app0-secrets", "--from-env-file", str(values)
                )
                values.unlink()
                rows.append(("seal --env (1 Secret)", clusters, clusters, wall, cpu))
                for stack, (cert, _key) in zip(stacks, new):  # every controller renewed its key
                    (root / "certs" / f"{stack}.pem").write_bytes(cert)
                keys = ",".join(str(root / "keys" / f"{s}.key") for s in stacks)
                saved = {p.name: p.read_bytes() for p in root.glob("Pulumi.*.yaml")}
                if cpus > 1:
                    one, two = session_share()
                    shares = f"this session got {one:.2f} core(s) with one busy process, {two:.2f} with two"
                    print(f"  {shares} ({load()})", flush=True)
                for jobs in ("1", str(cpus)) if cpus > 1 else ("1",):
                    for name, data in saved.items():
                        (root / name).write_bytes(data)
                    measure(
                        f"reseal --jobs {jobs}",
                        "reseal",
                        "--all-stacks",
                        "--recovery-private-key",
                        keys,
                        "--jobs",
                        jobs,
                    )
                shutil.rmtree(root / "keys")
                resealed = {what: (wall, cpu) for what, c, _o, wall, cpu in rows if c == clusters and "reseal" in what}
                if len(resealed) == 2:
                    (w1, c1), (w2, c2) = resealed.values()
                    jobs_lines.append(
                        f"reseal at {clusters} cluster(s), --jobs 1 vs --jobs {cpus}: wall {w1:.2f} s vs {w2:.2f} s "
                        f"(speed-up {w1 / w2:.2f}), CPU {c1:.2f} s vs {c2:.2f} s (ratio {c2 / c1:.2f}); "
                        f"cores used {c1 / w1:.2f} vs {c2 / w2:.2f}; {shares}"
                    )

    print(
        f"\n{'command':<24} {'clusters':>8} {'objects':>8} {'wall s':>8} {'CPU s':>8} {'CPU/wall':>8} "
        f"{'wall us/obj':>11} {'vs 1':>5} {'CPU us/obj':>10} {'vs 1':>5}"
    )
    base: dict[str, tuple[float, float]] = {}
    for what, clusters, objects, wall, cpu in rows:
        per, cpu_per = 1e6 * wall / objects, 1e6 * cpu / objects
        b_wall, b_cpu = base.setdefault(what, (per, cpu_per))
        print(
            f"{what:<24} {clusters:>8} {objects:>8} {wall:>8.2f} {cpu:>8.2f} {cpu / wall:>8.2f} "
            f"{per:>11.0f} {per / b_wall:>5.2f} {cpu_per:>10.0f} {cpu_per / b_cpu:>5.2f}"
        )
        if what.startswith("reseal"):
            limit = objects * len(KEYS) / per_value
            print(f"{'':<24} {'':>8} {'':>8} {'':>8} its RSA alone, one core at the library's rate: {limit:.2f} s")
    print()
    for line in jobs_lines:
        print(line)
    print(f"\n{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {load()}")


if __name__ == "__main__":
    main()
