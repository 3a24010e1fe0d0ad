"""Offline sealing in the sealed-secrets controller's format.

Small single-purpose modules, mirroring upstream `pkg/crypto` and `pkg/kubeseal`:

- `crypto`: the hybrid RSA-OAEP + AES-GCM format and the per-scope labels.
- `certs`: sealing certificates (PEM, RSA, not expired) and their SSH-style fingerprints.
- `keys`: controller-compatible key pairs, the `kubernetes.io/tls` key Secret, recovery keys.
- `envfile`: kubectl's `--from-env-file` rules, byte for byte.
- `secret_input`: a v1 Secret read from YAML/JSON, validated like the API server would.
- `sealedsecret`: SealedSecret objects: build, merge, unseal.
- `churn`: keyed digests that let an unchanged value keep its ciphertext.
- `backup`: the passphrase-encrypted backup file of the controller's keys.

Nothing here imports Pulumi.
"""
