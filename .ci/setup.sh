#!/usr/bin/env bash
# Installs what is missing (Debian 12 packages, as root or through sudo), then configures and
# builds slmops in ./build. With --tests it also installs the test material: ONNX's
# conformance data (libonnx-testdata) and ONNX Runtime from npm (onnxruntime-node). With
# --sanitize it also builds ./build-sanitize (GCC, -DSLMOPS_SANITIZE=address,undefined), where
# `ctest -L sanitize` runs the unit, bad-input and fuzz-replay tests (docs/reliability.md).
# Usage: bash .ci/setup.sh [--tests] [--sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
want_sanitize=0
for arg in "$@"; do
  case $arg in
    --tests) want_tests=1 ;;
    --sanitize) want_sanitize=1 ;;
    *) echo "setup: unknown argument $arg (expected --tests, --sanitize)" >&2; exit 2 ;;
  esac
done

packages=(build-essential cmake ninja-build pkg-config libcli11-dev libprotobuf-dev protobuf-compiler
          libonnx-dev nlohmann-json3-dev libfmt-dev doctest-dev zlib1g-dev libpcre2-dev libutf8proc-dev libssl-dev
          libcpp-httplib-dev)
if [ "$want_tests" = 1 ]; then
  packages+=(libonnx-testdata perl time python3-jinja2)
  command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The test build (CI) fails on any compiler warning; a user's build only prints them.
werror=OFF
[ "$want_tests" = 1 ] && werror=ON
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLMOPS_WERROR=$werror >/dev/null
cmake --build build

if [ "$want_sanitize" = 1 ]; then
  # GCC's libasan/libubsan come with build-essential (gcc-12).
  cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLMOPS_SANITIZE=address,undefined >/dev/null
  # Only what `ctest -L sanitize` runs: the binary, the unit tests and the fuzz replays.
  cmake --build build-sanitize --target slmops slmops_tests fuzz_onnx_load fuzz_external_data fuzz_npz \
    fuzz_recipe fuzz_random_feeds fuzz_tokenizer fuzz_safetensors fuzz_jinja
fi

# npm writes node_modules/.package-lock.json on every install: a lockfile newer than it (or
# no install at all) means the pinned packages are not the installed ones.
if [ "$want_tests" = 1 ] && [ tests/interop/package-lock.json -nt tests/interop/node_modules/.package-lock.json ]; then
  # The package's install script would download a GPU build; skip it and use the CPU
  # libonnxruntime.so the npm package ships.
  (cd tests/interop && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error)
fi
