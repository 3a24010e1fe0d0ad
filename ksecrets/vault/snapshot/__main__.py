"""`python -m ksecrets.vault.snapshot`: the snapshot CronJob's command (in `k8s/`); the program is
`ksecrets.jobs.vault_snapshot`, above the port. An entry point: nothing imports it."""

if __name__ == "__main__":
    from ksecrets.jobs.vault_snapshot import main

    raise SystemExit(main())
