#!/usr/bin/env bash
# test_install.sh - the library as its users get it: install the build into a temporary
# directory (meson install --destdir, so no root and nothing outside it), check what landed
# there (the headers' version, the pkg-config file), build both programs of examples/ with `cc`
# and nothing but `pkg-config --cflags --libs backprop` (one of them also as strict C11, and
# the header as C++), run them against the installed shared library, and train one epoch of
# Fashion-MNIST with the installed `backprop` when the package dataset-fashion-mnist is there.
#
# usage: test_install.sh BUILD_DIR SOURCE_DIR VERSION SOVERSION
# TAP on stdout; exits 0 only if every check passed.

set -u

BUILD=${1:?usage: test_install.sh BUILD_DIR SOURCE_DIR VERSION SOVERSION}
SRC=${2:?} VERSION=${3:?} SOVERSION=${4:?}
CC=${CC:-cc}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_install.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

n=0
failures=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"
    for f in "$TMP/out" "$TMP/err"; do
        [[ -s $f ]] && tail -n 8 "$f" | sed "s/^/#   $(basename "$f"): /"
    done
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check() { # description, command...: ok when the command succeeds
    local what=$1
    shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then ok "$what"; else not_ok "$what"; fi
}
finish() { echo "1..$n"; exit $((failures > 0)); }

# Where the build means to install (a .pc file names its configured prefix).
read -r PREFIX LIBDIR INCLUDEDIR BINDIR SANITIZE < <(meson introspect "$BUILD" --buildoptions |
    python3 -c 'import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(o["prefix"], o["libdir"], o["includedir"], o["bindir"], o["b_sanitize"])')
if [[ -z ${PREFIX:-} ]]; then
    not_ok "meson introspect gives the build's prefix"
    finish
fi
# A sanitizer's runtime must be the first library a program loads, which an example built
# with plain `cc` does not arrange: this suite means the release build (scripts/test.sh).
if [[ $SANITIZE != none ]]; then
    echo "1..0 # SKIP the library is built with -Db_sanitize=$SANITIZE"
    exit 0
