"""`python -m ksecrets.sealing.keybackup`: the key-backup CronJob's command (in `k8s/`); the
program is `ksecrets.jobs.key_backup`, above the port. An entry point: nothing imports it."""

if __name__ == "__main__":
    from ksecrets.jobs.key_backup import main

    raise SystemExit(main())
