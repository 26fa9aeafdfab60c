#!/usr/bin/env bash
# Installs the Debian 12 packages sluice needs to build (and, with --test,
# to run every test), skipping the apt round-trip when all are present.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libevent-dev libnghttp2-dev libyaml-dev
      android-libboringssl-dev libcmocka-dev libre2-dev libjansson-dev curl python3)
if [[ ${1:-} == --test ]]; then
  pkgs+=(clang-14 libclang-rt-14-dev clang-format git wrk nghttp2-client procps binutils openssl)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
