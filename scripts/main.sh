#!/usr/bin/env bash
# main.sh - the main job on a fresh Debian 12 machine: install what the build needs, build,
# fetch real MNIST (pinned SHA-256), train Nielsen's chapter-1 network and report.
# Extra arguments go to `backprop train` and override the defaults below; with `--data fashion`
# the Fashion-MNIST package is installed too.
set -euo pipefail
cd "$(dirname "$0")/.."

# `--data fashion` trains on Fashion-MNIST, which Debian packages (dataset-fashion-mnist).
extra=()
prev=
for a in "$@"; do
    [[ $a == --data=fashion || ($prev == --data && $a == fashion) ]] && extra=(dataset-fashion-mnist)
    prev=$a
done
scripts/install-deps.sh "${extra[@]}"
[[ -f build/build.ninja ]] || meson setup build --buildtype=release >/dev/null
meson compile -C build >/dev/null
mnist_dir=$(scripts/fetch-mnist.sh | tail -n 1)

mkdir -p results
BACKPROP_MNIST_DIR=$mnist_dir build/backprop train --data mnist \
    --layers 784,30,10 --hidden-act sigmoid --output sigmoid --cost quadratic \
    --eta 3.0 --batch 10 --epochs 30 --summary-json results/summary.json "$@"
echo "summary: results/summary.json"
