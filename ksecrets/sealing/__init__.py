"""Offline sealing in the sealed-secrets controller's format.

Small single-purpose modules, mirroring upstream `pkg/crypto` and `pkg/kubeseal`:

- `crypto`: the hybrid RSA-OAEP + AES-GCM format and the per-scope labels (the scopes themselves,
  strict, namespace-wide and cluster-wide, are `ksecrets.scopes`: standard library only).
- `certs`: sealing certificates (PEM, RSA, not expired) and their SSH-style fingerprints.
- `keys`: controller-compatible key pairs, the `kubernetes.io/tls` key Secret, recovery keys.
- `secret_input`: a v1 Secret read from YAML/JSON, validated like the API server would.
- `sealedsecret`: SealedSecret objects: build, merge, unseal.
- `churn`: keyed digests that let an unchanged value keep its ciphertext.
- `backup`: the passphrase-encrypted backup file of the controller's keys.
- `certfetch`: a certificate from an https:// or file:// URL, as `kubeseal --cert` reads it.
- `kubeconfig`: the namespace kubeseal seals for when a Secret has none.
- `keybackup`: the sealing-key backup CronJob (`python -m ksecrets.sealing.keybackup`).
- `sops`: the SOPS file format with age recipients (Flux's kustomize-controller decrypts it): encrypt,
  decrypt verifying the MAC, edit keys, updatekeys, age keys; no `sops` binary needed.

Nothing here imports Pulumi, reads a stack file or knows the command line: sealing into a stack
file is `ksecrets.usecases.seal_stack`; kubectl's env-file rules are `ksecrets.envfile`.
"""
