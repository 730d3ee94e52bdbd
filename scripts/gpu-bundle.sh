#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries here (where nvcc is) and packs
# them, with every shared library they need beyond glibc and libstdc++,
# into one folder that scripts/gpu-check.sh runs on a GPU machine (which
# may have no compiler, no network and no package manager).
#
#   scripts/gpu-bundle.sh [build-dir] [bundle-dir]   (defaults: build, gpu-bundle)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bundle=${2:-$root/gpu-bundle}
targets=(gpu_tests gpu_bench)
# The Python module too, when this build has it (gpu-check.sh step 3).
grep -q '^LLM_DATADIST_BUILD_PYTHON:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null && targets+=(llm_datadist_python)

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLM_DATADIST_WITH_CUDA=ON >/dev/null
fi
grep -q '^LLM_DATADIST_WITH_CUDA:BOOL=ON' "$build/CMakeCache.txt" || {
  echo "gpu-bundle: $build is configured without CUDA (LLM_DATADIST_WITH_CUDA=OFF)" >&2
  exit 1
}
cmake --build "$build" --target "${targets[@]}"

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
for t in gpu_tests gpu_bench; do
  f=$(find "$build" -type f -name "$t" -perm -u+x | head -1)
  [[ -n $f ]] || { echo "gpu-bundle: $t not built" >&2; exit 1; }
  cp "$f" "$bundle/bin/$t"
  strip --strip-debug "$bundle/bin/$t"
  # Libraries a bare machine may lack (libcrypto, ...); never the C/C++ runtime
  # or the driver (libcuda comes from the GPU machine).
  ldd "$f" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    case $name in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*|libcuda.so*) ;;
      *) cp -L "$path" "$bundle/lib/$name" ;;
    esac
  done
done
if [[ -d $build/python/llm_datadist ]]; then
  mkdir -p "$bundle/python"
  cp -r "$build/python/llm_datadist" "$bundle/python/"
  # The extension finds libllm_datadist through LD_LIBRARY_PATH (bundle/lib).
  cp -L "$build"/libllm_datadist.so* "$bundle/lib/" 2>/dev/null || true
fi
cp "$root/scripts/gpu-check.sh" "$root/scripts/gpu_check_torch.py" "$bundle/"
du -sh "$bundle"
echo "gpu-bundle: ready in $bundle (run: $bundle/gpu-check.sh)"
