#!/usr/bin/env bash
# test_cli.sh - end-to-end checks of the `backprop` command-line tool: exit statuses and
# messages for bad command lines (2) and missing data (1), and one tiny real training run on
# IDX files this script writes itself, so the test needs no download.
#
# usage: test_cli.sh PATH/TO/backprop
# Prints one `ok - ...` / `not ok - ...` line per check; exits 0 only if every check passed.

set -u

BIN=${1:?usage: test_cli.sh PATH/TO/backprop}
if [[ ! -x $BIN ]]; then
    echo "not ok - $BIN is not an executable" >&2
    exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_cli.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

failures=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"
    # Show what the tool said, so a failure is readable from the test log alone.
    sed 's/^/#   stdout: /' "$TMP/out" 2>/dev/null | head -n 5
    sed 's/^/#   stderr: /' "$TMP/err" 2>/dev/null | head -n 5
}

# run ARGS...: runs the tool with its outputs in $TMP/out and $TMP/err; sets $rc.
run() {
    "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
}

# expect_fail STATUS NAME ARGS...: the tool must exit with STATUS and say why on stderr,
# in a line starting "backprop: ".
expect_fail() {
    local want=$1 name=$2
    shift 2
    run "$@"
    if [[ $rc -eq $want ]] && grep -q '^backprop: ' "$TMP/err"; then
        ok "$name (exit $want)"
    else
        not_ok "$name: expected exit $want with a message on stderr, got exit $rc"
    fi
}

# ---- help and version ------------------------------------------------------------------

run --help
if [[ $rc -eq 0 ]] && grep -q 'usage: backprop train' "$TMP/out"; then
    ok "--help exits 0 and prints the usage"
else
    not_ok "--help: exit $rc"
fi

run train --help
if [[ $rc -eq 0 ]] && grep -q -- '--summary-json' "$TMP/out"; then
    ok "train --help exits 0 and lists the options"
else
    not_ok "train --help: exit $rc"
fi

run --version
if [[ $rc -eq 0 ]] && grep -Eq '^backprop [0-9]+\.[0-9]+\.[0-9]+' "$TMP/out"; then
    ok "--version exits 0 and prints a version"
else
    not_ok "--version: exit $rc"
fi

# ---- bad command lines: status 2 -------------------------------------------------------

expect_fail 2 "no command"
expect_fail 2 "unknown command" frobnicate
expect_fail 2 "option before the command" --epochs 3
expect_fail 2 "unknown flag" train --bogus
expect_fail 2 "unknown short flag" train -x
expect_fail 2 "missing value" train --epochs
expect_fail 2 "unexpected argument" train extra
expect_fail 2 "--epochs x" train --epochs x
expect_fail 2 "--epochs 3x" train --epochs 3x
expect_fail 2 "--epochs 0" train --epochs 0
expect_fail 2 "--epochs ' 3'" train --epochs ' 3'
expect_fail 2 "--epochs too large" train --epochs 99999999999999999999
expect_fail 2 "--batch 0" train --batch 0
expect_fail 2 "--batch above 1<<20" train --batch 1048577
expect_fail 2 "--eta -1" train --eta -1
expect_fail 2 "--eta 0" train --eta 0
expect_fail 2 "--eta nan" train --eta nan
expect_fail 2 "--eta inf" train --eta inf
expect_fail 2 "--eta empty" train --eta ''
expect_fail 2 "--layers 784,,10" train --layers 784,,10
expect_fail 2 "--layers trailing comma" train --layers 784,10,
expect_fail 2 "--layers one entry" train --layers 784
expect_fail 2 "--layers zero width" train --layers 784,0,10
expect_fail 2 "--layers negative" train --layers 784,-3,10
expect_fail 2 "--layers too wide" train --layers 784,1048577,10
expect_fail 2 "--layers 65 entries" train --layers "$(printf '1,%.0s' {1..64})1"
expect_fail 2 "--seed -1" train --seed -1
expect_fail 2 "--threads 0" train --threads 0
expect_fail 2 "unknown hidden activation" train --hidden-act swish
expect_fail 2 "softmax as hidden activation" train --hidden-act softmax
expect_fail 2 "unknown output activation" train --output gelu
expect_fail 2 "unknown cost" train --cost hinge
expect_fail 2 "unknown init" train --init zeros
expect_fail 2 "unknown backend" train --backend cuda
expect_fail 2 "empty --data" train --data ''

