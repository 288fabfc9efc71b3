#!/bin/bash
# Cold start and memory: start `siamese serve` with every shipped model (from the repository root, a fresh
# SQLite file), time process start → /readyz 200, then read the resident set one second later.
# Usage: bench/compare/coldstart.sh [BIN]   (SIAMESE_ONEDNN=0 to measure without the oneDNN plans)
set -euo pipefail
bin=${1:-target/release/siamese}
d=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
t0=$(date +%s.%N)
"$bin" serve --bind 127.0.0.1:$port --database-url "sqlite://$d/s.db" --work-dir "$d/w" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$d"' EXIT
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 $pid 2>/dev/null || { echo "the server exited" >&2; exit 1; }
  sleep 0.02
done
t1=$(date +%s.%N)
sleep 1
rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$pid/status)
echo "{\"ready_s\": $(echo "$t1 - $t0" | bc), \"rss_mb\": $rss, \"onednn\": \"${SIAMESE_ONEDNN:-1}\"}"
