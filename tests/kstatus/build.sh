#!/usr/bin/env bash
# Builds the kstatus command (sigs.k8s.io/cli-utils' health check, as Flux runs it) from the Go
# module proxy at the versions in go.mod. Cached outside the repository, keyed by go.mod, go.sum,
# main.go and this script. Prints KSTATUS=<path>.
set -euo pipefail
# The approved way to get the Go toolchain go.mod asks for (the go command fetches it).
export GOTOOLCHAIN=go1.27.3
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../cache.sh"
cache_locked kstatus
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$0" | sha256sum | cut -c1-16)"
out="$cache/$key/kstatus"
if [ ! -x "$out" ]; then
    started=$SECONDS
    mkdir -p "$(dirname "$out")"
    (cd "$here" && go build -trimpath -ldflags "-s -w" -o "$out.partial" .)
    mv "$out.partial" "$out"
    printf 'kstatus: built in %ss into %s\n' "$((SECONDS - started))" "$out" >&2
fi
printf 'KSTATUS=%s\n' "$out"
