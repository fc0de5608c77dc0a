#!/usr/bin/env bash
# install-deps.sh - the Debian 12 packages that build and test backprop. Quick when all are
# present (dpkg is asked first); otherwise one apt-get update and one apt-get install.
set -euo pipefail

packages=(gcc g++ meson ninja-build pkg-config libopenblas-dev liblapacke-dev zlib1g-dev check
          libcjson-dev python3)
# The ONNX export (meson option onnx, auto): protobuf-c's compiler and library, onnx.proto.
packages+=(protobuf-c-compiler libprotobuf-c-dev libonnx-dev)
# backprop plot (meson option plot, auto): cairo draws the curves and writes the PNG.
packages+=(libcairo2-dev)
# Data-parallel train under mpirun (meson option mpi, auto): Open MPI's library and launcher.
packages+=(libopenmpi-dev openmpi-bin)
# Extra packages for a purpose, named by the caller (e.g. valgrind for the perf suite).
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo for: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo -n)
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >&2
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
