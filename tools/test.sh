#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, and run every test:
#   1. release build: cmocka unit tests + integration tests (real binary,
#      real clients, real upstreams on 127.0.0.1), including the out-of-tree
#      SDK example and the ldd check for OpenSSL 3;
#   2. the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. a short libFuzzer smoke run of every fuzz target over its corpus.
# SLUICE_TEST_QUICK=1 skips 2 and 3.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh --test
jobs=$(nproc)
ulimit -n 65536 2>/dev/null || true

echo "== formatting (.clang-format)" >&2
unformatted=$(git ls-files '*.c' '*.cc' '*.h' 2>/dev/null | while read -r f; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"; done)
if [[ -n $unformatted ]]; then
  echo "not clang-formatted (run clang-format -i on them):" >&2; echo "$unformatted" >&2; exit 1
fi

echo "== release build + tests" >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs" >/dev/null
ctest --test-dir build --output-on-failure -j2

if [[ ${SLUICE_TEST_QUICK:-0} != 1 ]]; then
  echo "== ASan + UBSan build + tests" >&2
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs" >/dev/null
  # A small quarantine: ASan's default (256 MB of freed memory held back)
  # would make the RSS bounds of test_large_body meaningless.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=8:thread_local_quarantine_size_kb=256 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    SLUICE_SANITIZED=1 ctest --test-dir build-asan --output-on-failure -j2

  echo "== fuzz smoke (libFuzzer, clang-14)" >&2
  CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSLUICE_FUZZ=ON -DSLUICE_TESTS=ON >/dev/null
  cmake --build build-fuzz -j"$jobs" --target fuzz_h1 fuzz_h1body fuzz_config fuzz_regex fuzz_path fuzz_rbac fuzz_tls fuzz_alog >/dev/null
  for t in h1 h1body config regex path rbac tls alog; do
    scratch=$(mktemp -d)
    build-fuzz/tests/fuzz_$t -max_total_time=${SLUICE_FUZZ_SECONDS:-30} -max_len=8192 "$scratch" tests/fuzz/corpus/$t 2>&1 | tail -2
    rm -rf "$scratch"
  done
fi
echo "== all tests passed" >&2
