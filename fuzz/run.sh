#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and runs each for
# a while (default 60 s each):
#
#   fuzz/run.sh [seconds] [target...]     # targets: fuzz_protocol fuzz_planner fuzz_data_server fuzz_ucx_keys fuzz_cuda_describe
#
# Each target starts from its checked-in seeds (fuzz/corpus/<target>/, made
# by fuzz_make_seeds) and keeps what it finds in build-fuzz/corpus/<target>/,
# so later runs resume from there. A crash leaves its input in
# build-fuzz/artifacts/<target>/ and makes this script fail; reproduce it
# with build-fuzz/fuzz/<target> <file>, then turn it into a unit test.
#
# Long session (e.g. overnight, one job per core, all targets in turn):
#   FUZZ_JOBS=$(nproc) fuzz/run.sh 28800
#
# Environment: CXX (default clang++), FUZZ_JOBS (parallel fuzzing jobs per
# target, default 1), BUILD_DIR (default build-fuzz), JOBS (build jobs).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(fuzz_protocol fuzz_planner fuzz_data_server fuzz_ucx_keys fuzz_cuda_describe)
build_dir=${BUILD_DIR:-build-fuzz}
fuzz_jobs=${FUZZ_JOBS:-1}

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER="${CXX:-clang++}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLLM_DATADIST_BUILD_FUZZERS=ON -DLLM_DATADIST_BUILD_TESTS=OFF -DLLM_DATADIST_BUILD_TOOLS=OFF -DLLM_DATADIST_WERROR=ON \
  -DLLM_DATADIST_WITH_CUDA=OFF -DLLM_DATADIST_WITH_UCX=OFF >/dev/null
cmake --build "$build_dir" -j "${JOBS:-2}" --target "${targets[@]}"

root=$(pwd)
bin="$root/$build_dir/fuzz"
status=0
for t in "${targets[@]}"; do
  work="$root/$build_dir/run/$t"  # libFuzzer's working directory (-jobs writes fuzz-N.log here)
  corpus="$root/$build_dir/corpus/$t"
  artifacts="$root/$build_dir/artifacts/$t"
  log="$root/$build_dir/$t.log"
  mkdir -p "$work" "$corpus" "$artifacts"
  echo "=== $t: ${seconds}s, log $log"
  # -timeout: one input taking over 10 s is a hang (the data server's own
  # waits end as soon as the input is exhausted).
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
        -artifact_prefix="$artifacts/" "$corpus" "$root/fuzz/corpus/$t")
  if ((fuzz_jobs > 1)); then
    args=(-jobs="$fuzz_jobs" -workers="$fuzz_jobs" "${args[@]}")
  fi
  set +e
  (cd "$work" && "$bin/$t" "${args[@]}") >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==ERROR|SUMMARY)' "$log" || true
  if ((rc != 0)) || [ -n "$(ls -A "$artifacts")" ]; then
    echo "!!! $t failed (exit $rc): see $log and $artifacts" >&2
    status=1
  fi
done
exit $status
