#!/usr/bin/env bash
# Packages `kubectl hostprocess` for krew: an archive per platform and the manifest that names
# them (deploy/krew/hostprocess.yaml filled in). A platform whose binary is not given is left
# out of the manifest.
#   package.sh --version v0.1.0 --base-url URL --out DIR \
#              [--linux-amd64 BINARY] [--windows-amd64 BINARY.exe]
# URL is where the archives will be published (DIR's files go there as they are).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
version="" base_url="" out=""
declare -A binaries=()
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --base-url) base_url="${2%/}"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --linux-amd64) binaries[linux_amd64]="$2"; shift 2 ;;
        --windows-amd64) binaries[windows_amd64]="$2"; shift 2 ;;
        *) echo "package.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
    esac
done
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "package.sh: --version must look like v0.1.0 (krew wants a v and semver)" >&2; exit 2; }
[ -n "$base_url" ] && [ -n "$out" ] || { echo "package.sh: --base-url and --out are required" >&2; exit 2; }
[ "${#binaries[@]}" -gt 0 ] || { echo "package.sh: give at least one of --linux-amd64 and --windows-amd64" >&2; exit 2; }
mkdir -p "$out"
manifest="$(cat "$here/hostprocess.yaml")"
for platform in linux_amd64 windows_amd64; do
    if [ -z "${binaries[$platform]:-}" ]; then
        # Drop the platform's entry, markers included.
        manifest="$(awk -v p="$platform" '$0 ~ "# begin " p "$" {skip=1} !skip {print} $0 ~ "# end " p "$" {skip=0}' <<<"$manifest")"
        continue
    fi
    binary="${binaries[$platform]}"
    [ -x "$binary" ] || [ -f "$binary" ] || { echo "package.sh: $binary does not exist" >&2; exit 2; }
    name="kubectl-hostprocess"
    [ "$platform" = windows_amd64 ] && name="kubectl-hostprocess.exe"
    stage="$(mktemp -d)"
    cp "$binary" "$stage/$name"
    chmod 755 "$stage/$name"
    cp "$root/README.md" "$stage/README.md"
    archive="$out/kubectl-hostprocess_${version}_${platform}.tar.gz"
    tar -C "$stage" --owner=0 --group=0 -czf "$archive" "$name" README.md
    rm -rf "$stage"
    sum="$(sha256sum "$archive" | cut -d' ' -f1)"
    manifest="${manifest//@SHA256_${platform}@/$sum}"
    echo "package.sh: $archive ($sum)" >&2
done
manifest="${manifest//@VERSION@/$version}"
manifest="${manifest//@BASE_URL@/$base_url}"
printf '%s\n' "$manifest" > "$out/hostprocess.yaml"
echo "package.sh: $out/hostprocess.yaml" >&2
