#!/usr/bin/env bash
# Compares two builds at equal load in one run: OLD (a commit, built from a clean export)
# against NEW (this checkout). Sales: `loadgen sale` with four targets (old and new on the
# embedded store and on Redis dbs 11 and 12), 1,000 and 5,000 buyers, 3 runs, CPU of each
# server and of redis-server, once old first (sale.txt) and once new first (sale-ba.txt);
# then 1,000 buyers arriving over 1 s. Live: 4 pairs of 10,000 viewers x 10/s, old and new
# alternating. Media: 3 pairs at 200 viewers.
# Usage: bash docs/bench-ab.sh OLDCOMMIT OUTDIR  (about 14 minutes; uses Redis dbs 11 and 12,
# TCP 18088, 18181-18184, 18480, UDP 18444-18448, 28643; run it on a quiet machine)
# Summarise with: bash docs/bench-summary.sh OUTDIR
set -u
OLD=${1:?old commit}; OUT=${2:-/tmp/fb/ab}; mkdir -p "$OUT" /tmp/fb/old /tmp/fb/new
cd "$(dirname "$0")/.."
go build -o /tmp/fb/new/livecart ./cmd/livecart && go build -o /tmp/fb/new/loadgen ./cmd/loadgen || exit 1
SRC=$(mktemp -d); git archive "$OLD" | tar -x -C "$SRC" && (cd "$SRC" && go build -o /tmp/fb/old/livecart ./cmd/livecart) || exit 1
rm -rf "$SRC"
{ echo "old $(git log --oneline -1 "$OLD")"; echo "new $(git log --oneline -1) $(git status --short | wc -l) files changed"; } > "$OUT/commits"
LG=/tmp/fb/new/loadgen
S=s3cret-0123456789abcdef
export LIVECART_AUTH_SECRET=$S
wait_ready() { for _ in $(seq 1 100); do curl -sf "$1/readyz" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1"; return 1; }
# sales
redis-cli -n 11 flushdb >/dev/null; redis-cli -n 12 flushdb >/dev/null
D=$(mktemp -d)
LIVECART_ADDR=127.0.0.1:18181 LIVECART_DATA_DIR=$D/1 LIVECART_UDP_PORT=18444 /tmp/fb/old/livecart >/dev/null 2>&1 & P1=$!
LIVECART_ADDR=127.0.0.1:18182 LIVECART_DATA_DIR=$D/2 LIVECART_UDP_PORT=18445 /tmp/fb/new/livecart >/dev/null 2>&1 & P2=$!
LIVECART_ADDR=127.0.0.1:18183 LIVECART_DATA_DIR=$D/3 LIVECART_UDP_PORT=18446 LIVECART_STORE=redis LIVECART_NODE_ID=abold LIVECART_REDIS_URL=redis://127.0.0.1:6379/11 /tmp/fb/old/livecart >/dev/null 2>&1 & P3=$!
LIVECART_ADDR=127.0.0.1:18184 LIVECART_DATA_DIR=$D/4 LIVECART_UDP_PORT=18447 LIVECART_STORE=redis LIVECART_NODE_ID=abnew LIVECART_REDIS_URL=redis://127.0.0.1:6379/12 /tmp/fb/new/livecart >/dev/null 2>&1 & P4=$!
for p in 18181 18182 18183 18184; do wait_ready http://127.0.0.1:$p; done
RP=$(pgrep -f "redis-server.*6379" | head -1)
T="-target old-emb=http://127.0.0.1:18181 -target new-emb=http://127.0.0.1:18182 -target old-redis=http://127.0.0.1:18183 -target new-redis=http://127.0.0.1:18184"
$LG sale $T -secret $S -buyers 1000,5000 -runs 3 -cpu old-emb=$P1 -cpu new-emb=$P2 -cpu old-redis=$P3 -cpu new-redis=$P4 \
  -cpu old-redis/redis-server=$RP -cpu new-redis/redis-server=$RP > "$OUT/sale.txt" 2>&1
# The same with new before old: of two targets on one store, the second one read ~1-2 µs
# more server and redis-server CPU per sale request (helper 3, session 24), so each
# binary runs once in each place.
T2="-target new-emb=http://127.0.0.1:18182 -target old-emb=http://127.0.0.1:18181 -target new-redis=http://127.0.0.1:18184 -target old-redis=http://127.0.0.1:18183"
$LG sale $T2 -secret $S -buyers 1000,5000 -runs 3 -cpu old-emb=$P1 -cpu new-emb=$P2 -cpu old-redis=$P3 -cpu new-redis=$P4 \
  -cpu old-redis/redis-server=$RP -cpu new-redis/redis-server=$RP > "$OUT/sale-ba.txt" 2>&1
$LG sale $T -secret $S -buyers 1000 -runs 3 -ramp 1s > "$OUT/sale-ramp.txt" 2>&1
kill $P1 $P2 $P3 $P4; wait $P1 $P2 $P3 $P4 2>/dev/null; rm -rf "$D"
# live
for run in 1 2 3 4; do
  for v in old new; do
    D=$(mktemp -d)
    LIVECART_ADDR=127.0.0.1:18088 LIVECART_DATA_DIR=$D LIVECART_UDP_PORT=28643 /tmp/fb/$v/livecart >/dev/null 2>&1 & P=$!
    wait_ready http://127.0.0.1:18088
    $LG ws -server http://127.0.0.1:18088 -secret $S -viewers 10000 -rate 10 -duration 10s -unpins 3 -server-pid $P > "$OUT/live-$v-$run.txt" 2>&1
    kill $P; wait $P 2>/dev/null; rm -rf "$D"; sleep 2
  done
done
# media
printf 'media:\n  baseline: false\nlog:\n  level: warn\n' > "$OUT/media.yaml"
for run in 1 2 3; do
  for v in old new; do
    D=$(mktemp -d)
    CT=$(LIVECART_DATA_DIR=$D /tmp/fb/$v/livecart token --role creator --user bench-creator --name Bench --ttl 2h 2>/dev/null | tail -1)
    LIVECART_ADDR=127.0.0.1:18480 LIVECART_DATA_DIR=$D LIVECART_UDP_PORT=18448 /tmp/fb/$v/livecart --config "$OUT/media.yaml" >/dev/null 2>&1 & P=$!
    wait_ready http://127.0.0.1:18480
    $LG media -url http://127.0.0.1:18480 -token "$CT" -viewers 200 -duration 8s -warmup 3s -server-pid $P > "$OUT/media-$v-$run.txt" 2>&1
    kill $P; wait $P 2>/dev/null; rm -rf "$D"; sleep 2
  done
done
echo done
