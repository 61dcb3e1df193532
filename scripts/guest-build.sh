#!/usr/bin/env bash
# Compiles one C (or C++) source into a palisade guest (run scripts/guest-setup.sh first; it is called if needed).
#   build.sh cgi       in.c out.wasm   # WASI preview1 command module (CGI/1.1: env + stdin in, stdout out)
#   build.sh component in.c out.wasm   # wasi:http/proxy component (exports wasi:http/incoming-handler)
#   build.sh component-cli in.c out.wasm  # the same, linked with the full WASI adapter: getenv, files, clocks
#                                         # (imports wasi:cli and wasi:filesystem besides wasi:http)
#   build.sh component-kv in.c out.wasm   # the same as component-cli, also importing wasi:keyvalue (store,
#                                         # atomics, batch)
#   build.sh python    app.py out.wasm   # wasi:http/proxy component from Python (componentize-py); the module
#                                         # defines class IncomingHandler(exports.IncomingHandler)
#   build.sh js        app.js out.wasm   # wasi:http/proxy component from JavaScript (ComponentizeJS);
#                                         # the script calls addEventListener('fetch', ...)
# Extra compiler flags may follow: build.sh cgi in.c out.wasm -DFOO -Iinclude
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${GUEST_CACHE:-$HOME/.cache/palisade-guest}
[ $# -ge 3 ] || { echo "usage: $0 cgi|component|component-cli|component-kv|python|js IN OUT.wasm [cflags...]" >&2; exit 2; }
kind=$1 src=$2 out=$3; shift 3
[ -f "$src" ] || { echo "build.sh: no such source: $src" >&2; exit 2; }
[ -f "$CACHE/wit-js/world.wit" ] && [ -f "$CACHE/bindings/kv/proxy.c" ] || "$here/guest-setup.sh"
export PATH=$HOME/.cargo/bin:$PATH
cc=(clang-19 --target=wasm32-wasi --sysroot="$CACHE/sysroot" -O2)
case "$src" in *.cc|*.cpp|*.cxx) cc=(clang++-19 --target=wasm32-wasi --sysroot="$CACHE/sysroot" -O2 -fno-exceptions) ;; esac
case $kind in
  cgi)
    "${cc[@]}" "$@" "$src" -o "$out" ;;
  component|component-cli|component-kv)
    # component-cli and component-kv get the full adapter (getenv, files); component only wasi:http.
    adapter=proxy; [ "$kind" != component ] && adapter=reactor
    b=$CACHE/bindings/proxy; [ "$kind" = component-kv ] && b=$CACHE/bindings/kv
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    "${cc[@]}" -mexec-model=reactor -I"$b" "$@" "$src" "$b/proxy.c" "$b/proxy_component_type.o" -o "$tmp/core.wasm"
    wasm-tools component new "$tmp/core.wasm" \
      --adapt wasi_snapshot_preview1="$CACHE/adapter/wasi_snapshot_preview1.$adapter.wasm" -o "$out" ;;
  python)
    # componentize-py imports the app as a module: its directory goes on the search path, its stem is the name.
    out=$(realpath -m "$out")
    (cd "$(dirname "$src")" && "$CACHE/python/bin/componentize-py" --quiet -d "$CACHE/wit" -w wasi:http/proxy@0.2.12 \
      componentize "$(basename "$src" .py)" -o "$out") ;;
  js)
    "$CACHE/js/node_modules/.bin/componentize-js" --wit "$CACHE/wit-js" --world-name js-http "$src" -o "$out" >/dev/null ;;
  *) echo "build.sh: kind must be cgi, component, component-cli, component-kv, python or js, not '$kind'" >&2; exit 2 ;;
esac
