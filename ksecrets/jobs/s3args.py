"""The S3 upload flags of the backup CronJobs (`vault_snapshot`, `key_backup`): where a copy goes.
The credentials come from the environment (`ksecrets.s3.credentials_from_env`), never from flags."""

from __future__ import annotations

import argparse

from ksecrets import s3
from ksecrets.errors import KsecretsError


def add_s3_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--s3-endpoint", help="also upload to this S3-compatible endpoint")
    p.add_argument("--s3-bucket")
    p.add_argument("--s3-region", default="us-east-1")
    p.add_argument("--s3-prefix", default="")


def s3_target(args: argparse.Namespace) -> s3.Target | None:
    if not args.s3_endpoint:
        return None
    if not args.s3_bucket:
        raise KsecretsError("--s3-endpoint needs --s3-bucket")
    return s3.Target(args.s3_endpoint, args.s3_bucket, args.s3_region, args.s3_prefix)
