"""The sealing-key backup CronJob's program: list the controller's key Secrets through the API
server with the pod's token, encrypt each new one to the offline public key into the volume
(`ksecrets.sealing.keybackup`), then upload the files to S3 when asked. Its command is
`python -m ksecrets.sealing.keybackup --namespace kube-system --public-key F --dir D`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

from ksecrets import s3
from ksecrets.errors import KsecretsError
from ksecrets.fileio import read_bytes
from ksecrets.jobs.s3args import add_s3_flags, s3_target
from ksecrets.sealing import keybackup

log = logging.getLogger("ksecrets.keybackup")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    logging.basicConfig(level=logging.INFO, format="ksecrets.keybackup: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(prog="python -m ksecrets.sealing.keybackup")
    p.add_argument("--namespace", required=True)
    p.add_argument("--public-key", required=True, type=Path)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--token-file", type=Path, default=Path("/var/run/secrets/kubernetes.io/serviceaccount/token"))
    p.add_argument("--ca-file", default="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    add_s3_flags(p)
    args = p.parse_args(argv)
    try:
        target = s3_target(args)
        creds = s3.credentials_from_env(env) if target else None
        host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443")
        api = env.get("KSECRETS_KUBE_API") or (f"https://{host}:{port}" if host else "")
        if not api:
            raise KsecretsError("no Kubernetes API: KUBERNETES_SERVICE_HOST is not set")
        recipient = keybackup.load_public_key(read_bytes(args.public_key, "public key"), str(args.public_key))
        token = read_bytes(args.token_file, "service-account token").decode().strip()
        secrets_ = keybackup.list_key_secrets(api, token, args.ca_file, args.namespace)
        written, present = keybackup.save_new_keys(secrets_, recipient, args.dir)
        if target is not None and creds is not None:
            # Every file, every run: a few KiB each, and an upload that failed last time is retried.
            for f in keybackup.key_files([args.dir]):
                s3.put_file(target, f.name, f, creds)
            log.info(
                "uploaded %d key file(s) to s3://%s/%s",
                len(keybackup.key_files([args.dir])),
                target.bucket,
                target.prefix,
            )
    except KsecretsError as exc:
        sys.stderr.write(f"ksecrets.keybackup: {exc}\n")
        return 1
    log.info(
        "%d key(s) in %s: %d saved now (%s), %d already saved",
        len(secrets_),
        args.namespace,
        len(written),
        ", ".join(written) or "none",
        len(present),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