# ---- missing data: status 1 ------------------------------------------------------------

run train --data /nonexistent --epochs 1
if [[ $rc -eq 1 ]] && grep -q '/nonexistent' "$TMP/err"; then
    ok "--data /nonexistent exits 1 naming the path"
else
    not_ok "--data /nonexistent: expected exit 1 naming the path, got exit $rc"
fi

mkdir -p "$TMP/empty"
run train --data "$TMP/empty" --epochs 1
if [[ $rc -eq 1 ]] && grep -q 'train-images-idx3-ubyte' "$TMP/err"; then
    ok "a directory without IDX files exits 1 naming the missing file"
else
    not_ok "empty data directory: expected exit 1 naming the file, got exit $rc"
fi

BACKPROP_MNIST_DIR=$TMP/empty run train --epochs 1
if [[ $rc -eq 1 ]] && grep -q 'fetch-mnist.sh' "$TMP/err"; then
    ok "--data mnist without files points at scripts/fetch-mnist.sh"
else
    not_ok "missing mnist: expected exit 1 with the fetch hint, got exit $rc"
fi

BACKPROP_FASHION_DIR=$TMP/empty run train --data fashion --epochs 1
if [[ $rc -eq 1 ]] && grep -q 'dataset-fashion-mnist' "$TMP/err"; then
    ok "--data fashion without files points at the Debian package"
else
    not_ok "missing fashion: expected exit 1 with the apt hint, got exit $rc"
fi

# ---- a tiny data set -------------------------------------------------------------------
# IDX: big-endian magic (0x803 images, 0x801 labels), counts, then bytes. Image i of label
# i % 10 is low noise with pixel (label) lit, so there is something to learn.

be32() { printf "\\$(printf '%03o' $(($1 >> 24 & 255)))\\$(printf '%03o' $(($1 >> 16 & 255)))"; \
         printf "\\$(printf '%03o' $(($1 >> 8 & 255)))\\$(printf '%03o' $(($1 & 255)))"; }

# write_idx IMAGES LABELS COUNT: 4x4 images.
write_idx() {
    local images=$1 labels=$2 count=$3 i j v esc
    { printf '\000\000\010\003'; be32 "$count"; be32 4; be32 4
      esc=''
      for ((i = 0; i < count; i++)); do
          for ((j = 0; j < 16; j++)); do
              if ((j == i % 10)); then v=255; else v=$(((i * 7 + j * 13) % 40)); fi
              esc+=$(printf '\\%03o' "$v")
          done
      done
      printf "$esc"; } >"$images"
    { printf '\000\000\010\001'; be32 "$count"
      esc=''
      for ((i = 0; i < count; i++)); do esc+=$(printf '\\%03o' $((i % 10))); done
      printf "$esc"; } >"$labels"
}

DATA=$TMP/data
mkdir -p "$DATA"
write_idx "$DATA/train-images-idx3-ubyte" "$DATA/train-labels-idx1-ubyte" 240
write_idx "$DATA/t10k-images-idx3-ubyte" "$DATA/t10k-labels-idx1-ubyte" 50
# One file only as .gz, so the lookup of compressed files is exercised too.
gzip -n "$DATA/t10k-images-idx3-ubyte"

size=$(wc -c <"$DATA/train-images-idx3-ubyte")
if [[ $size -eq $((16 + 240 * 16)) ]]; then
    ok "the generated training IDX file has the expected size"
else
    not_ok "generated train-images is $size bytes, expected $((16 + 240 * 16))"
fi

