#!/usr/bin/env bash
# test_export.sh - `backprop export` end to end on a model trained here from tiny IDX files this
# script writes (no download): the usage errors (exit 2), what cannot be read or written (exit
# 1, the output checked before the model is loaded, nothing left behind, an existing file kept)
# and the export itself: a file protobuf-c wrote (with ONNX support) or the refusal naming the
# packages to install (without).
#
# usage: test_export.sh PATH/TO/backprop enabled|disabled   (the build's ONNX support)
# TAP on stdout.
set -u

BIN=${1:?usage: test_export.sh PATH/TO/backprop enabled|disabled}
SUPPORT=${2:?usage: test_export.sh PATH/TO/backprop enabled|disabled}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_export.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

n=0 failures=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"
    sed 's/^/#   stderr: /' "$TMP/err" 2>/dev/null | head -n 5
}
run() { "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?; }
# expect STATUS NAME TEXT ARGS...: exit STATUS and a "backprop: " line on stderr holding TEXT.
expect() {
    local want=$1 name=$2 text=$3
    shift 3
    run "$@"
    if [[ $rc -eq $want ]] && grep -a '^backprop: ' "$TMP/err" | grep -aqF -- "$text"; then
        ok "$name (exit $want)"
    else
        not_ok "$name: expected exit $want and '$text', got exit $rc"
    fi
}

# IDX files: a big-endian magic and sizes, then bytes; 4x4 images, labels 0..9 in turn.
byte() { printf "\\$(printf '%03o' "$1")"; }
be32() { local shift; for shift in 24 16 8 0; do byte $(($1 >> shift & 255)); done; }
write_idx() { # IMAGES LABELS COUNT
    local i k
    { printf '\x00\x00\x08\x03'; be32 "$3"; be32 4; be32 4
      for ((i = 0; i < $3; i++)); do
          for ((k = 0; k < 16; k++)); do byte $(((i * 37 + k * 11) % 256)); done
      done
    } >"$1"
    { printf '\x00\x00\x08\x01'; be32 "$3"
      for ((i = 0; i < $3; i++)); do byte $((i % 10)); done
    } >"$2"
}
DATA=$TMP/data
mkdir -p "$DATA"
write_idx "$DATA/train-images-idx3-ubyte" "$DATA/train-labels-idx1-ubyte" 120
write_idx "$DATA/t10k-images-idx3-ubyte" "$DATA/t10k-labels-idx1-ubyte" 20
MODEL=$TMP/m.st
run train --data "$DATA" --layers 16,8,10 --batchnorm --dropout 0.1 --epochs 1 --save "$MODEL"
if [[ $rc -eq 0 && -s $MODEL ]]; then
    ok "a model to export: train --save on generated IDX files"
else
    not_ok "train --save: exit $rc"
    echo "1..$n"
    exit 1
fi

# ---- the command line -------------------------------------------------------------------
run export --help
if [[ $rc -eq 0 ]] && grep -q '^usage: backprop export ' "$TMP/out" &&
    grep -q -- '--model FILE .*\[required\]' "$TMP/out" &&
    grep -q -- '--onnx FILE .*\[required\]' "$TMP/out"; then
    ok "export --help: the usage, each flag with its default"
else
    not_ok "export --help: exit $rc"
fi
expect 2 "export without --model" "--model: which model?" export --onnx "$TMP/x.onnx"
expect 2 "export without --onnx" "--onnx: where to?" export --model "$MODEL"
expect 2 "export --onnx ''" "--onnx" export --model "$MODEL" --onnx ''
expect 2 "export with an operand" "unexpected argument 'extra'" \
    export --model "$MODEL" --onnx "$TMP/x.onnx" extra
expect 2 "export --bogus" "unknown option '--bogus'" export --model "$MODEL" --bogus

# ---- what cannot be read or written ---------------------------------------------------------
expect 1 "export of a missing model names it" "'$TMP/none.st'" \
    export --model "$TMP/none.st" --onnx "$TMP/x.onnx"
expect 1 "--onnx in a missing directory, said before the model is read" "$TMP/no/x.onnx" \
    export --model "$TMP/none.st" --onnx "$TMP/no/x.onnx"
mkdir "$TMP/dir.onnx"
expect 1 "--onnx naming a directory" "directory" export --model "$MODEL" --onnx "$TMP/dir.onnx"
printf 'not a model' >"$TMP/bad.st"
printf 'the old export' >"$TMP/kept.onnx"
run export --model "$TMP/bad.st" --onnx "$TMP/kept.onnx"
if [[ $rc -eq 1 && $(cat "$TMP/kept.onnx") == "the old export" && ! -e $TMP/x.onnx ]]; then
    ok "a model that does not load: exit 1, the existing --onnx file kept, nothing written"
else
    not_ok "a bad model: exit $rc, or --onnx changed"
fi

# ---- the export -----------------------------------------------------------------------------
run export --model "$MODEL" --onnx "$TMP/m.onnx"
if [[ $SUPPORT == enabled ]]; then
    # A ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08, then 8.
    if [[ $rc -eq 0 && $(head -c 2 "$TMP/m.onnx" | od -An -tx1 | tr -d ' ') == 0808 ]] &&
        grep -qF "$TMP/m.onnx: ONNX model of $MODEL" "$TMP/out"; then
        ok "export writes the model (IR version 8 first) and says so"
    else
        not_ok "export: exit $rc"
    fi
    run export --model "$MODEL" --onnx "$TMP/m.onnx"
    if [[ $rc -eq 0 && $(ls -A "$TMP" | grep -c '^\.m\.onnx') -eq 0 ]]; then
        ok "export replaces its own output, leaving no temporary file"
    else
        not_ok "export over an existing file: exit $rc"
    fi
else
    if [[ $rc -eq 1 && ! -e $TMP/m.onnx ]] &&
        grep -qF "built without ONNX support: install protobuf-c-compiler, libprotobuf-c-dev, \
libonnx-dev and reconfigure" "$TMP/err"; then
        ok "without ONNX support: exit 1, nothing written, the packages to install named"
    else
        not_ok "without ONNX support: exit $rc"
    fi
fi

echo "1..$n"
[[ $failures -eq 0 ]]
