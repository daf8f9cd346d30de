#!/usr/bin/env bash
# Builds hostprocess-test-apiserver and provides etcd, offline from Debian sid's binary packages
# of the upstream Kubernetes libraries, without touching the system's apt state. Cached outside
# the repository, keyed by the package versions. Prints two lines: APISERVER=<path> ETCD=<path>.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${HOSTPROCESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hostprocess-operator}/apiserver"
roots=(golang-k8s-apiextensions-apiserver-dev golang-k8s-apiserver-dev golang-k8s-api-dev
       golang-k8s-client-go-dev golang-k8s-component-base-dev golang-1.27-go kube-openapi etcd-server)
log() { printf 'test-apiserver: %s\n' "$*" >&2; }

mkdir -p "$cache"
# One build at a time per cache (tests and CI may run this concurrently).
exec 9>"$cache/.lock"
flock 9

apt_dir="$cache/apt"
mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/parts"
touch "$apt_dir/state/status"
echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main' \
    > "$apt_dir/etc/sources.list"
cat > "$apt_dir/apt.conf" <<CONF
Dir::State "$apt_dir/state";
Dir::State::status "$apt_dir/state/status";
Dir::Cache "$apt_dir/cache";
Dir::Etc::SourceList "$apt_dir/etc/sources.list";
Dir::Etc::SourceParts "$apt_dir/etc/parts";
APT::Architecture "amd64";
APT::Sandbox::User "root";
Debug::NoLocking "true";
CONF
apt=(apt-get -c "$apt_dir/apt.conf" -o Dir::Etc::Trusted=/dev/null)

# The resolved package set decides the cache key. Reuse a recent index to avoid a network trip.
if [ -z "$(find "$apt_dir/state/lists" -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    log "reading Debian sid's package index"
    "${apt[@]}" update -qq >&2 || { log "cannot reach Debian's package index"; exit 1; }
fi
resolved="$("${apt[@]}" install -s "${roots[@]}" 2>/dev/null | awk '/^Inst/ {gsub(/[()]/, "", $3); print $2 "=" $3}' \
    | grep -E '^(golang[^=]*|kube-openapi|etcd-server)=' | sort)"
[ -n "$resolved" ] || { log "Debian sid no longer resolves: ${roots[*]}"; exit 1; }
packages_key="$(printf '%s\n' "$resolved" | sha256sum | cut -c1-16)"
key="$(printf '%s\n' "$packages_key" "$(cat "$here"/*.go | sha256sum)" | sha256sum | cut -c1-16)"
root="$cache/root-$packages_key"
out="$cache/build-$key"
if [ -x "$out/bin/hostprocess-test-apiserver" ] && [ -x "$root/usr/bin/etcd" ]; then
    echo "APISERVER=$out/bin/hostprocess-test-apiserver"
    echo "ETCD=$root/usr/bin/etcd"
    exit 0
fi

if [ ! -f "$root/.complete" ]; then
    log "fetching $(printf '%s\n' "$resolved" | wc -l) packages"
    debs="$cache/debs"
    rm -rf "$root"
    mkdir -p "$debs" "$root"
    (cd "$debs" && printf '%s\n' "$resolved" | xargs "${apt[@]}" download -qq >&2)
    log "extracting"
    printf '%s\n' "$resolved" | while IFS='=' read -r name version; do
        dpkg -x "$debs/${name}_${version/:/%3a}_$(dpkg --print-architecture).deb" "$root" 2>/dev/null \
            || dpkg -x "$debs/${name}_${version/:/%3a}_all.deb" "$root"
    done
    touch "$root/.complete"
    # Older package sets unused for a day are of no further use.
    find "$cache" -maxdepth 1 -name 'root-*' ! -name "root-$packages_key" -mmin +1440 -exec rm -rf {} +
fi
find "$cache" -maxdepth 1 -name 'build-*' ! -name "build-$key" -mmin +1440 -exec rm -rf {} +

export GOROOT="$root/usr/lib/go-1.27" GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=
export GOPATH="$out/gopath:$root/usr/share/gocode" GOCACHE="$cache/gocache"
export PATH="$GOROOT/bin:$PATH"
src="$out/gopath/src/hostprocess.dev/testapiserver"
mkdir -p "$src/openapi"
cp "$here"/*.go "$src/"
log "generating OpenAPI definitions"
: > "$out/header.txt"
"$root/usr/bin/openapi-gen" --output-dir "$src/openapi" --output-pkg hostprocess.dev/testapiserver/openapi \
    --output-file zz_generated.openapi.go --go-header-file "$out/header.txt" --report-filename /dev/null \
    k8s.io/api/core/v1 k8s.io/api/apps/v1 k8s.io/api/coordination/v1 k8s.io/api/events/v1 \
    k8s.io/api/admissionregistration/v1 k8s.io/api/policy/v1 k8s.io/api/rbac/v1 k8s.io/apimachinery/pkg/apis/meta/v1 \
    k8s.io/apimachinery/pkg/runtime k8s.io/apimachinery/pkg/version k8s.io/apimachinery/pkg/api/resource \
    k8s.io/apimachinery/pkg/util/intstr >&2
log "building (a cold build takes about 4 minutes on 2 cores)"
if ! go build -o "$out/bin/hostprocess-test-apiserver" hostprocess.dev/testapiserver >&2; then
    log "the build failed against these Debian sid packages; the last versions known to work are in tests/apiserver/versions.lock"
    exit 1
fi
printf '%s\n' "$resolved" > "$out/versions"
echo "APISERVER=$out/bin/hostprocess-test-apiserver"
echo "ETCD=$root/usr/bin/etcd"
