#!/usr/bin/env bash
# The UCX path beside UCX's own ucx_perftest, same sizes, same run (issue 12):
#   scripts/ucx_vs_perftest.sh [UCX_TLS] [build dir]
# Prints llm_datadist_bench rows (one block of 64 KiB / 1 MiB per call, one
# thread, pull = ucp_get) and ucx_perftest -t ucp_get for the same sizes,
# with endpoint error handling (-e) as our endpoints have it.
set -euo pipefail
tls=${1:-tcp}
build=${2:-build}
iters=${ITERS:-2000}
echo "== $(date -u +%FT%TZ) UCX_TLS=$tls; load: $(cut -d' ' -f1-3 /proc/loadavg)"
UCX_TLS=$tls "$build/tools/llm_datadist_bench" --transports ucx --ops pull --units blocks --block-sizes 64K,1M \
  --blocks-per-call 1 --tensors 1 --threads 1 --memory registered --seconds 3 | grep -E '^(op|pull)'
for size in 65536 1048576; do
  port=$((20000 + RANDOM % 20000))
  UCX_TLS=$tls timeout 120 ucx_perftest -t ucp_get -s "$size" -n "$iters" -w 100 -e -f -p "$port" >/dev/null 2>&1 &
  server=$!
  sleep 0.5
  echo "== ucx_perftest -t ucp_get -s $size (latency us: p50 avg overall | bandwidth MB/s: avg overall | msg/s)"
  UCX_TLS=$tls timeout 120 ucx_perftest 127.0.0.1 -t ucp_get -s "$size" -n "$iters" -w 100 -e -f -p "$port" 2>&1 | tail -1
  wait "$server" || true
done
