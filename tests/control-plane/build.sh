#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run on — kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl from k8s.io/kubernetes, and etcd — at the
# versions pinned in go.mod, from the Go module proxy. Cached outside the repository, keyed by
# go.mod, go.sum and this script. Prints one line per binary: NAME=<path>.
set -euo pipefail
# k8s.io/kubernetes v1.37 needs Go 1.26; the approved toolchain is fetched by the go command.
export GOTOOLCHAIN=go1.27.3
here="$(cd "$(dirname "$0")" && pwd)"
cache="${HOSTPROCESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hostprocess-operator}/control-plane"
log() { printf 'control-plane: %s\n' "$*" >&2; }

kubernetes="$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/go.mod")"
etcd="$(sed -n 's/^\tgo.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\)$/\1/p' "$here/go.mod")"
[ -n "$kubernetes" ] && [ -n "$etcd" ] || { log "go.mod names no k8s.io/kubernetes or etcd version"; exit 1; }
key="$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)"
out="$cache/kubernetes-$kubernetes-etcd-$etcd-$key"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)

mkdir -p "$cache"
# One build at a time per cache (tests and CI may run this concurrently).
exec 9>"$cache/.lock"
flock 9

print() {
    for b in "${binaries[@]}"; do
        printf '%s=%s\n' "$(tr 'a-z-' 'A-Z_' <<<"$b")" "$out/bin/$b"
    done
}
if [ -f "$out/.complete" ]; then
    print
    exit 0
fi

log "building Kubernetes $kubernetes and etcd $etcd (a cold build takes a while on 2 cores)"
started=$SECONDS
rm -rf "$out"
mkdir -p "$out/bin"
cd "$here"
# What `kubectl version` and /version report: the upstream version, as a release build sets it.
minor="$(cut -d. -f2 <<<"$kubernetes")"
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_flags+=" -X $pkg.gitVersion=$kubernetes -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
go build -trimpath -ldflags "-s -w $version_flags" -o "$out/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3
touch "$out/.complete"
log "built in $((SECONDS - started))s into $out"
print
