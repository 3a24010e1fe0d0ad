"""The Vault port: the hvac client (`client`), kv-v2 with check-and-set (`kv`) and the raft
snapshot CronJob (`snapshot`). What a stack does with them (bootstrap, push, migrate) is in
`ksecrets.usecases`; nothing here reads a stack file."""
