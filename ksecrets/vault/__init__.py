"""The Vault backend: hvac client, kv-v2 check-and-set, bootstrap, push, migrate."""
