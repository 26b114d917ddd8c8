#!/usr/bin/env bash
# Install the Debian packages serve needs to build, run and test, if any is
# missing. As root it runs apt-get; otherwise it prints the command to run.
set -euo pipefail

packages=(
  gcc libc6-dev pkg-config meson ninja-build   # toolchain
  libmicrohttpd-dev libuv1-dev libjansson-dev  # HTTP, event loop, JSON
  libopenblas-dev                              # the example models
  gnuplot-nox                                  # the autoscaling demo's chart
  libcriterion-dev libcurl4-openssl-dev curl   # tests
  jq                                           # tests: bench/chaos.sh reads the status document
  prometheus chromium                          # tests: promtool and a scrape; the dashboard
  clang libclang-rt-14-dev                     # make fuzz: libFuzzer ships with clang
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "serve: missing Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "serve: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
