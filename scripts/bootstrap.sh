#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine, builds, and runs one job:
#   scripts/bootstrap.sh demo   # the prefill/decode demo (the main job)
#   scripts/bootstrap.sh test   # the whole test suite
#   scripts/bootstrap.sh build  # only install dependencies and build
# Extra arguments after the job go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

job=${1:-demo}
shift || true
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

packages=(g++ cmake ninja-build pkg-config libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
          libssl-dev iproute2)
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

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j "$jobs"

case "$job" in
  demo) exec "$build_dir/tools/llm_datadist_demo" "$@" ;;
  test) cd "$build_dir" && exec ctest --output-on-failure -j "$jobs" ;;
  build) ;;
  *) echo "unknown job '$job' (demo, test or build)" >&2; exit 2 ;;
esac
