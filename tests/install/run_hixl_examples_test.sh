#!/usr/bin/env bash
# The vendor's HIXL examples (examples/cpp/hixl_example_*.cpp of hicann/hixl),
# unchanged, compiled against the installed package with only an
# <acl/acl.h> stand-in (tests/install/acl_stub), then run: the quickstart
# and the multi-process example as a server and a client process, d2rd and
# d2rh as two engines in one process.
#
# Usage: run_hixl_examples_test.sh BUILD_DIR SOURCE_DIR EXAMPLES_DIR
# EXAMPLES_DIR holds the vendor's hixl_example_*.cpp (we do not ship them);
# without it the test is skipped (exit 77).
set -euo pipefail
build_dir=$1
source_dir=$2
examples=${3:-}
if [[ -z "$examples" || ! -f "$examples/hixl_example_quickstart.cpp" ]]; then
  echo "no vendor examples at '$examples' (configure with -DLLM_DATADIST_HIXL_EXAMPLES_DIR=<hixl>/examples/cpp)"
  exit 77
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
libdir=$(find "$work/prefix" -name libllm_datadist.so -printf '%h\n' | head -n1)
for src in "$examples"/hixl_example_*.cpp; do
  name=$(basename "$src" .cpp)
  c++ -std=c++17 -Wall -Wno-unused-variable "$src" -o "$work/$name" -I"$work/prefix/include" \
    -I"$source_dir/tests/install/acl_stub" -L"$libdir" -lllm_datadist -Wl,-rpath,"$libdir"
  echo "compiled $name"
done

run() {  # a single process, bounded
  echo "== $*"
  timeout 60 "$@" > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; echo "FAILED: $*"; exit 1; }
}
pair() {  # a server in the background, then the client; both must succeed
  local bin=$1; shift
  local server_args=$1 client_args=$2
  echo "== $bin $server_args | $client_args"
  # shellcheck disable=SC2086
  timeout 60 "$work/$bin" $server_args > "$work/server.txt" 2>&1 &
  local spid=$!
  pids+=("$spid")
  sleep 1
  # shellcheck disable=SC2086
  if ! timeout 60 "$work/$bin" $client_args > "$work/client.txt" 2>&1; then
    cat "$work/server.txt" "$work/client.txt"; echo "FAILED: $bin client"; exit 1
  fi
  if ! wait "$spid"; then cat "$work/server.txt"; echo "FAILED: $bin server"; exit 1; fi
  grep -q "Verify success\|verify success\|success" "$work/client.txt" "$work/server.txt" || {
    cat "$work/server.txt" "$work/client.txt"; echo "FAILED: $bin reported no success"; exit 1; }
}

pair hixl_example_quickstart "--role=server" "--role=client"
run "$work/hixl_example_d2rd" --protocol=roce:device
# d2rh: two servers that connect to each other at the same instant (the
# engine's mutual linking must keep one link both can use).
run "$work/hixl_example_d2rh" --protocol=roce:device
pair hixl_example_d2rd_multiproc "--role=server --protocol=roce:device" "--role=client --protocol=roce:device"
echo "hixl examples OK"
