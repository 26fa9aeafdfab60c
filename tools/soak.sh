#!/usr/bin/env bash
# Reload soak: builds sluice and runs tests/integration/test_soak_reload.py
# for longer than ctest does. Under wrk load on one cluster, a SIGHUP every
# 2 s alternates two configs that each remove a cluster holding idle pooled
# connections; it fails on any non-2xx response or socket error, a reload
# that did not take, fds or RSS not coming back, or a sanitizer report.
#
#   tools/soak.sh [SECONDS]                      # default 300 (5 minutes)
#   SLUICE_BUILD=build-asan tools/soak.sh 300    # ASan + UBSan build
#
# SLUICE_BUILD is the build directory (default build, relative to the repo
# root or absolute). A new one is configured RelWithDebInfo, or Debug with
# -DSLUICE_SANITIZE=ON when its name contains "asan"; an existing one keeps
# its configuration. The figures (requests, req/s, reloads, fds, RSS) are
# printed on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
build=${SLUICE_BUILD:-build}
[[ $build == /* ]] || build=$PWD/$build

if [[ ! -f $build/CMakeCache.txt ]]; then
  if [[ $(basename "$build") == *asan* ]]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON >/dev/null
  else
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
fi
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

if grep -q '^SLUICE_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
  # As tools/test.sh: a small quarantine keeps the RSS bound meaningful.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=8:thread_local_quarantine_size_kb=256
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export SLUICE_SANITIZED=1
fi
ulimit -n 65536 2>/dev/null || true

# The environment ctest gives integration tests (tests/CMakeLists.txt).
echo "== reload soak, ${seconds}s, $build" >&2
SLUICE_SOAK_SECONDS=$seconds \
  SLUICE_BIN=$build/core/sluice \
  SLUICE_FILTER_DIR=$build/filters \
  SLUICE_TEST_FILTER_DIR=$build/tests/filters \
  SLUICE_UPSTREAM_BIN=$build/tools/sluice-upstream \
  SLUICE_SOURCE_DIR=$PWD \
  SLUICE_BUILD_DIR=$build \
  /usr/bin/python3 tests/integration/test_soak_reload.py
