#!/usr/bin/env bash
# The first run on a GPU machine, in one command and well under 8 minutes:
#   1. the GPU tests (ctest label `gpu`, here the gtest binary itself),
#   2. the GPU benchmark rows with their same-run limits,
#   3. the Python module with torch CUDA tensors (when torch has CUDA there),
# then one verdict line per target of the GPU memory issue. Needs only the
# NVIDIA driver there: the binaries come from scripts/gpu-bundle.sh, built on
# the development machine (no compiler, network or packages needed).
#
#   gpu-check.sh [--out DIR] [bundle-dir]
#       --out DIR   full output of every step (default: gpu-check-out/ beside the bundle)
#   LLDD_GPU_CHECK_FAKE=1 gpu-check.sh
#       a dry run on the fake GPU (a machine without one): every step but
#       the real CUDA calls, to check the bundle and this script.
#
# Exit status: 0 when every step passed (or skipped for want of a GPU, which
# is reported), 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=""
bundle=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    *) bundle=$1; shift ;;
  esac
done
if [[ -z $bundle ]]; then
  if [[ -x $here/bin/gpu_tests ]]; then bundle=$here; else bundle=$here/../gpu-bundle; fi
fi
bundle=$(cd "$bundle" 2>/dev/null && pwd) || { echo "gpu-check: no bundle (run scripts/gpu-bundle.sh first)" >&2; exit 1; }
[[ -x $bundle/bin/gpu_tests ]] || { echo "gpu-check: no bundle at $bundle (run scripts/gpu-bundle.sh first)" >&2; exit 1; }
out=${out:-$bundle/../gpu-check-out}
mkdir -p "$out" && out=$(cd "$out" && pwd)
export LD_LIBRARY_PATH=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fake=${LLDD_GPU_CHECK_FAKE:-0}
bench_args=()
if [[ $fake == 1 ]]; then
  export LLDD_GPU_TESTS_ON_FAKE=1
  bench_args=(--fake)
  echo "gpu-check: DRY RUN on the fake GPU (LLDD_GPU_CHECK_FAKE=1): no real CUDA call is made"
fi
start=$(date +%s)
status=0
verdicts=()

echo "== machine" | tee "$out/machine.txt"
{ nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current \
    --format=csv,noheader 2>/dev/null || true
  uname -r; ldd --version 2>/dev/null | head -1; nproc; } | tee -a "$out/machine.txt"

echo "== 1. GPU tests (label gpu)"
timeout 240 "$bundle/bin/gpu_tests" --gtest_color=no >"$out/gpu_tests.txt" 2>&1
rc=$?
grep -E '^\[ *(FAILED|SKIPPED|PASSED) *\]|Failure|no usable GPU' "$out/gpu_tests.txt" | head -40
if [[ $rc -ne 0 ]]; then
  verdicts+=("STEP gpu tests: FAIL (exit $rc; see $out/gpu_tests.txt)"); status=1
elif grep -q 'SKIPPED \] GpuDevice' "$out/gpu_tests.txt"; then
  verdicts+=("STEP gpu tests: SKIPPED (no usable GPU)")
else
  verdicts+=("STEP gpu tests: PASS ($(grep -c '^\[       OK \]' "$out/gpu_tests.txt") passed)")
fi

echo "== 2. GPU benchmark rows"
timeout 180 "$bundle/bin/gpu_bench" "${bench_args[@]}" 2>&1 | tee "$out/gpu_bench.txt"
rc=${PIPESTATUS[0]}
if [[ $rc -eq 77 ]]; then verdicts+=("STEP gpu benchmark: SKIPPED (no GPU)")
elif [[ $rc -ne 0 ]]; then verdicts+=("STEP gpu benchmark: FAIL (exit $rc)"); status=1
else
  verdicts+=("STEP gpu benchmark: PASS")
  while IFS= read -r line; do verdicts+=("$line"); done < <(grep -E '^(TARGET|REPORT) ' "$out/gpu_bench.txt")
fi

echo "== 3. Python module with torch CUDA tensors"
# The interpreter the module was built for (its file name says which), if there.
tag=$(ls "$bundle"/python/llm_datadist/_llm_datadist.cpython-*.so 2>/dev/null | head -1 | sed -E 's/.*cpython-3([0-9]+).*/3.\1/')
py=${PYTHON:-$(command -v "python$tag" 2>/dev/null || echo python3)}
if [[ ! -d $bundle/python/llm_datadist ]]; then
  verdicts+=("STEP python + torch CUDA: SKIPPED (the bundle has no Python module)")
elif ! command -v "$py" >/dev/null; then
  verdicts+=("STEP python + torch CUDA: SKIPPED (no $py)")
else
  PYTHONPATH=$bundle/python timeout 150 "$py" "$bundle/gpu_check_torch.py" 2>&1 | tee "$out/python.txt"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) verdicts+=("STEP python + torch CUDA: PASS") ;;
    77) verdicts+=("STEP python + torch CUDA: SKIPPED ($(grep -m1 SKIPPED "$out/python.txt" | sed 's/.*SKIPPED: //'))") ;;
    *) verdicts+=("STEP python + torch CUDA: FAIL (exit $rc)"); status=1 ;;
  esac
fi

echo "== verdicts$([[ $fake == 1 ]] && echo ' (DRY RUN: fake GPU, figures mean nothing)')" | tee "$out/verdicts.txt"
printf '%s\n' "${verdicts[@]}" | tee -a "$out/verdicts.txt"
echo "== done in $(( $(date +%s) - start )) s, status $status; full output in $out" | tee -a "$out/verdicts.txt"
exit $status
