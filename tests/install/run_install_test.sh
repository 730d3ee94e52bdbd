#!/usr/bin/env bash
# Installs the built project into a scratch prefix, then builds and runs a
# separate user project against it twice: with find_package (CMake) and
# with pkg-config.
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/tests/install/consumer" -B "$work/consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer"
"$work/consumer/adxl_consumer"

libdir=$(find "$work/prefix" -name llm_datadist.pc -printf '%h\n' | head -n1)
export PKG_CONFIG_PATH="$libdir"
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Werror "$source_dir/tests/install/consumer/main.cc" -o "$work/consumer_pc" \
  $(pkg-config --cflags --libs llm_datadist) -Wl,-rpath,"$(pkg-config --variable=libdir llm_datadist)"
"$work/consumer_pc"
echo "install test OK"
