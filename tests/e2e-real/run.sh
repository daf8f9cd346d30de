#!/usr/bin/env bash
# End to end on a real cluster with Windows nodes (e.g. AKS with a Windows Server 2022 node pool
# on containerd 1.7+): installs the operator from deploy/, runs a task as SYSTEM, a HostGroup and
# a task running as that group, the executor's self-test on every Windows node (what Wine cannot
# show: job limits, groups, ACLs, the graceful stop), then deletes the HostGroup and checks that
# it is gone from the nodes; last, one node is rebooted by a task that exits 3010 and must come
# back Ready and uncordoned. Checks every result with kubectl.
#
#   HOSTPROCESS_E2E_KUBECONFIG=~/.kube/aks.yaml \
#   HOSTPROCESS_E2E_OPERATOR_IMAGE=REGISTRY/hostprocess-operator@sha256:… \
#   HOSTPROCESS_E2E_EXECUTOR_IMAGE=REGISTRY/node-executor@sha256:… \
#       bash tests/e2e-real/run.sh [--keep]
#
# The images are the ones you built and pushed (deploy/ names placeholders that cannot be pulled).
# Without a kubeconfig it says so and exits 0 (skipped). It changes the cluster: it installs the
# operator and creates a local group `HostProcessE2E` and C:\ProgramData\hostprocess-e2e on the
# Windows nodes, and restarts one of them; without --keep it removes the objects and uninstalls
# the operator at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/e2e-real

if [ -z "${HOSTPROCESS_E2E_KUBECONFIG:-}" ]; then
    echo "e2e-real: skipped — no cluster given. Set HOSTPROCESS_E2E_KUBECONFIG to the kubeconfig of a cluster with Windows nodes (containerd 1.7+) to run it."
    exit 0
fi
export KUBECONFIG="$HOSTPROCESS_E2E_KUBECONFIG"
operator_image="${HOSTPROCESS_E2E_OPERATOR_IMAGE:?set HOSTPROCESS_E2E_OPERATOR_IMAGE to the operator image you pushed}"
executor_image="${HOSTPROCESS_E2E_EXECUTOR_IMAGE:?set HOSTPROCESS_E2E_EXECUTOR_IMAGE to the node-executor image you pushed}"
keep=""
[ "${1:-}" = "--keep" ] && keep=1
ns=hostprocess-tasks
timeout="${HOSTPROCESS_E2E_TIMEOUT:-20m}"

say() { printf '\n==> %s\n' "$*"; }
fail() { echo "e2e-real: FAILED: $*" >&2; exit 1; }
field() { kubectl get "$@" 2>/dev/null || true; }

cleanup() {
    [ -n "$keep" ] && { echo "e2e-real: --keep: left everything installed"; return; }
    say "cleaning up"
    kubectl delete -f "$here/objects.yaml" --ignore-not-found --wait=true --timeout=10m || true
    kubectl -n "$ns" delete ht/e2e-reboot --ignore-not-found --wait=true --timeout=10m || true
    [ -z "${reboot_node:-}" ] || kubectl label node "$reboot_node" hostprocess.dev/e2e-reboot- || true
    kubectl delete -k deploy/ --ignore-not-found --wait=true --timeout=5m || true
}

say "the cluster"
kubectl version >/dev/null || fail "cannot reach the cluster in $KUBECONFIG"
windows="$(kubectl get nodes -l kubernetes.io/os=windows -o name | wc -l)"
[ "$windows" -gt 0 ] || fail "no node labelled kubernetes.io/os=windows"
kubectl get nodes -l kubernetes.io/os=windows \
    -o custom-columns=NODE:.metadata.name,OS:.status.nodeInfo.osImage,RUNTIME:.status.nodeInfo.containerRuntimeVersion
old="$(kubectl get nodes -l kubernetes.io/os=windows -o jsonpath='{range .items[*]}{.status.nodeInfo.containerRuntimeVersion}{"\n"}{end}' \
    | grep -E '^containerd://1\.[0-6]\.' || true)"
[ -z "$old" ] || fail "HostGroup accounts need containerd 1.7+; found: $old"
trap cleanup EXIT

say "installing the operator (the CRDs, then kubectl apply -k deploy/)"
kubectl apply --server-side -f deploy/crds.yaml
kubectl wait --for=condition=Established crd/hosttasks.hostprocess.dev crd/hostgroups.hostprocess.dev \
    crd/hosttaskgrants.hostprocess.dev --timeout=2m
