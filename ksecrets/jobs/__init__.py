"""The in-cluster programs, each the `main` of one CronJob's container, above the ports they drive
and below the use cases (which never call them):

- `rotate`: the rotator (`python -m ksecrets.rotate`): new values in Vault, and PostgreSQL passwords.
- `vault_snapshot`: the raft snapshot CronJob (`python -m ksecrets.vault.snapshot`).
- `key_backup`: the sealing-key backup CronJob (`python -m ksecrets.sealing.keybackup`).
- `s3args`: the S3 upload flags both backup CronJobs take.

The commands in the CronJobs (and so in `k8s/`) are the older module names; each of those is an
entry module of two lines (`ksecrets/rotate.py`, or a package's `__main__.py`) that calls the
program here. The rotator's image installs only the `rotate` extra: nothing under `jobs/rotate`
may import pydantic or cryptography.
"""
