#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine, builds, and runs one job:
#   scripts/bootstrap.sh demo   # the prefill/decode demo (the main job)
#   scripts/bootstrap.sh test   # the whole test suite: plain, under ASan+UBSan,
#                               # under TSan, then each fuzzer briefly
#   scripts/bootstrap.sh unit   # only the plain test suite
#   scripts/bootstrap.sh build  # only install dependencies and build
# Extra arguments after the job go to the demo. FUZZ_SECONDS (default 8)
# is how long `test` runs each fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."

job=${1:-demo}
shift || true
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

packages=(g++ cmake ninja-build pkg-config libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
          libssl-dev iproute2 libucx-dev ucx-utils)
# Discovery through etcd (llm.Directory): libcurl for the client, and etcd
# itself for the tests of label `etcd` and the demo's --directory.
packages+=(libcurl4-openssl-dev etcd-server etcd-client)
# The Python module (python/) and its tests: built for and run with Debian's
# /usr/bin/python3, whose packages these are (not a pyenv/conda python3).
packages+=(python3-dev pybind11-dev python3-numpy python3-torch python3-pytest python3-setuptools python3-wheel python3-prometheus-client)
# The sanitizer and fuzzing runs of `test` need clang's libFuzzer too.
[ "$job" = test ] && packages+=(clang libclang-rt-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# LLM_DATADIST_BUILD_PYTHON=ON: the packages above are there, so the module
# and its pytest suite (CTest label `python`) are part of the plain build and
# of `ctest`; the sanitizer presets leave it out. Warnings are errors here
# (CI) and in the presets, not in a user's build.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLM_DATADIST_WERROR=ON \
  -DLLM_DATADIST_PYTHON=/usr/bin/python3 -DLLM_DATADIST_BUILD_PYTHON=ON >/dev/null
cmake --build "$build_dir" -j "$jobs"

# The sanitizer builds leave out the demo and benchmark (their own smoke
# tests run in the plain build) to keep CI within its time.
run_preset() {
  echo "=== $1 ==="
  cmake --preset "$1" -DLLM_DATADIST_BUILD_TOOLS=OFF >/dev/null
  cmake --build --preset "$1" -j "$jobs"
  ctest --preset "$1" -j "$jobs"
}

case "$job" in
  demo) exec "$build_dir/tools/llm_datadist_demo" "$@" ;;
  unit) cd "$build_dir" && exec ctest --output-on-failure -j "$jobs" ;;
  test)
    start=$SECONDS
    echo "=== plain ==="
    (cd "$build_dir" && ctest --output-on-failure -j "$jobs")
    run_preset asan
    run_preset tsan
    echo "=== fuzz ==="
    fuzz/run.sh "${FUZZ_SECONDS:-8}"
    echo "all test stages passed in $((SECONDS - start)) s"
    ;;
  build) ;;
  *) echo "unknown job '$job' (demo, test, unit or build)" >&2; exit 2 ;;
esac
