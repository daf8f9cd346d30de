#!/usr/bin/env bash
# Prepares a private Wine prefix to run the Windows build of the node-executor in tests:
# installs wine/wine64 and mingw when missing, builds the bcryptprimitives.dll stand-in,
# creates the prefix once — cached outside the repository, keyed by Wine's version — and starts
# a persistent wineserver (fast process starts).
# Prints the environment to use: eval "$(bash tests/wine/setup.sh)".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${HOSTPROCESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hostprocess-operator}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
[ -x /usr/lib/wine/wine64 ] || missing+=(wine wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
if [ ${#missing[@]} -gt 0 ]; then
    echo "wine setup: installing ${missing[*]}" >&2
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

wine_version="$(/usr/lib/wine/wine64 --version 2>/dev/null | tr -c 'A-Za-z0-9.\n-' '_')"
prefix="${HOSTPROCESS_WINEPREFIX:-$cache/wine-prefix-${wine_version:-unknown}}"
export WINEPREFIX="$prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" 
dll="$root/target/wine/bcryptprimitives.dll"
if [ ! -f "$dll" ] || [ "$here/bcryptprimitives.c" -nt "$dll" ]; then
    mkdir -p "$(dirname "$dll")"
    x86_64-w64-mingw32-gcc -O2 -shared -o "$dll" "$here/bcryptprimitives.c" "$here/bcryptprimitives.def" -ladvapi32
fi
if [ ! -f "$prefix/system.reg" ]; then
    echo "wine setup: creating the prefix $prefix (once)" >&2
    mkdir -p "$prefix"
    wineboot -u >/dev/null 2>&1 || true
    wineserver -w
fi
cp "$dll" "$prefix/drive_c/windows/system32/bcryptprimitives.dll"
# A persistent wineserver: each test process then starts in ~0.02 s instead of ~0.5 s.
wineserver -p >/dev/null 2>&1 || true
printf 'export WINEPREFIX=%q WINEDEBUG=-all WINEDLLOVERRIDES=%q\n' "$prefix" "mscoree,mshtml="
