"""Use cases: the workflows between the domain packages and `cli/`.

They read and write stack files (`ksecrets.config`) and drive the ports: `ksecrets.sealing` (the
kubeseal format, certificates, keys, backups) and `ksecrets.vault` (hvac). Neither port imports
this package, `ksecrets.config`'s loaders or `ksecrets.cli` (tests/test_layering.py).

- `seal_stack`: sealing into stack files, reseal, verify.
- `vault_migrate`: sealed-secrets → vault migration of a stack file.
- `vault_push`: an env file becomes an app's kv-v2 secret.
"""
