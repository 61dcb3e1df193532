#!/usr/bin/env bash
# HTTP/3: palisade (quinn + h3 on rustls, aws-lc-rs) vs Caddy (quic-go), the same ECDSA P-256 certificate and
# a 1 KiB static file, the load from oha over HTTP/3. Per contender and round:
#   get    1 KiB GETs/s over HTTP/3 keep-alive: CONNECTIONS connections with STREAMS requests in flight on each
#          (8 x 4 by default), with p50, p99 and the server's CPU per request
#   hs     new connections/s: each a QUIC handshake (TLS 1.3, X25519, ECDSA) and one GET; 8 clients
# ROUNDS rounds, servers alternating, one at a time; prints medians and palisade/Caddy ratios. Both use both
# cores (palisade one worker per core, Caddy GOMAXPROCS); PIN=1 gives the server one core and oha the other.
# Usage: bench/http3.sh  (DURATION=5s ROUNDS=3 CONNECTIONS=8 STREAMS=4 by default)
source "$(dirname "$0")/lib.sh"
bench_prepare
OHA=$BENCH_CACHE/bin/oha
CONNECTIONS=${CONNECTIONS:-8} STREAMS=${STREAMS:-4}
secs=${DURATION%s}

cd "$WORK"
https_site $'tls_listen = ["127.0.0.1:18443"]\nhttp3 = true'

# Caddy: HTTPS with HTTP/3 on 18443 (its default protocols), and plain HTTP on 18080 to tell it is up; no
# admin endpoint, no automatic certificates, no access log (its default), state under WORK.
cat >Caddyfile <<CADDY
{
	admin off
	auto_https off
	storage file_system $WORK/caddy-data
}
https://bench.test:18443 {
	tls $WORK/site.pem $WORK/site.key
	root * $WORK/www
	file_server
}
http://:18080 {
	respond "up"
}
CADDY
[ "${PIN:-}" = 1 ] && export GOMAXPROCS=1
start_caddy() {
  HOME=$WORK XDG_CONFIG_HOME=$WORK/caddy-config XDG_DATA_HOME=$WORK/caddy-data \
    start caddy 18080 "${SERVER_ON[@]}" caddy run --config "$WORK/Caddyfile" --adapter caddyfile
}

# h3load OHA_ARGS...: one bounded oha run over HTTP/3 for the 1 KiB file; prints "req/s p50_us p99_us" (fails
# on any answer but 200, or any error but the requests cut off by the deadline).
h3load() {
  "${LOAD_ON[@]}" "$OHA" -z "$DURATION" --no-tui --output-format json --http-version 3 --cacert "$WORK/ca.pem" \
    --connect-to bench.test:18443:127.0.0.1:18443 "$@" https://bench.test:18443/1k.bin >"$WORK/oha.json"
  python3 - "$WORK/oha.json" "$secs" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
codes = d["statusCodeDistribution"]
errors = {k: v for k, v in d["errorDistribution"].items() if "deadline" not in k}
if set(codes) - {"200"} or errors:
    sys.exit(f"failures: {codes} {errors}")
p = d["latencyPercentiles"]
print(f"{codes.get('200', 0) / float(sys.argv[2]):.0f} {p['p50'] * 1e6:.0f} {p['p99'] * 1e6:.0f}")
PY
}

contenders=(palisade caddy)
declare -A get p50 p99 cpu hs
for round in $(seq "$ROUNDS"); do
  for c in "${contenders[@]}"; do
    if [ "$c" = caddy ]; then start_caddy; else start_server palisade; fi
    h3load -c "$CONNECTIONS" -p "$STREAMS" >/dev/null # warm-up
    before=$(cpu_ms "$LAST_PID")
    read -r r a b < <(h3load -c "$CONNECTIONS" -p "$STREAMS")
    after=$(cpu_ms "$LAST_PID")
    u=$(awk -v c=$((after - before)) -v r="$r" -v s="$secs" 'BEGIN { printf "%.1f", (r > 0) ? c * 1000 / (r * s) : 0 }')
    read -r h _ _ < <(h3load -c 8 --disable-keepalive)
    get[$c]+="$r " p50[$c]+="$a " p99[$c]+="$b " cpu[$c]+="$u " hs[$c]+="$h "
    echo "round $round: $c $r GET/s (p50 $a us, p99 $b us, CPU $u us per request), $h handshakes/s" >&2
    stop "$LAST_PID"
  done
done

printf '\n%-10s %10s %9s %9s %9s %12s\n' server GET/s p50_us p99_us cpu_us handshakes/s
for c in "${contenders[@]}"; do
  # shellcheck disable=SC2086
  printf '%-10s %10s %9s %9s %9s %12s\n' "$c" "$(median ${get[$c]})" "$(median ${p50[$c]})" \
    "$(median ${p99[$c]})" "$(median ${cpu[$c]})" "$(median ${hs[$c]})"
done
# shellcheck disable=SC2086
echo "HTTP/3: palisade/caddy GET/s = $(ratio "$(median ${get[palisade]})" "$(median ${get[caddy]})"), p99 = $(ratio "$(median ${p99[palisade]})" "$(median ${p99[caddy]})"), CPU per request = $(ratio "$(median ${cpu[palisade]})" "$(median ${cpu[caddy]})"), handshakes/s = $(ratio "$(median ${hs[palisade]})" "$(median ${hs[caddy]})")"
