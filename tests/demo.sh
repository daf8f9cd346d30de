#!/usr/bin/env bash
# The README's "main job": the operator rolls the example patch out across 12 simulated Windows
# nodes (rebooting those that need it), then provisions the example HostGroup and runs a task as
# it, and shows it all live. Sets up what it needs first (the test API server is built from
# Debian's Kubernetes libraries and cached; the first run takes about 5 minutes for that).
# Options: --nodes N, --keep (keep the cluster up for kubectl until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "demo: cargo is needed (https://rustup.rs)" >&2; exit 1; }
echo "demo: building the simulated cluster's API server (cached after the first run) and the binaries" >&2
apiserver_paths="$(bash tests/apiserver/build.sh)"
export HOSTPROCESS_TEST_APISERVER="$(sed -n 's/^APISERVER=//p' <<<"$apiserver_paths")"
export HOSTPROCESS_TEST_ETCD="$(sed -n 's/^ETCD=//p' <<<"$apiserver_paths")"
cargo build -q --locked -p node-executor -p hostprocess-demo --bins
export HOSTPROCESS_NODE_EXECUTOR="${CARGO_TARGET_DIR:-$PWD/target}/debug/node-executor"
exec "${CARGO_TARGET_DIR:-$PWD/target}/debug/hostprocess-demo" "$@"
