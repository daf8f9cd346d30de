#!/usr/bin/env bash
# The krew manifest installs the plugin the way kubectl users install plugins, and kubectl then
# runs it: packages the given build with deploy/krew/package.sh, installs it with krew (built from
# the Go module proxy at a pinned version, cached outside the clone) into a scratch KREW_ROOT,
# and checks that `kubectl hostprocess --help`, with krew's bin directory on PATH, lists every
# command.
#   run.sh PLUGIN_BINARY   (kubectl from $HOSTPROCESS_CONTROL_PLANE_BIN, or on PATH)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
plugin="${1:?usage: run.sh PLUGIN_BINARY}"
. "$here/../cache.sh"
krew_version=v0.4.3
cache_locked krew
krew="$cache/$krew_version/krew"
if [ ! -x "$krew" ]; then
    GOBIN="$cache/$krew_version" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/krew/cmd/krew@$krew_version"
fi
kubectl="${HOSTPROCESS_CONTROL_PLANE_BIN:+$HOSTPROCESS_CONTROL_PLANE_BIN/}kubectl"
version="v$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/kubectl-plugin/Cargo.toml" | head -1)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
bash "$root/deploy/krew/package.sh" --version "$version" --base-url "file://$scratch/release" \
    --out "$scratch/release" --linux-amd64 "$plugin" 2>/dev/null
KREW_ROOT="$scratch/krew" "$krew" install --manifest="$scratch/release/hostprocess.yaml" \
    --archive="$scratch/release/kubectl-hostprocess_${version}_linux_amd64.tar.gz" </dev/null >/dev/null 2>&1 ||
    { KREW_ROOT="$scratch/krew" "$krew" install --manifest="$scratch/release/hostprocess.yaml" \
        --archive="$scratch/release/kubectl-hostprocess_${version}_linux_amd64.tar.gz" </dev/null; exit 1; }
help="$(PATH="$scratch/krew/bin:$PATH" "$kubectl" hostprocess --help)"
missing=""
for command in plan status logs wait pause resume retry-failed rerun why; do
    grep -qE "^  $command( |$)" <<<"$help" || missing="$missing $command"
done
if [ -n "$missing" ]; then
    printf '%s\n' "$help" >&2
    echo "krew: kubectl hostprocess --help does not list:$missing" >&2
    exit 1
fi
[ -f "$scratch/krew/receipts/hostprocess.yaml" ] || { echo "krew: no receipt for hostprocess" >&2; exit 1; }
echo "krew: installed hostprocess $version from deploy/krew/hostprocess.yaml; kubectl hostprocess --help lists plan, status, logs, wait, pause, resume, retry-failed, rerun and why"
