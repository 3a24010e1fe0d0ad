"""Sealing throughput next to this machine's RSA-4096 public-operation limit.

Every sealed value costs one RSA-4096 public operation (OAEP-encrypting its session key), so
`openssl speed rsa4096`'s verify/s (a public operation too) is the physical limit of this format
on one core. We seal 1, 100 and 10,000 values (32 bytes each, strict scope) with the code path
`ksecrets seal` uses and print values/s, the ratio to that limit, and memory:

- peak: tracemalloc peak while sealing into a SealedSecret; it grows with N only because the
  output does (a 32-byte value seals to 752 base64 characters), so "per value" stays flat;
- stream: tracemalloc peak while sealing value by value and discarding (should stay flat);
- maxrss: the process's resident high-water mark after the run.

Both sides are measured ROUNDS times, interleaved, and the best of each is kept, so other load on
the machine does not skew the ratio.

Run: .venv/bin/python bench/seal.py   (about 1 min; BENCH_ROUNDS, BENCH_OPENSSL_SECONDS shorten it)
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ksecrets.sealing import crypto  # noqa: E402
from ksecrets.sealing.certs import parse_certificate  # noqa: E402
from ksecrets.sealing.sealedsecret import build_sealed_secret, encrypt_all  # noqa: E402

VECTORS = ROOT / "tests" / "fixtures" / "vectors" / "sealed-secrets-v1.json"
COUNTS = (1, 100, 10_000)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))  # best of: other processes on the machine only slow things down
MIN_SECONDS = 1.0


def openssl_rsa4096() -> tuple[float, float]:
    """(sign/s, verify/s) from `openssl speed -seconds N rsa4096` (N = BENCH_OPENSSL_SECONDS, default 3)."""
    seconds = os.environ.get("BENCH_OPENSSL_SECONDS", "3")
    out = subprocess.run(
        ["openssl", "speed", "-seconds", seconds, "rsa4096"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"^rsa\s+4096 bits\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", out, re.M)
    if not m:
        raise SystemExit("cannot parse `openssl speed rsa4096` output:\n" + out)
    return float(m.group(1)), float(m.group(2))


def load_cert():
    pem = (
        json.loads(VECTORS.read_text())["certificate_pem"].encode()
        if VECTORS.exists()
        else (ROOT / "certs" / "staging.pem").read_bytes()
    )
    return parse_certificate(pem, "bench")


def seal_once(cert, values: dict[str, bytes]) -> dict:
    enc = encrypt_all(cert, values, scope="strict", namespace="bench", name="bench")
    return build_sealed_secret(
        name="bench", namespace="bench", scope="strict", encrypted_data=enc, fingerprint=cert.fingerprint
    )


def throughput(cert, n: int) -> float:
    values = {f"KEY_{i:05d}": os.urandom(32) for i in range(n)}
    seal_once(cert, values)  # warm up
    done, start = 0, time.perf_counter()
    while True:
        seal_once(cert, values)
        done += n
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_SECONDS:
            return done / elapsed


def peaks(cert, n: int) -> tuple[int, int]:
    values = {f"KEY_{i:05d}": os.urandom(32) for i in range(n)}
    tracemalloc.start()
    obj = seal_once(cert, values)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del obj
    label = crypto.label_for("strict", "bench", "bench")
    tracemalloc.start()
    for key in values:
        crypto.encrypt_value(cert.public_key, values[key], label)
    _, stream = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, stream


def main() -> None:
    cert = load_cert()
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    rates: dict[int, float] = {n: 0.0 for n in COUNTS}
    sign = verify = 0.0
    for _ in range(ROUNDS):  # interleaved, best of ROUNDS for both sides
        s, v = openssl_rsa4096()
        sign, verify = max(sign, s), max(verify, v)
        for n in COUNTS:
            rates[n] = max(rates[n], throughput(cert, n))
    print(
        f"# {version}; RSA-4096 public operations: {verify:,.0f}/s (verify), private: {sign:,.0f}/s (sign); one core, best of {ROUNDS}"
    )
    print(
        f"# python {sys.version.split()[0]}, cryptography {__import__('cryptography').__version__}, "
        f"32-byte values, strict scope"
    )
    print()
    print(
        f"| {'values':>7} | {'values/s':>9} | {'of openssl limit':>16} | {'peak (sealing)':>14} | {'per value':>9} | {'stream peak':>11} |"
    )
    print(f"|{'-' * 9}|{'-' * 11}|{'-' * 18}|{'-' * 16}|{'-' * 11}|{'-' * 13}|")
    for n in COUNTS:
        rate = rates[n]
        peak, stream = peaks(cert, n)
        print(
            f"| {n:>7,} | {rate:>9,.0f} | {rate / verify:>15.1%} | {peak / 1024:>11,.0f} KiB | "
            f"{peak / n:>7,.0f} B | {stream / 1024:>7,.1f} KiB |"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print()
    print(f"# ru_maxrss after the run: {rss / 1024:,.1f} MiB")


if __name__ == "__main__":
    main()
