#!/usr/bin/env bash
# Prints the figures the issues' targets name from the outputs of docs/bench-all.sh or
# docs/bench-ab.sh: per live run p99 (publish→receive), unpin→last viewer p99, server and
# loadgen CPU per delivery, gaps, KiB per connection; the sales' ratios, CPU and ramp p99;
# the media rows at 100/200 viewers.  Usage: bash docs/bench-summary.sh DIR...
for d in "$@"; do
  echo "== $d"; [ -f "$d/commits" ] && cat "$d/commits"; [ -f "$d/commit" ] && cat "$d/commit"
  for f in "$d"/live-*.txt; do
    [ -f "$f" ] || continue
    awk -v n="$(basename "$f" .txt)" '
      /latency publish/ {p99=$6}
      /unpin → last viewer/ {ul=$10}
      /server CPU/ {srv=$7}
      /loadgen CPU/ {lg=$5}
      /^  deliveries/ {gaps=$8; dups=$10; drop=$13}
      /server RSS/ {kib=$(NF-3)}
      END {printf "%-14s p99 %-9s unpin_last_p99 %-9s srv %-5s lg %-5s gaps %s dups %s dropped %s KiB %s\n", n, p99, ul, srv, lg, gaps, dups, drop, kib}' "$f"
  done
  for f in "$d"/sale*.txt; do
    [ -f "$f" ] || continue; echo "-- $(basename "$f")"
    grep -E "sale/noop|cpu_us|BAD" "$f"
    grep -E '^[a-z-]+ +[0-9]+ +(hold|checkout) ' "$f" | awk '{printf "%s %s %s p99 %s fail %s oversell %s\n", $1, $2, $3, $7, $9, $10}'
  done
  for f in "$d"/media-*.txt; do
    [ -f "$f" ] || continue
    echo "-- $(basename "$f")"; grep -E '^ +(100|200) ' "$f"
  done
done
