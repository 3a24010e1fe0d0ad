"""The raft snapshot CronJob's program: log in (Kubernetes auth, `ksecrets.vault.login`), save a
snapshot into the volume and delete the oldest beyond `--retain` (`ksecrets.vault.snapshot`), then
upload it to S3 when asked. Its command is `python -m ksecrets.vault.snapshot --dir D --retain N`.
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
from ksecrets.jobs.s3args import add_s3_flags, s3_target
from ksecrets.vault import snapshot
from ksecrets.vault.login import vault_login

log = logging.getLogger("ksecrets.snapshot")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """The CronJob: log in (Kubernetes auth, as the rotator does), save, prune, upload."""
    logging.basicConfig(level=logging.INFO, format="ksecrets.snapshot: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(prog="python -m ksecrets.vault.snapshot")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--retain", type=int, default=14)
    add_s3_flags(p)
    args = p.parse_args(argv)
    env = os.environ if env is None else env
    try:
        target = s3_target(args)
        creds = s3.credentials_from_env(env) if target else None
        client = vault_login(env)
        out, size, deleted = snapshot.save_rotating(client, args.dir, args.retain)
        log.info("saved %s (%d bytes); deleted %d older snapshot(s)", out, size, len(deleted))
        if target is not None and creds is not None:
            s3.put_file(target, out.name, out, creds)
            log.info("uploaded %s to s3://%s/%s%s", out.name, target.bucket, target.prefix, out.name)
    except KsecretsError as exc:
        sys.stderr.write(f"ksecrets.snapshot: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
