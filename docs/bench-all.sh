#!/usr/bin/env bash
# Runs the three load tests one after another (live 10,000 x 10/s; media parallel and
# baseline at 100,200 viewers; sales on both stores at 1,000 and 5,000 buyers, then arriving
# over 1 s), each server freshly started, 3 runs each; the outputs go to OUTDIR.
# Usage: bash docs/bench-all.sh OUTDIR  (about 8 minutes; uses Redis db 11, TCP 18088,
# 18181, 18182, 18480, UDP 18444-18446, 28643; run it on a quiet machine)
set -u
OUT=${1:-/tmp/fb/out}; mkdir -p /tmp/fb "$OUT"
cd "$(dirname "$0")/.."
go build -o /tmp/fb/livecart ./cmd/livecart && go build -o /tmp/fb/loadgen ./cmd/loadgen || exit 1
S=s3cret-0123456789abcdef
export LIVECART_AUTH_SECRET=$S
wait_ready() { for _ in $(seq 1 100); do curl -sf "$1/readyz" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1"; return 1; }
git log --oneline -1 > "$OUT/commit"
# live
for run in 1 2 3; do
  LIVECART_ADDR=127.0.0.1:18088 LIVECART_DATA_DIR=$(mktemp -d) LIVECART_UDP_PORT=28643 /tmp/fb/livecart >/dev/null 2>&1 & P=$!
  wait_ready http://127.0.0.1:18088
  /tmp/fb/loadgen ws -server http://127.0.0.1:18088 -secret $S -viewers 10000 -rate 10 -duration 10s -unpins 3 -server-pid $P > "$OUT/live-$run.txt" 2>&1
  kill $P; wait $P 2>/dev/null; sleep 2
done
# media
CT=$(/tmp/fb/livecart token --role creator --user bench-creator --name Bench --ttl 2h 2>/dev/null | tail -1)
for run in 1 2 3; do
  for mode in false true; do
    printf 'media:\n  baseline: %s\nlog:\n  level: warn\n' $mode > /tmp/fb/media-$mode.yaml
    LIVECART_ADDR=127.0.0.1:18480 LIVECART_DATA_DIR=$(mktemp -d) LIVECART_UDP_PORT=18444 /tmp/fb/livecart --config /tmp/fb/media-$mode.yaml >/dev/null 2>&1 & P=$!
    wait_ready http://127.0.0.1:18480
    /tmp/fb/loadgen media -url http://127.0.0.1:18480 -token "$CT" -viewers 100,200 -duration 8s -warmup 3s -server-pid $P > "$OUT/media-baseline_$mode-$run.txt" 2>&1
    kill $P; wait $P 2>/dev/null; sleep 2
  done
done
# sales
redis-cli -n 11 flushdb >/dev/null
LIVECART_ADDR=127.0.0.1:18181 LIVECART_DATA_DIR=$(mktemp -d) LIVECART_UDP_PORT=18445 /tmp/fb/livecart >/dev/null 2>&1 & PE=$!
LIVECART_ADDR=127.0.0.1:18182 LIVECART_DATA_DIR=$(mktemp -d) LIVECART_UDP_PORT=18446 LIVECART_STORE=redis LIVECART_REDIS_URL=redis://127.0.0.1:6379/11 /tmp/fb/livecart >/dev/null 2>&1 & PR=$!
wait_ready http://127.0.0.1:18181; wait_ready http://127.0.0.1:18182
RP=$(pgrep -f "redis-server.*6379" | head -1)
/tmp/fb/loadgen sale -target embedded=http://127.0.0.1:18181 -target redis=http://127.0.0.1:18182 -secret $S -buyers 1000,5000 -runs 3 -cpu embedded=$PE -cpu redis=$PR -cpu redis/redis-server=$RP > "$OUT/sale.txt" 2>&1
/tmp/fb/loadgen sale -target embedded=http://127.0.0.1:18181 -target redis=http://127.0.0.1:18182 -secret $S -buyers 1000 -runs 3 -ramp 1s > "$OUT/sale-ramp.txt" 2>&1
kill $PE $PR; wait 2>/dev/null
echo done
