#!/usr/bin/env bash
# The README's "main job": the demo on the embedded simulated cluster.
set -euo pipefail
echo "demo: not yet available — it needs the simulated cluster (tests/, issue #4) and the operator (issue #5)." >&2
echo "demo: meanwhile, 'bash tests/run-all.sh' runs every test, and" >&2
echo "      'cargo run -q -p hostprocess-crds --bin crdgen' prints the CRDs." >&2
exit 1
