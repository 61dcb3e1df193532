#!/usr/bin/env bash
# In-place binary upgrades under load: palisade (`palisade upgrade --pid-file`, which sends SIGUSR2) against
# nginx's documented binary upgrade (SIGUSR2 to the master, then SIGWINCH and SIGQUIT to the old one once the
# new one runs). Both serve a 1 KiB file; wrk loads each for DURATION (default 8s) and the upgrade starts 3 s in.
# Two loads: keep-alive (16 connections) and a new connection per request (8 connections, `Connection: close`).
# Printed per round: requests, failed ones (wrk's socket errors: connect, read, write, timeout, plus non-2xx)
# and the slowest request. ROUNDS rounds (default 3), the contenders alternating.
# Usage: bench/upgrade.sh
DURATION=${DURATION:-8s}
source "$(dirname "$0")/lib.sh"
bench_prepare
static_site 'shutdown_timeout = "10s"'
# nginx changes binaries only as a daemon (in the foreground its master ignores SIGUSR2, its parent being alive).
sed -i 's/^daemon off;/daemon on;/' "$WORK/nginx.conf"
URL=http://127.0.0.1:18080/1k.bin

# run_wrk CONNECTIONS [WRK_ARGS...]: wrk for DURATION; prints "requests failed max_ms".
run_wrk() {
  local conns=$1
  shift
  "${LOAD_ON[@]}" wrk -t1 -c"$conns" -d"$DURATION" --latency "$@" "$URL" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "Latency" && $2 != "Distribution" { max = ms($4) }
    /requests in/ { requests = $1 }
    /Socket errors:/ { gsub(",", ""); failed += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { failed += $5 }
    END { printf "%d %d %.1f\n", requests, failed, max }'
}

# upgrade NAME: starts the binary upgrade of the running server NAME and waits until the new one serves alone.
upgrade() {
  case $1 in
    palisade) "$PALISADE" upgrade --pid-file "$WORK/palisade.pid" >/dev/null ;;
    nginx)
      local old
      old=$(cat "$WORK/nginx.pid")
      kill -USR2 "$old"
      for _ in $(seq 100); do [ -s "$WORK/nginx.pid" ] && [ "$(cat "$WORK/nginx.pid")" != "$old" ] && break; sleep 0.05; done
      kill -WINCH "$old"
      kill -QUIT "$old"
      ;;
  esac
}

# serve NAME: starts NAME on port 18080, as its upgrades need it (an absolute path, a pid file).
serve() {
  rm -f "$WORK/palisade.pid" "$WORK/nginx.pid"
  case $1 in
    palisade) RUST_LOG=warn start palisade 18080 "${SERVER_ON[@]}" "$PALISADE" serve --config "$WORK/palisade.toml" \
      --pid-file "$WORK/palisade.pid" ;;
    nginx) start nginx 18080 "${SERVER_ON[@]}" /usr/sbin/nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" ;;
  esac
}

# Whatever serves on the port after an upgrade (the new process, not started here): stopped through its pid file.
stop_all() {
  for f in "$WORK/palisade.pid" "$WORK/nginx.pid"; do
    [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do curl -s -o /dev/null "$URL" || break; sleep 0.1; done
}

declare -A failed worst total
for round in $(seq "$ROUNDS"); do
  for load_kind in keepalive close; do
    for c in palisade nginx; do
      serve "$c"
      if [ "$load_kind" = keepalive ]; then
        run_wrk 16 >"$WORK/out" &
      else
        run_wrk 8 -H 'Connection: close' >"$WORK/out" &
      fi
      loader=$!
      sleep 3
      upgrade "$c"
      wait "$loader"
      read -r requests f max <"$WORK/out"
      curl -sf -o /dev/null "$URL" || { echo "$c: nothing serves after the upgrade" >&2; exit 1; }
      echo "round $round $load_kind $c: $requests requests, $f failed, slowest $max ms" >&2
      key="$c/$load_kind"
      failed[$key]+="$f " worst[$key]+="$max " total[$key]+="$requests "
      stop_all
    done
  done
done

echo
echo "binary upgrade under load ($DURATION of wrk, upgrade at 3 s; medians of $ROUNDS rounds)"
printf '%-10s %-10s %10s %8s %14s\n' server load requests failed slowest_ms
for load_kind in keepalive close; do
  for c in palisade nginx; do
    key="$c/$load_kind"
    # shellcheck disable=SC2086
    printf '%-10s %-10s %10s %8s %14s\n' "$c" "$load_kind" "$(median ${total[$key]})" "$(median ${failed[$key]})" \
      "$(median ${worst[$key]})"
  done
done
echo "failed per round: $(for k in "${!failed[@]}"; do printf '%s=[%s] ' "$k" "${failed[$k]% }"; done)"