run train --data "$DATA" --layers 15,8,10 --epochs 1
if [[ $rc -eq 2 ]] && grep -q 'input layer' "$TMP/err"; then
    ok "an input layer that does not match the data exits 2"
else
    not_ok "input size mismatch: expected exit 2, got $rc"
fi

run train --data "$DATA" --layers 16,8,9 --epochs 1
if [[ $rc -eq 2 ]] && grep -q 'classes' "$TMP/err"; then
    ok "an output layer smaller than the classes exits 2"
else
    not_ok "too few outputs: expected exit 2, got $rc"
fi

run train --data "$DATA" --layers 16,8,10 --epochs 1 --summary-json "$TMP/no/such/dir/s.json"
if [[ $rc -eq 1 ]] && grep -q 'no/such/dir' "$TMP/err"; then
    ok "an unwritable --summary-json exits 1 before training"
else
    not_ok "unwritable summary: expected exit 1, got $rc"
fi

SUMMARY=$TMP/summary.json
run train --data "$DATA" --layers 16,8,10 --epochs 1 --batch 10 --summary-json "$SUMMARY"
if [[ $rc -eq 0 ]]; then
    ok "a tiny training run exits 0"
else
    not_ok "tiny training run: exit $rc"
fi
if grep -q '^epoch 1/1 .*validation' "$TMP/out"; then
    ok "the run prints an epoch line"
else
    not_ok "no 'epoch 1/1 ... validation' line"
fi
if grep -Eq '^test accuracy [0-9.]+% \([0-9]+/50\)' "$TMP/out"; then
    ok "the run prints the test accuracy over 50 images"
else
    not_ok "no 'test accuracy ...% (k/50)' line"
fi
if grep -q '200 train, 40 validation, 50 test' "$TMP/out"; then
    ok "240 training images split 200 / 40"
else
    not_ok "expected a 200 / 40 train / validation split"
fi

missing=''
for key in test_accuracy validation_accuracy epochs train_seconds samples_per_second; do
    grep -q "\"$key\": *[-0-9.eE+]" "$SUMMARY" 2>/dev/null || missing+=" $key"
done
if [[ -z $missing ]]; then
    ok "the summary JSON has the five keys with numbers"
else
    not_ok "summary JSON lacks:$missing"
fi
if [[ ! -e $SUMMARY.tmp ]]; then
    ok "the temporary summary file is gone"
else
    not_ok "$SUMMARY.tmp was left behind"
fi
if command -v python3 >/dev/null 2>&1; then
    if python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$SUMMARY" 2>/dev/null; then
        ok "the summary JSON parses"
    else
        not_ok "the summary JSON does not parse"
    fi
fi

run train --data "$DATA" --layers 16,8,10 --hidden-act relu --output softmax \
    --cost log-likelihood --init he --eta 0.1 --epochs 2 --batch 7 --seed 42 --threads 1 \
    --backend naive
if [[ $rc -eq 0 ]] && grep -q '^epoch 2/2' "$TMP/out"; then
    ok "every flag at once, naive backend, runs"
else
    not_ok "the all-flags run: exit $rc"
fi

# Same seed, one thread, same backend: the library promises identical results.
run train --data "$DATA" --layers 16,8,10 --epochs 2 --seed 7 --threads 1
grep -E '^(epoch|test)' "$TMP/out" | sed 's/  [0-9]* samples.*//' >"$TMP/run1"
run train --data "$DATA" --layers 16,8,10 --epochs 2 --seed 7 --threads 1
grep -E '^(epoch|test)' "$TMP/out" | sed 's/  [0-9]* samples.*//' >"$TMP/run2"
if [[ -s $TMP/run1 ]] && cmp -s "$TMP/run1" "$TMP/run2"; then
    ok "two runs with the same seed print the same figures"
else
    not_ok "same seed, different figures"
fi

echo "1..$n"
if [[ $failures -ne 0 ]]; then
    echo "# $failures of $n checks failed"
    exit 1
fi
exit 0
