#!/usr/bin/env bash
# The preview job's credentials can read the stack's cluster and cannot change it.
#   bash .ci/preview-credentials.sh STACK     (kubectl and $KUBECONFIG as the job has them)
# The context is the stack's own `kubernetes:context` (.ci/stacks.py), never the current one.
# Exit 0: may read namespaces and may not create, patch or delete Deployments anywhere.
# Exit 1: one `::error::` line naming the stack and the verb. tests/e2e/test_pulumi.py runs this
# very file against the real API server with a read-only and an admin kubeconfig.
set -euo pipefail
stack=${1:?usage: preview-credentials.sh STACK}
context=$(python3 "$(dirname "$0")/stacks.py" --context "$stack")
if ! kubectl --context "$context" auth can-i get namespaces; then
  echo "::error::the preview kubeconfig of $stack cannot read namespaces in context $context"
  exit 1
fi
for verb in create patch delete; do
  if kubectl --context "$context" auth can-i "$verb" deployments --all-namespaces; then
    echo "::error::the preview kubeconfig of $stack may $verb: give preview read-only credentials"
    exit 1
  fi
done
