#!/usr/bin/env bash
# The Dockerfiles under deploy/images are not built here (no container engine): this runs the
# `cargo build` line of each build stage on this machine and checks that every path its final
# stage copies from that stage exists in the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
# What is checked here is where the files land, which the profile's optimisation settings do not
# change: build them quickly (the image build itself keeps the workspace's fat-LTO release profile).
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=0
for dockerfile in deploy/images/*.Dockerfile; do
    workdir="$(awk '/^WORKDIR/ {print $2; exit}' "$dockerfile")"
    build="$(grep -E '^RUN cargo build' "$dockerfile" | sed 's/^RUN //')"
    [ -n "$workdir" ] && [ -n "$build" ] || { echo "$dockerfile: no WORKDIR or cargo build line" >&2; exit 1; }
    echo "images: $dockerfile: $build"
    $build --quiet
    grep -E '^COPY --from=build ' "$dockerfile" | while read -r _ _ source _; do
        path="${source#"$workdir"/}"
        [ -f "$path" ] || { echo "$dockerfile copies $source, but the release build has no $path" >&2; exit 1; }
        echo "images:   $path exists ($(du -h "$path" | cut -f1))"
    done
done
