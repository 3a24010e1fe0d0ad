"""Use cases: the workflows between the domain packages and `cli/`.

They read and write stack files (`ksecrets.config`) and drive the ports: `ksecrets.sealing` (the
kubeseal format, certificates, keys, backups) and `ksecrets.vault` (hvac). Neither port imports
this package, `ksecrets.config` or `ksecrets.cli`, and this package does not import `ksecrets.cli`
(tests/test_layering.py).

- `seal_stack`: sealing into stack files (`seal --stack`), `reseal`, `verify`.
- `vault_bootstrap`: the stack's Vault configuration applied through the HTTP API.
- `vault_push`: an env file becomes an app's kv-v2 secret.
- `vault_migrate`: a sealed-secrets stack moved to Vault.
- `seal_file`: `seal --merge-into` (a SealedSecret file updated in place), and the size check.
- `rotate_key`: `ksecrets rotate`, one key rotated by the stack's backend (re-sealed, or in Vault).
- `stack_facts`: the facts the pure builders need from files (certificate expiry, public keys).
"""
