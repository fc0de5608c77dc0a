#!/usr/bin/env bash
# install-onnxruntime.sh - ONNX Runtime for Node (the npm package onnxruntime-node), which the
# onnx test suite (tests/test_onnx.py, tests/onnx_runtime.js) runs exported models on, into
# ${BACKPROP_DATA_DIR:-~/.cache/backprop}/npm/onnxruntime-HASH.
#
# The version and every dependency are pinned, with their integrity hashes, by
# scripts/onnxruntime/package-lock.json; `npm ci` installs exactly that lockfile (it is `npm
# install` that refuses to change the lockfile). --ignore-scripts skips the package's
# postinstall, which only downloads GPU libraries (CUDA, TensorRT) from NuGet: the CPU build
# (bin/napi-v6/linux/x64: the binding and libonnxruntime.so.1) is in the npm tarball itself, and
# the script checks that it loads before it calls the install done.
#
# Idempotent: when that directory exists and the binding loads it does nothing. A new copy is
# assembled beside it and renamed into place. Prints the directory (its node_modules is what
# NODE_PATH wants) as the last line of stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "install-onnxruntime: $*" >&2; }
die() { log "error: $*"; exit 1; }

readonly manifest=scripts/onnxruntime
# The directory is named by the pinned files' hash, so a new pin installs beside the old one.
pin=$(cat "$manifest/package.json" "$manifest/package-lock.json" | sha256sum | cut -c1-16)
data_root=${BACKPROP_DATA_DIR:-${HOME:?HOME is not set}/.cache/backprop}
dest=$data_root/npm/onnxruntime-$pin

loads() { # dir: whether onnxruntime-node and its native binding load from dir/node_modules
    [[ -d $1/node_modules/onnxruntime-node ]] &&
        (cd "$1" && node -e "require('onnxruntime-node')") >/dev/null 2>&1
}

if command -v node >/dev/null 2>&1 && loads "$dest"; then
    echo "$dest"
    exit 0
fi

# A fresh Debian machine may have neither node nor npm; Debian's npm brings nodejs. A node
# installed otherwise (NodeSource's nodejs carries its own npm) is left alone.
if ! command -v npm >/dev/null 2>&1; then
    scripts/install-deps.sh npm || die "could not install npm"
fi

mkdir -p "$data_root/npm"
work=$(mktemp -d "$data_root/npm/.onnxruntime-tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$manifest/package.json" "$manifest/package-lock.json" "$work/"
log "installing onnxruntime-node from $manifest/package-lock.json (npm ci --ignore-scripts)"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
    die "npm ci failed"
loads "$work" || die "onnxruntime-node is installed but its native binding does not load on" \
    "$(uname -m) with node $(node --version)"
rm -rf "$dest"
mv -T "$work" "$dest"
trap - EXIT
log "installed in $dest"
echo "$dest"
