#!/usr/bin/env bash
# The README's "main job": the operator rolls the example patch out across 12 simulated Windows
# nodes (rebooting those that need it), then provisions the example HostGroup and runs a task as
# it, and shows it all live. Sets up what it needs first (the real control plane is built from
# the Go module proxy and cached outside the repository; the first run takes about 15 minutes
# for that on 2 cores).
# Options: --nodes N, --keep (keep the cluster up for kubectl until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "demo: cargo is needed (https://rustup.rs)" >&2; exit 1; }
command -v go >/dev/null || { echo "demo: go is needed to build the control plane (https://go.dev/dl)" >&2; exit 1; }
echo "demo: building the control plane (cached after the first run) and the binaries" >&2
control_plane="$(bash tests/control-plane/build.sh)"
HOSTPROCESS_CONTROL_PLANE_BIN="$(dirname "$(sed -n 's/^KUBECTL=//p' <<<"$control_plane")")"
export HOSTPROCESS_CONTROL_PLANE_BIN
cargo build -q --locked -p node-executor -p hostprocess-demo -p kubectl-hostprocess --bins
export HOSTPROCESS_NODE_EXECUTOR="${CARGO_TARGET_DIR:-$PWD/target}/debug/node-executor"
exec "${CARGO_TARGET_DIR:-$PWD/target}/debug/hostprocess-demo" "$@"