fi
abs() { [[ $1 == /* ]] && echo "$1" || echo "$PREFIX/$1"; }
STAGE=$TMP/stage
LIB=$STAGE$(abs "$LIBDIR")
INC=$STAGE$(abs "$INCLUDEDIR")
BIN=$STAGE$(abs "$BINDIR")

check "meson install --destdir into a temporary directory" \
    meson install -C "$BUILD" --destdir "$STAGE" --no-rebuild --quiet
if [[ ! -f $LIB/libbackprop.so.$SOVERSION ]]; then
    not_ok "libbackprop.so.$SOVERSION installed in $LIB"
    find "$STAGE" | sed 's/^/#   /'
    finish
fi
ok "libbackprop.so.$SOVERSION installed in $LIB"
check "its SONAME is libbackprop.so.$SOVERSION" \
    bash -c "readelf -d '$LIB/libbackprop.so.$SOVERSION' |
             grep -q 'Library soname: \[libbackprop.so.$SOVERSION\]'"

check "installed backprop_version.h says $VERSION" \
    grep -qx "#define BP_VERSION_STRING \"$VERSION\"" "$INC/backprop_version.h"
check "installed backprop.h includes it" grep -q '#include "backprop_version.h"' "$INC/backprop.h"
PC=$LIB/pkgconfig/backprop.pc
check "backprop.pc says Version: $VERSION" grep -qx "Version: $VERSION" "$PC"
check "backprop.pc names the configured prefix $PREFIX" grep -qx "prefix=$PREFIX" "$PC"

# The .pc file names the prefix the build was configured for, which is not where the files
# are now; a copy with the staging prefix is what a packager's sysroot would hold. (pkgconf's
# --define-prefix guesses wrong under a multiarch libdir, and --define-variable=prefix would
# move the dependencies' prefixes too.)
mkdir -p "$TMP/pkgconfig"
sed "s|^prefix=.*|prefix=$STAGE$PREFIX|" "$PC" >"$TMP/pkgconfig/backprop.pc"
export PKG_CONFIG_PATH=$TMP/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
flags=$(pkg-config --cflags --libs backprop)
if [[ $flags == *"-I$INC"* && $flags == *"-L$LIB"* ]]; then
    ok "pkg-config --cflags --libs backprop points into the installed tree"
else
    not_ok "pkg-config --cflags --libs backprop points into the installed tree ($flags)"
fi

# shellcheck disable=SC2086 # pkg-config's output is a list of words
check "examples/train_save_load.c builds with cc and pkg-config's flags only" \
    "$CC" "$SRC/examples/train_save_load.c" $flags -o "$TMP/train_save_load"
# shellcheck disable=SC2086
check "examples/backend.c builds as strict C11 (-std=c11 -pedantic -Werror)" \
    "$CC" -std=c11 -pedantic -Wall -Wextra -Werror "$SRC/examples/backend.c" $flags \
    -o "$TMP/backend"
# shellcheck disable=SC2086
check "examples/adding.c builds as strict C11 (-std=c11 -pedantic -Werror)" \
    "$CC" -std=c11 -pedantic -Wall -Wextra -Werror "$SRC/examples/adding.c" $flags \
    -o "$TMP/adding"
# The GAN draws its grids with cairo: built when cairo's pkg-config file is there.
if pkg-config --exists cairo; then
    # shellcheck disable=SC2086
    check "examples/gan.c builds as strict C11 with cairo's flags and -lm" \
        "$CC" -std=c11 -pedantic -Wall -Wextra -Werror "$SRC/examples/gan.c" $flags \
        $(pkg-config --cflags --libs cairo) -lm -o "$TMP/gan"
else
    skip "examples/gan.c builds with cairo's flags" "no cairo.pc (libcairo2-dev)"
fi
CXX=${CXX:-c++}
if command -v "$CXX" >/dev/null 2>&1; then
    printf '#include <backprop.h>\nint main() { return bp_version()[0] == 0; }\n' >"$TMP/header.cpp"
    # shellcheck disable=SC2086
    check "the installed header compiles and links as C++ (-pedantic -Werror)" \
        "$CXX" -pedantic -Wall -Wextra -Werror "$TMP/header.cpp" $flags -o "$TMP/header_cpp"
else
    skip "the installed header compiles and links as C++" "no $CXX"
fi

export LD_LIBRARY_PATH=$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for ex in train_save_load backend adding gan; do
    [[ -x $TMP/$ex ]] || continue
    check "$ex needs libbackprop.so.$SOVERSION" \
        bash -c "readelf -d '$TMP/$ex' | grep -q 'Shared library: \[libbackprop.so.$SOVERSION\]'"
    check "$ex loads it from the installed tree" \
        bash -c "ldd '$TMP/$ex' | grep -q 'libbackprop.so.$SOVERSION => $LIB/libbackprop.so.$SOVERSION '"
done

if [[ -x $TMP/train_save_load ]]; then
    # On real MNIST when the caller says where it is (scripts/test.sh does), else synthetic.
    if "$TMP/train_save_load" "$TMP/model.st" >"$TMP/out" 2>"$TMP/err" &&
        grep -qx "backprop $VERSION (headers $VERSION)" "$TMP/out" &&
        grep -q "^reloaded net: identical outputs" "$TMP/out" && [[ -s $TMP/model.st ]]; then
        ok "train_save_load trains, saves, reloads the same net${BACKPROP_MNIST_DIR:+ (MNIST)}"
    else
        not_ok "train_save_load trains, saves, reloads the same net"
    fi
    check "train_save_load fails (non-zero) when it cannot save" \
        bash -c "! '$TMP/train_save_load' '$TMP/no/such/dir/model.st'"
fi
if [[ -x $TMP/backend ]]; then
    if "$TMP/backend" >"$TMP/out" 2>"$TMP/err" && grep -q "^epoch  1: " "$TMP/out" &&
        grep -q "^final test accuracy: " "$TMP/out"; then
        ok "backend learns from the caller's memory, its callback following the epochs"
    else
        not_ok "backend learns from the caller's memory, its callback following the epochs"
    fi
fi

# The caller's own sequences into an LSTM and a GRU: each must beat guessing tenfold.
if [[ -x $TMP/adding ]]; then
    for kind in lstm gru; do
        if "$TMP/adding" "$kind" >"$TMP/out" 2>"$TMP/err" &&
            grep -q "^$kind:32 on 2000 held-out sequences of 20 steps: mse " "$TMP/out"; then
            ok "adding: $kind learns the adding problem from the caller's memory ($(tail -n 1 "$TMP/out" | sed 's/.*: \(mse [0-9.]*\).*/\1/'))"
        else
            not_ok "adding $kind: $(cat "$TMP/err")"
        fi
    done
fi

# A few GAN steps on real MNIST against the installed library; the meson test 'gan' checks
# the rest (tests/test_gan.py).
if [[ -x $TMP/gan ]]; then
    if [[ -n ${BACKPROP_MNIST_DIR:-} ]]; then
        if "$TMP/gan" --steps 5 --every 0 --out "$TMP/gan" >"$TMP/out" 2>"$TMP/err" &&
            grep -q "^trained 5 steps in " "$TMP/out" &&
            [[ $(head -c 8 "$TMP/gan.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; then
            ok "gan trains 5 steps on MNIST and writes a PNG"
        else
            not_ok "gan trains 5 steps on MNIST and writes a PNG"
        fi
    else
        skip "gan trains 5 steps on MNIST and writes a PNG" "BACKPROP_MNIST_DIR is not set"
    fi
fi

# --data fashion on the installed tool, as on a fresh machine once the package is there.
fashion=${BACKPROP_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
if [[ -f $fashion/train-images-idx3-ubyte.gz || -f $fashion/train-images-idx3-ubyte ]]; then
    if "$BIN/backprop" train --data fashion --epochs 1 --layers 784,30,10 --eta 0.5 \
        --summary-json "$TMP/fashion.json" >"$TMP/out" 2>"$TMP/err" &&
        python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
acc = s["test_accuracy"]
sys.exit(0 if 0.5 < acc <= 1 else 1)' "$TMP/fashion.json" 2>>"$TMP/err"; then
        ok "installed backprop trains one epoch of --data fashion ($fashion)"
    else
        not_ok "installed backprop trains one epoch of --data fashion ($fashion)"
    fi
else
    skip "installed backprop trains one epoch of --data fashion" \
        "no Fashion-MNIST in $fashion (apt-get install dataset-fashion-mnist)"
fi
# Without the package the tool says which package to install.
BACKPROP_FASHION_DIR=$TMP/no-fashion "$BIN/backprop" train --data fashion --epochs 1 \
    >"$TMP/out" 2>"$TMP/err"
rc=$?
if [[ $rc -eq 1 ]] && grep -q "dataset-fashion-mnist" "$TMP/err"; then
    ok "without Fashion-MNIST, --data fashion fails (1) naming dataset-fashion-mnist"
else
    not_ok "without Fashion-MNIST, --data fashion fails (1) naming dataset-fashion-mnist (rc $rc)"
fi

finish
