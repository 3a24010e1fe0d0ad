"""The Vault port: every call into Vault. The hvac client and its reads and writes (`client`: the
one "is this Vault's answer" check, `read_data`, `send_write`, `confirm_write`, the `VaultClient`
type), the in-cluster login (`login`), kv-v2 with check-and-set (`kv`) and raft snapshots
(`snapshot`). What a stack does with them (bootstrap, push, migrate) is in `ksecrets.usecases`,
the CronJobs' programs are in `ksecrets.jobs`; nothing here reads a stack file, and nothing
outside this package imports hvac (tests/test_layering.py)."""
