#!/usr/bin/env bash
# Installs cargo-deny (licenses, bans and sources of every crate in Cargo.lock, checked against
# deny.toml) from crates.io at the version below, with its own Cargo.lock. Cached outside the
# repository, keyed by the version and this script. Prints CARGO_DENY=<path>.
set -euo pipefail
version=0.20.2
. "$(dirname "$0")/../cache.sh"
cache_locked cargo-deny
key="$(printf '%s\n' "$version" | cat - "$0" | sha256sum | cut -c1-16)"
root="$cache/$key"
if [ ! -x "$root/bin/cargo-deny" ]; then
    started=$SECONDS
    cargo install --quiet --locked --version "$version" --root "$root.partial" cargo-deny
    rm -rf "$root"
    mv "$root.partial" "$root"
    printf 'cargo-deny: built in %ss into %s\n' "$((SECONDS - started))" "$root" >&2
fi
printf 'CARGO_DENY=%s\n' "$root/bin/cargo-deny"
