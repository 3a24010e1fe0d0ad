"""`python -m ksecrets.rotate`: the command of the rotation CronJobs (in `k8s/`) and the rotator
image's ENTRYPOINT. The rotator is `ksecrets.jobs.rotate`; this name stays so that committed
CronJobs and built images keep working. An entry point: nothing imports it (tests/layers.py)."""

if __name__ == "__main__":
    from ksecrets.jobs.rotate.__main__ import main

    raise SystemExit(main())
