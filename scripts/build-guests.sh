#!/usr/bin/env bash
# Builds every guest in the repository from its C source:
#   examples/*  -> examples/demo/apps/, examples/mail/apps/   (the demos' apps)
#   tests/guests/*  -> target/guests/    (fixtures for the integration tests)
# Installs the guest toolchain first if needed (scripts/guest-setup.sh). Rebuilds only what changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/scripts/guest-build.sh
"$root/scripts/guest-setup.sh"
inc=(-I"$root/guests/include")

# kind source output [extra compiler flags, comma-separated]
guests=(
  "component-cli examples/hello/hello.c examples/demo/apps/hello.wasm"
  "cgi examples/cgi-echo/echo.c examples/demo/apps/echo-cgi.wasm"
  "python examples/hello-python/app.py examples/demo/apps/hello-python.wasm"
  "js examples/hello-js/app.js examples/demo/apps/hello-js.wasm"
  "cgi examples/mail/mail.c examples/mail/apps/mail.wasm"
  "component-kv examples/mail/mail.c examples/mail/apps/mail-kv.wasm -DMAIL_KV"
  "component-kv examples/kv-counter/counter.c examples/demo/apps/kv-counter.wasm"
  "component-cli tests/guests/probe-component.c target/guests/probe-component.wasm"
  "component-kv tests/guests/kv-probe.c target/guests/kv-probe.wasm"
  "component-kv examples/kv-counter/counter.c target/guests/kv-counter.wasm"
  "cgi tests/guests/probe-cgi.c target/guests/probe-cgi.wasm"
  "cgi examples/cgi-echo/echo.c target/guests/echo-cgi.wasm"
  "component examples/hello/hello.c target/guests/hello.wasm"
  "cgi examples/mail/mail.c target/guests/mail.wasm"
  "component-kv examples/mail/mail.c target/guests/mail-kv.wasm -DMAIL_KV"
  "cgi examples/cgi-hello/hello.c target/guests/hello-cgi.wasm"
  "python examples/hello-python/app.py target/guests/hello-python.wasm"
  "js examples/hello-js/app.js target/guests/hello-js.wasm"
)
declare -A built  # "kind source flags" -> the output already built from it
for g in "${guests[@]}"; do
  read -r kind src out flags <<<"$g"
  IFS=, read -r -a extra <<<"${flags:-}"
  mkdir -p "$root/$(dirname "$out")"
  # Up to date when newer than its source, the shared header and the build scripts.
  if [ "$root/$out" -nt "$root/$src" ] && [ "$root/$out" -nt "$root/guests/include/palisade_http.h" ] \
     && [ "$root/$out" -nt "$0" ] && [ "$root/$out" -nt "$build" ]; then
    built["$kind $src ${flags:-}"]=$out
    continue
  fi
  if [ -n "${built["$kind $src ${flags:-}"]:-}" ]; then
    cp "$root/${built["$kind $src ${flags:-}"]}" "$root/$out"
    continue
  fi
  echo "guest: $kind $src -> $out" >&2
  "$build" "$kind" "$root/$src" "$root/$out" "${inc[@]}" "${extra[@]}"
  built["$kind $src ${flags:-}"]=$out
done
