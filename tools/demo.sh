#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, and run sluice on
# config/sluice.yaml with two demo upstreams. Then, from another terminal:
#   curl http://127.0.0.1:8080/            (answered by sluice itself)
#   curl http://127.0.0.1:8080/api/hello   (proxied, round robin over 2 upstreams)
#   curl http://127.0.0.1:9901/metrics     (admin)
# Ctrl-C stops everything this script started (by PID).
# SLUICE_BUILD_DIR=DIR builds and runs in DIR instead of build/: the config
# names no filter directory, so the binary of any build tree finds its own.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SLUICE_BUILD_DIR:-build}
tools/deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$build"/tools/sluice-upstream --listen 127.0.0.1:8081 --name upstream-1 >/dev/null & pids+=($!)
"$build"/tools/sluice-upstream --listen 127.0.0.1:8082 --name upstream-2 >/dev/null & pids+=($!)
echo "sluice: try  curl http://127.0.0.1:8080/  and  curl http://127.0.0.1:8080/api/hello" >&2
"$build"/core/sluice -c config/sluice.yaml & pids+=($!)
wait "${pids[-1]}"
