#!/usr/bin/env bash
# `make demo`: a local broker, the declared topics, a day of simulated traffic produced into Kafka and
# tailed back. Stops the broker it started, even on failure.
set -euo pipefail
out=${1:-${PANTHER_HOME:-$HOME/.cache/panther}/demo}
started_here=0
cleanup() { if [ "$started_here" = 1 ]; then panther kafka stop || true; fi; }
trap cleanup EXIT

if ! panther kafka status >/dev/null 2>&1; then
  panther kafka start
  started_here=1
fi
panther topics create
panther simulate --users 2000 --days 1 --seed 7 --out "$out"
panther produce --input "$out/profiles.parquet"
panther produce --input "$out/transactions.parquet" --rate 2000 --record-time now
echo "== the first 15 transactions back from Kafka:"
panther tail --topic transactions --from-beginning --max 15 --idle-timeout 20
echo "== demo done: records went through a real Kafka broker at ${PANTHER_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
