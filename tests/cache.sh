# Sourced by the scripts that build test tools (kstatus, cargo-deny): where
# they cache what they build, outside the clone, and one build at a time per tool.
#   cache_locked NAME   sets $cache to the tool's cache directory, creates it, and holds its lock
#                       (file descriptor 9) until the script exits.
cache_locked() {
    cache="${HOSTPROCESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hostprocess-operator}/$1"
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    flock 9
}
