#!/usr/bin/env bash
# The benchmark sweep of issue 10, for any machine bigger than the
# development VM (the 16-core GPU server in particular), in under 5 minutes.
#
#   scripts/bench-server.sh [BIN_DIR]        run the sweep
#   scripts/bench-server.sh --pack OUT_DIR   here: gather what a machine with
#                                            no compiler needs into OUT_DIR
#
# BIN_DIR (or $LLDD_BENCH_DIR) holds llm_datadist_bench; libllm_datadist.so
# is looked for next to it, one level up (a build tree: build/tools/ and
# build/) and in ../lib (an install tree). Without either, the script's own
# folder (a --pack folder) and then build/tools of this checkout are tried.
# No cmake, compiler, network or package manager is needed where it runs:
#
#   here:    cmake --build build --target llm_datadist_bench llm_datadist_demo
#            scripts/bench-server.sh --pack /tmp/lldd-bench
#            (copy /tmp/lldd-bench to the server)
#   there:   /path/to/lldd-bench/bench-server.sh
#
# The pack also carries this machine's libstdc++ and libgcc_s, used only if
# the binaries do not start with the server's own (an older libstdc++).
# glibc is never packed: the binaries need no newer one than this machine's,
# and a newer glibc runs them.
#
# Output: the tables on stdout and, in $LLDD_BENCH_OUT (default
# ./lldd-bench-<host>-<time>), the machine, each run's table and JSON lines,
# and summary.txt with every run's one-line verdict on the issue's targets.
# Environment: LLDD_BENCH_THREADS (default 1,4,8), LLDD_BENCH_SECONDS (time
# per row and per limit, default 0.3), LLDD_BENCH_DEMO=0 skips
# the demo run, LLDD_BENCH_EXTRA (more arguments for every benchmark run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ "${1:-}" == "--pack" ]]; then
  out="${2:?usage: bench-server.sh --pack OUT_DIR}"
  build="${LLDD_BUILD_DIR:-$here/../build}"
  [[ -x "$build/tools/llm_datadist_bench" ]] || { echo "no $build/tools/llm_datadist_bench: build it first" >&2; exit 1; }
  mkdir -p "$out/fallback-libs"
  cp "$build/tools/llm_datadist_bench" "$out/"
  [[ -x "$build/tools/llm_datadist_demo" ]] && cp "$build/tools/llm_datadist_demo" "$out/"
  # The library under its soname, the name the binaries ask for.
  soname="$(basename "$(readlink "$build/libllm_datadist.so" || echo libllm_datadist.so)")"
  cp -L "$build/libllm_datadist.so" "$out/$soname"
  # Debug info is of no use there and triples the size.
  if command -v strip >/dev/null; then
    for f in "$out"/llm_datadist_* "$out/$soname"; do strip --strip-debug "$f"; done
  fi
  cp "$here/bench-server.sh" "$out/"
  # Anything but glibc the binaries link from the system, for an older server.
  for lib in $(ldd "$build/tools/llm_datadist_bench" | awk '$3 ~ /^\// {print $3}'); do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libllm_datadist*) ;;
      *) cp -L "$lib" "$out/fallback-libs/" ;;
    esac
  done
  echo "packed into $out:"; ls -la "$out" "$out/fallback-libs"
  exit 0
fi

bin="${1:-${LLDD_BENCH_DIR:-}}"
if [[ -z "$bin" ]]; then
  if [[ -x "$here/llm_datadist_bench" ]]; then bin="$here"; else bin="$here/../build/tools"; fi
fi
bin="$(cd "$bin" && pwd)"
bench="$bin/llm_datadist_bench"
[[ -x "$bench" ]] || { echo "no llm_datadist_bench in $bin" >&2; exit 1; }
export LD_LIBRARY_PATH="$bin:$bin/..:$bin/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! "$bench" --help >/dev/null 2>&1; then
  if [[ -d "$bin/fallback-libs" ]]; then
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$bin/fallback-libs"
  fi
  if ! "$bench" --help >/dev/null 2>&1; then
    echo "llm_datadist_bench does not start:" >&2
    "$bench" --help 2>&1 | head -5 >&2 || true
    exit 1
  fi
fi

threads="${LLDD_BENCH_THREADS:-1,4,8}"
seconds="${LLDD_BENCH_SECONDS:-0.3}"
out="${LLDD_BENCH_OUT:-$PWD/lldd-bench-$(uname -n)-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
extra=()
[[ -n "${LLDD_BENCH_EXTRA:-}" ]] && read -r -a extra <<<"$LLDD_BENCH_EXTRA"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "uname: $(uname -a)"
  echo "cores: $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo ?)"
  grep -m1 'model name' /proc/cpuinfo 2>/dev/null || true
  grep -m1 MemTotal /proc/meminfo 2>/dev/null || true
  echo "glibc: $(getconf GNU_LIBC_VERSION 2>/dev/null || echo ?)"
  echo "bench: $bench"
  echo "LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
} | tee "$out/machine.txt"

start=$SECONDS
: >"$out/summary.txt"
run() {  # name, benchmark arguments...
  local name="$1"
  shift
  echo
  echo "== $name: llm_datadist_bench $*"
  local t0=$SECONDS
  "$bench" "$@" --seconds "$seconds" "${extra[@]}" --json-out "$out/$name.jsonl" | tee "$out/$name.txt" || true
  echo "$name ($((SECONDS - t0)) s): $(grep '^targets:' "$out/$name.txt" || echo 'no verdict (failed: see above)')" \
    >>"$out/summary.txt"
}

# The issue's sweep: 1 MiB x 256 pull and push (allocated), pull
# (registered), 4 KiB x 2048, 4 KiB x 256 (allocated and registered), 64 KiB
# x 1, on shm and tcp, at each client thread count.
run quick --quick --transports shm,tcp --threads "$threads"
# 4 KiB x 256 pushes, both memory kinds: the thread-scaling target is on every path.
run small-push --transports shm,tcp --ops push --units blocks --block-sizes 4K --blocks-per-call 256 \
  --memory allocated,registered --threads "$threads"
# TCP with one connection per core instead of the library's default.
cores="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 4)"
(( cores > 64 )) && cores=64
run tcp-conns-per-core --transports tcp --ops pull,push --units blocks --block-sizes 1M --blocks-per-call 256 \
  --memory allocated --threads 1,8 --tcp-connections "$cores"

if [[ "${LLDD_BENCH_DEMO:-1}" != 0 && -x "$bin/llm_datadist_demo" ]]; then
  echo
  echo "== demo: llm_datadist_demo --model llama3-8b --requests 16 --concurrency 8"
  if command -v timeout >/dev/null; then t=(timeout 120); else t=(); fi
  "${t[@]}" "$bin/llm_datadist_demo" --model llama3-8b --requests 16 --concurrency 8 2>&1 | tee "$out/demo.txt" ||
    echo "demo: failed or timed out" | tee -a "$out/summary.txt"
fi

echo
echo "== done in $((SECONDS - start)) s; results in $out"
cat "$out/summary.txt"
