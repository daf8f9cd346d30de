#!/usr/bin/env bash
# Runs every test of the project, after installing what the tests need when it is missing:
# the Windows cross target and its linker, Go for building the real control plane, Wine for
# running the Windows build. Safe to run again; CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# A one-shot build gains nothing from incremental state, which took a third of target/ (5 GB).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

log "prerequisites"
if ! rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
    rustup target add x86_64-pc-windows-gnu
fi
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
command -v x86_64-w64-mingw32-gcc >/dev/null || apt_install gcc-mingw-w64-x86-64

log "cargo fmt --check"
cargo fmt --all --check

log "clippy (Linux)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "clippy (x86_64-pc-windows-gnu): the crates that run on Windows nodes"
# The operator runs on Linux nodes and the simulated cluster is a Linux test harness.
cargo clippy -p hostprocess-crds -p hostprocess-protocol -p node-executor --all-targets --locked --target x86_64-pc-windows-gnu -- -D warnings

log "dependencies: licences, bans and sources (deny.toml)"
cargo_deny="$(bash tests/deny/install.sh | sed -n 's/^CARGO_DENY=//p')"
"$cargo_deny" deny --log-level error check licenses bans sources

log "CRDs are up to date"
crds="$(cargo run -q --locked -p hostprocess-crds --bin crdgen)"
for file in crds/hostprocess.dev.yaml deploy/crds.yaml; do
    diff -u "$file" - <<<"$crds" || { echo "$file is stale: regenerate it (see README)" >&2; exit 1; }
done

log "the real control plane and the kstatus check (built from the Go module proxy, cached outside the clone)"
command -v go >/dev/null || apt_install golang-go
control_plane="$(bash tests/control-plane/build.sh)"
HOSTPROCESS_CONTROL_PLANE_BIN="$(dirname "$(sed -n 's/^KUBECTL=//p' <<<"$control_plane")")"
export HOSTPROCESS_CONTROL_PLANE_BIN
HOSTPROCESS_KSTATUS="$(bash tests/kstatus/build.sh | sed -n 's/^KSTATUS=//p')"
export HOSTPROCESS_KSTATUS
unformatted="$(gofmt -l tests/control-plane tests/kstatus)"
[ -z "$unformatted" ] || { echo "gofmt: $unformatted" >&2; exit 1; }

log "cargo test (Linux)"
# The simulated nodes run this build of the executor (Linux platform).
cargo build --locked -p node-executor --bin node-executor
export HOSTPROCESS_NODE_EXECUTOR="${CARGO_TARGET_DIR:-$PWD/target}/debug/node-executor"
cargo test --workspace --locked

log "the krew manifest installs the plugin and kubectl runs it"
bash tests/krew/run.sh "${CARGO_TARGET_DIR:-$PWD/target}/debug/kubectl-hostprocess"

log "the demo (README's main job) completes"
bash tests/demo.sh --nodes 6 >/tmp/hostprocess-demo.log 2>&1 || { tail -40 /tmp/hostprocess-demo.log >&2; exit 1; }
tail -6 /tmp/hostprocess-demo.log

log "node-executor's Windows build under Wine"
eval "$(bash tests/wine/setup.sh)"
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT
cargo test --locked -p node-executor -p hostprocess-protocol --target x86_64-pc-windows-gnu

log "the image Dockerfiles copy what a release build makes"
bash tests/images.sh