kubectl apply -k deploy/
kubectl -n hostprocess-system set image deployment/hostprocess-operator operator="$operator_image"
kubectl -n hostprocess-system set env deployment/hostprocess-operator HOSTPROCESS_EXECUTOR_IMAGE="$executor_image"
kubectl -n hostprocess-system rollout status deployment/hostprocess-operator --timeout=5m

say "the task namespace is granted System; a task as SYSTEM prepares a directory on every Windows node"
kubectl apply -f "$here/prepare.yaml"
kubectl -n "$ns" wait ht/e2e-prepare --for=condition=Ready --timeout="$timeout" \
    || { kubectl -n "$ns" describe ht/e2e-prepare; fail "e2e-prepare did not complete"; }

say "a HostGroup with a grant on it, a task running as the group, the executor's self-test"
kubectl apply -f "$here/objects.yaml"
kubectl wait hg/e2e-group --for=condition=Ready --timeout="$timeout" \
    || { kubectl describe hg/e2e-group; fail "the HostGroup was not provisioned"; }
for task in e2e-as-group e2e-self-test; do
    kubectl -n "$ns" wait "ht/$task" --for=condition=Ready --timeout="$timeout" \
        || { kubectl -n "$ns" describe "ht/$task"; fail "$task did not complete"; }
done

say "results"
kubectl get hg
kubectl -n "$ns" get ht
for task in e2e-prepare e2e-as-group e2e-self-test; do
    succeeded="$(field -n "$ns" "ht/$task" -o jsonpath='{.status.nodes.succeeded}')"
    failed="$(field -n "$ns" "ht/$task" -o jsonpath='{.status.nodes.failed}')"
    [ "$succeeded" = "$windows" ] && [ "${failed:-0}" = "0" ] \
        || fail "$task: $succeeded of $windows nodes succeeded, $failed failed"
done
provisioned="$(field hg/e2e-group -o jsonpath='{.status.nodes.provisioned}')"
[ "$provisioned" = "$windows" ] || fail "e2e-group provisioned on $provisioned of $windows nodes"
# The task as the group wrote where only the group was granted: its log says so.
pod="$(kubectl -n "$ns" get pods -l hostprocess.dev/task=e2e-as-group -o name | head -1)"
kubectl -n "$ns" logs "$pod" | grep -q 'e2e: HostProcessE2E can write' \
    || fail "the task running as the group could not write where the group was granted"

say "deleting the HostGroup removes the group from every node"
kubectl -n "$ns" delete ht/e2e-as-group --wait=true
kubectl delete hg/e2e-group --wait=true --timeout=10m
kubectl apply -f "$here/verify-removed.yaml"
kubectl -n "$ns" wait ht/e2e-verify-removed --for=condition=Ready --timeout="$timeout" \
    || { kubectl -n "$ns" describe ht/e2e-verify-removed; fail "the group is still on some node"; }
kubectl -n "$ns" delete ht/e2e-verify-removed ht/e2e-prepare --wait=true

say "a payload that exits 3010 reboots its node, which comes back Ready and uncordoned"
reboot_node="$(kubectl get nodes -l kubernetes.io/os=windows -o jsonpath='{.items[0].metadata.name}')"
boot_before="$(field node "$reboot_node" -o jsonpath='{.status.nodeInfo.bootID}')"
kubectl label node "$reboot_node" hostprocess.dev/e2e-reboot=true --overwrite
kubectl apply -f "$here/reboot.yaml"
kubectl -n "$ns" wait ht/e2e-reboot --for=condition=Ready --timeout="$timeout" \
    || { kubectl -n "$ns" describe ht/e2e-reboot; fail "e2e-reboot did not complete"; }
boot_after="$(field node "$reboot_node" -o jsonpath='{.status.nodeInfo.bootID}')"
[ -n "$boot_before" ] && [ "$boot_after" != "$boot_before" ] \
    || fail "$reboot_node did not restart (boot id $boot_before before, $boot_after after)"
[ -z "$(field node "$reboot_node" -o jsonpath='{.spec.unschedulable}')" ] \
    || fail "$reboot_node is still cordoned after its reboot"
kubectl -n "$ns" delete ht/e2e-reboot --wait=true
kubectl label node "$reboot_node" hostprocess.dev/e2e-reboot-
reboot_node=""
echo "e2e-real: passed on $windows Windows nodes"
