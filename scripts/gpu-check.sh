#!/usr/bin/env bash
# Runs the GPU tests (ctest label `gpu`, here as the gtest binary itself) and
# prints the GPU benchmark rows, in well under 8 minutes, on a machine with
# an NVIDIA GPU and its driver. Needs nothing else there: the binaries come
# from scripts/gpu-bundle.sh, built on the development machine.
#
#   scripts/gpu-check.sh [bundle-dir]    (default: gpu-bundle beside scripts/, or this script's folder)
#
# Exit status: 0 when every GPU test passed (or skipped for want of a GPU,
# which is reported), 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ $# -ge 1 ]]; then bundle=$1
elif [[ -x $here/bin/gpu_tests ]]; then bundle=$here
else bundle=$here/../gpu-bundle
fi
[[ -x $bundle/bin/gpu_tests ]] || { echo "gpu-check: no bundle at $bundle (run scripts/gpu-bundle.sh first)" >&2; exit 1; }
export LD_LIBRARY_PATH=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
start=$(date +%s)

echo "== machine"
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current \
  --format=csv,noheader 2>/dev/null || true
uname -r; ldd --version 2>/dev/null | head -1

status=0
echo "== GPU tests (label gpu)"
timeout 300 "$bundle/bin/gpu_tests" --gtest_color=no 2>&1 | tee /tmp/gpu-check-tests.$$ | grep -E '^\[ *(RUN|OK|FAILED|SKIPPED|PASSED) *\]|Failure|no usable GPU|expected|Which is|Value of|Actual'
rc=${PIPESTATUS[0]}
if [[ $rc -ne 0 ]]; then
  echo "gpu-check: GPU tests FAILED (exit $rc)"; status=1
elif grep -q 'SKIPPED \] GpuDevice' /tmp/gpu-check-tests.$$; then
  echo "gpu-check: GPU tests were SKIPPED: no usable GPU on this machine"
fi
rm -f /tmp/gpu-check-tests.$$

echo "== GPU benchmark rows"
timeout 180 "$bundle/bin/gpu_bench"
rc=$?
if [[ $rc -eq 77 ]]; then echo "gpu-check: benchmark skipped (no GPU)"
elif [[ $rc -ne 0 ]]; then echo "gpu-check: benchmark FAILED (exit $rc)"; status=1
fi
echo "== done in $(( $(date +%s) - start )) s, status $status"
exit $status
