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

# The data lookup reads these; scripts/test.sh exports BACKPROP_MNIST_DIR for the MNIST suite,
# and $HOME may hold a fetched copy. Each check sets what it means to test, nothing else leaks.
unset BACKPROP_MNIST_DIR BACKPROP_DATA_DIR BACKPROP_FASHION_DIR
mkdir -p "$TMP/home" && export HOME=$TMP/home

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

# has_message TEXT: stderr has a line starting "backprop: " that contains TEXT (fixed string).
has_message() { grep -a '^backprop: ' "$TMP/err" | grep -aqF -- "$1"; }

# expect_fail STATUS NAME TEXT ARGS...: the tool must exit with STATUS and say why on stderr,
# in a line starting "backprop: " that contains TEXT.
expect_fail() {
    local want=$1 name=$2 text=$3
    shift 3
    run "$@"
    if [[ $rc -eq $want ]] && has_message "$text"; then
        ok "$name (exit $want)"
    else
        not_ok "$name: expected exit $want and a message with '$text', got exit $rc"
    fi
}

# expect_fail_env STATUS NAME TEXT VAR=VALUE ARGS...: expect_fail with one variable set.
expect_fail_env() {
    local want=$1 name=$2 text=$3 assignment=$4
    shift 4
    env "$assignment" "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [[ $rc -eq $want ]] && has_message "$text"; then
        ok "$name (exit $want)"
    else
        not_ok "$name: expected exit $want and a message with '$text', got exit $rc"
    fi
}

# no_training: the run stopped before the first epoch (so before any real work).
no_training() { ! grep -q '^epoch ' "$TMP/out"; }

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

expect_fail 2 "no command" 'missing command'
expect_fail 2 "unknown command" "unknown command 'frobnicate'" frobnicate
expect_fail 2 "option before the command" "unknown option '--epochs'" --epochs 3
expect_fail 2 "unknown flag" "unknown option '--bogus'" train --bogus
expect_fail 2 "unknown flag with a value" "unknown option '--bogus'" train --bogus=1
expect_fail 2 "unknown short flag" "unknown option '-x'" train -x
expect_fail 2 "missing value" '--epochs needs a value' train --epochs
expect_fail 2 "unexpected argument" "unexpected argument 'extra'" train extra
expect_fail 2 "--epochs x" "--epochs: 'x' is not a whole number" train --epochs x
expect_fail 2 "--epochs 3x" "--epochs: '3x' is not a whole number" train --epochs 3x
expect_fail 2 "--epochs 0" '--epochs: 0 is out of range (1..' train --epochs 0
expect_fail 2 "--epochs ' 3'" "--epochs: ' 3' is not a whole number" train --epochs ' 3'
expect_fail 2 "--epochs too large" '--epochs: 99999999999999999999 is out of range' \
    train --epochs 99999999999999999999
expect_fail 2 "--batch 0" '--batch: 0 is out of range (1..1048576)' train --batch 0
expect_fail 2 "--batch above 1<<20" '--batch: 1048577 is out of range (1..1048576)' \
    train --batch 1048577
expect_fail 2 "--eta -1" '--eta: -1 must be a finite number > 0' train --eta -1
expect_fail 2 "--eta 0" '--eta: 0 must be a finite number > 0' train --eta 0
expect_fail 2 "--eta 1e-60 (underflows)" '--eta: 1e-60 must be a finite number > 0' \
    train --eta 1e-60
expect_fail 2 "--eta 1e39 (overflows)" '--eta: 1e39 must be a finite number > 0' train --eta 1e39
expect_fail 2 "--eta nan" "--eta: 'nan' is not a decimal number" train --eta nan
expect_fail 2 "--eta inf" "--eta: 'inf' is not a decimal number" train --eta inf
expect_fail 2 "--eta empty" "--eta: '' is not a decimal number" train --eta ''
expect_fail 2 "--layers 784,,10" "--layers: empty entry 2 in '784,,10'" train --layers 784,,10
expect_fail 2 "--layers trailing comma" "--layers: empty entry 3" train --layers 784,10,
expect_fail 2 "--layers one entry" 'need at least an input and an output layer' \
    train --layers 784
expect_fail 2 "--layers zero width" '--layers: entry 2 (0) is out of range (1..1048576)' \
    train --layers 784,0,10
expect_fail 2 "--layers negative" "--layers: entry 2 ('-3') is not a whole number" \
    train --layers 784,-3,10
expect_fail 2 "--layers too wide" '--layers: entry 2 (1048577) is out of range' \
    train --layers 784,1048577,10
expect_fail 2 "--layers 65 entries" '--layers: more than 64 layers' \
    train --layers "$(printf '1,%.0s' {1..64})1"
expect_fail 2 "--seed -1" "--seed: '-1' is not a whole number" train --seed -1
expect_fail 2 "--seed 2^64" '--seed: 18446744073709551616 is out of range' \
    train --seed 18446744073709551616
expect_fail 2 "--threads 0" '--threads: 0 is out of range (1..' train --threads 0
expect_fail 2 "unknown hidden activation" "--hidden-act: unknown activation 'swish'" \
    train --hidden-act swish
expect_fail 2 "softmax as hidden activation" 'softmax is only allowed as --output' \
    train --hidden-act softmax
expect_fail 2 "unknown output activation" "--output: unknown activation 'gelu'" \
    train --output gelu
expect_fail 2 "unknown cost" "--cost: unknown cost 'hinge'" train --cost hinge
expect_fail 2 "unknown init" "--init: unknown initialisation 'zeros'" train --init zeros
expect_fail 2 "unknown backend" "--backend: unknown backend 'cuda'" train --backend cuda
expect_fail 2 "empty --data" '--data: empty value' train --data ''

# One rule for every number: decimal digits for integers (no sign, no blank, no hex), a plain
# decimal number for --eta. These were accepted by some flags and refused by others.
expect_fail 2 "--epochs +5" "--epochs: '+5' is not a whole number" train --epochs +5
expect_fail 2 "--seed +5" "--seed: '+5' is not a whole number" train --seed +5
expect_fail 2 "--batch 0x10" "--batch: '0x10' is not a whole number" train --batch 0x10
expect_fail 2 "--threads ' 2'" "--threads: ' 2' is not a whole number" train --threads ' 2'
expect_fail 2 "--layers 784,+30,10" "--layers: entry 2 ('+30') is not a whole number" \
    train --layers 784,+30,10
expect_fail 2 "--eta 0x10" "--eta: '0x10' is not a decimal number" train --eta 0x10
expect_fail 2 "--eta +1" "--eta: '+1' is not a decimal number" train --eta +1
expect_fail 2 "--eta ' 1'" "--eta: ' 1' is not a decimal number" train --eta ' 1'
expect_fail 2 "--eta 1e" "--eta: '1e' is not a decimal number" train --eta 1e
expect_fail 2 "--eta infinity" "--eta: 'infinity' is not a decimal number" train --eta infinity

# getopt_long takes unique prefixes; one that fits two options is ambiguous, not unknown.
expect_fail 2 "--e is ambiguous" \
    "ambiguous option '--e' (could be --early-stop, --epochs, --eps, --eta, --expand)" train --e 3
expect_fail 2 "--b=2 is ambiguous" \
    "ambiguous option '--b' (could be --backend, --batch, --batchnorm, --beta1, --beta2)" \
    train --b=2
expect_fail 2 "--help=1" "option '--help' takes no value" train --help=1

# The optimisers' and schedules' flags: the library's names, strict numbers, and a flag the
# chosen optimiser would not read is refused rather than silently dropped.
expect_fail 2 "unknown optimizer" \
    "--optimizer: unknown optimizer 'adagrad' (known: sgd, momentum, nesterov, adam, adamw," \
    train --optimizer adagrad
expect_fail 2 "--momentum 1" '--momentum: 1 must be in [0, 1)' \
    train --optimizer momentum --momentum 1
expect_fail 2 "--momentum 0.999999999 (1 as a float)" '--momentum: 0.999999999 must be in [0, 1)' \
    train --optimizer nesterov --momentum 0.999999999
expect_fail 2 "--momentum -0.5" '--momentum: -0.5 must be in [0, 1)' \
    train --optimizer momentum --momentum -0.5
expect_fail 2 "--beta1 nan" "--beta1: 'nan' is not a decimal number (like 0.9)" \
    train --optimizer adam --beta1 nan
expect_fail 2 "--beta2 1.5" '--beta2: 1.5 must be in [0, 1)' train --optimizer adam --beta2 1.5
expect_fail 2 "--eps 0" '--eps: 0 must be a finite number > 0' train --optimizer adam --eps 0
expect_fail 2 "--eps 1e-60 (underflows)" '--eps: 1e-60 must be a finite number > 0' \
    train --optimizer rmsprop --eps 1e-60
expect_fail 2 "--weight-decay -1" '--weight-decay: -1 must be a finite number >= 0' \
    train --optimizer adamw --weight-decay -1
expect_fail 2 "--clip-norm x" "--clip-norm: 'x' is not a decimal number (like 5.0 or 1e-4)" train --clip-norm x
expect_fail 2 "--clip-norm 1e39" '--clip-norm: 1e39 must be a finite number >= 0' \
    train --clip-norm 1e39
expect_fail 2 "--schedule bogus" "--schedule: unknown schedule 'bogus'" train --schedule bogus
expect_fail 2 "--schedule halve:0" "--schedule: schedule 'halve:0': the patience N" \
    train --schedule halve:0
expect_fail 2 "--schedule step:5" "--schedule: schedule 'step:5': step:E:F needs E" \
    train --schedule step:5
expect_fail 2 "--schedule step:5:0" "--schedule: schedule 'step:5:0': the factor F" \
    train --schedule step:5:0
expect_fail 2 "--schedule cosine:3" "--schedule: unknown schedule 'cosine:3'" \
    train --schedule cosine:3
expect_fail 2 "--early-stop -1" "--early-stop: '-1' is not a whole number" train --early-stop -1
expect_fail 2 "--momentum with adam" \
    '--momentum: only momentum and nesterov use it, not --optimizer adam' \
    train --momentum 0.5 --optimizer adam
expect_fail 2 "--beta1 with sgd" '--beta1: only adam and adamw use it, not --optimizer sgd' \
    train --beta1 0.8
expect_fail 2 "--weight-decay with adam" '--weight-decay: only adamw' \
    train --optimizer adam --weight-decay 0.01

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

# A path that came from the environment says so: the user never typed it.
expect_fail_env 1 "BACKPROP_MNIST_DIR names a missing directory" \
    "BACKPROP_MNIST_DIR=$TMP/nowhere: no such directory" BACKPROP_MNIST_DIR="$TMP/nowhere" \
    train --epochs 1
expect_fail_env 1 "BACKPROP_DATA_DIR without mnist/ in it" \
    "BACKPROP_DATA_DIR=$TMP/empty: data directory '$TMP/empty/mnist': no such directory" \
    BACKPROP_DATA_DIR="$TMP/empty" train --epochs 1
expect_fail_env 1 "BACKPROP_FASHION_DIR names a missing directory" \
    "BACKPROP_FASHION_DIR=$TMP/nowhere: no such directory" BACKPROP_FASHION_DIR="$TMP/nowhere" \
    train --data fashion --epochs 1
expect_fail 1 "--data names a missing directory" \
    "data directory '$TMP/nowhere': no such directory" train --data "$TMP/nowhere"

# ---- a tiny data set -------------------------------------------------------------------
# IDX: big-endian magic (0x803 images, 0x801 labels), counts, then bytes. Image i of label
# i % 10 is low noise with pixel (label) lit, so there is something to learn.

be32() { printf "\\$(printf '%03o' $(($1 >> 24 & 255)))\\$(printf '%03o' $(($1 >> 16 & 255)))"; \
         printf "\\$(printf '%03o' $(($1 >> 8 & 255)))\\$(printf '%03o' $(($1 & 255)))"; }

# write_idx IMAGES LABELS COUNT [ROWS COLS]: images of 16 pixels, 4x4 unless ROWS x COLS say
# otherwise.
write_idx() {
    local images=$1 labels=$2 count=$3 rows=${4:-4} cols=${5:-4} i j v esc
    { printf '\000\000\010\003'; be32 "$count"; be32 "$rows"; be32 "$cols"
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

# set_byte FILE OFFSET VALUE
set_byte() {
    printf "\\$(printf '%03o' "$3")" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
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
if [[ $rc -eq 2 ]] && has_message 'the input layer has 15 neurons' && has_message 'try --layers 16,'
then
    ok "an input layer that does not match the data exits 2 with the hint"
else
    not_ok "input size mismatch: expected exit 2 with the hint, got $rc"
fi

run train --data "$DATA" --layers 16,8,9 --epochs 1
if [[ $rc -eq 2 ]] && has_message 'the output layer has 9 neurons' && has_message '10 classes'
then
    ok "an output layer smaller than the classes exits 2"
else
    not_ok "too few outputs: expected exit 2, got $rc"
fi

# The headers are read before the payload: the width check does not wait for a whole file to be
# read, and so answers even when the payload is broken (a .gz whose CRC is wrong, which only
# reading it to the end finds out).
d=$TMP/bad-crc
mkdir -p "$d"
cp "$DATA"/* "$d/"
gzip -n "$d/train-images-idx3-ubyte"
size=$(wc -c <"$d/train-images-idx3-ubyte.gz")
set_byte "$d/train-images-idx3-ubyte.gz" $((size - 8)) 0
set_byte "$d/train-images-idx3-ubyte.gz" $((size - 7)) 0
expect_fail 2 "the input width is checked against the header, before the payload" \
    "the input layer has 15 neurons but '$d' has 16 inputs per sample (4x4 images; try" \
    train --data "$d" --layers 15,8,10 --epochs 1
expect_fail 1 "(that payload is indeed corrupt)" \
    'train-images-idx3-ubyte.gz: corrupt gzip data' \
    train --data "$d" --layers 16,8,10 --epochs 1

# The test images must have the training images' shape, not just as many pixels.
d=$TMP/shapes
mkdir -p "$d"
cp "$DATA"/train-* "$d/"
write_idx "$d/t10k-images-idx3-ubyte" "$d/t10k-labels-idx1-ubyte" 50 16 1
expect_fail 1 "16x1 test images against 4x4 training images" \
    "'$d/train-images-idx3-ubyte' holds 4x4 images but '$d/t10k-images-idx3-ubyte' holds 16x1" \
    train --data "$d" --layers 16,8,10 --epochs 1

# A batch larger than the training set is planned for the set (200 columns), not for a
# million: this net's buffers for 2^20 columns would take 168 GB.
run train --data "$DATA" --layers 16,20000,10 --batch 1048576 --epochs 1
if [[ $rc -eq 0 ]] && grep -q '^epoch 1/1' "$TMP/out"; then
    ok "--batch 1048576 on 200 training samples plans 200 columns and trains"
else
    not_ok "--batch 1048576 on a tiny set: exit $rc"
fi

# One neuron is singular.
expect_fail 2 "an output layer of 1 neuron says 'neuron'" 'the output layer has 1 neuron but' \
    train --data "$DATA" --layers 16,8,1 --epochs 1
expect_fail 2 "an input layer of 1 neuron says 'neuron'" 'the input layer has 1 neuron but' \
    train --data "$DATA" --layers 1,8,10 --epochs 1

# The whole configuration comes from the command line: a pairing the library refuses is the
# user's to fix.
expect_fail 2 "--output relu with the default cross-entropy cost" \
    'the cross-entropy cost needs outputs in (0,1)' \
    train --data "$DATA" --layers 16,8,10 --output relu --epochs 1
# ... but a net too big for the machine is not a command-line mistake (8.8 TB of parameters).
expect_fail 1 "a net larger than the memory is refused (not a usage error)" \
    'out of memory: a [16,1048576,1048576,10] net planned for 10 columns needs' \
    train --data "$DATA" --layers 16,1048576,1048576,10 --epochs 1

# ---- what is in place of a data file ---------------------------------------------------

# bad_data NAME: a copy of the data set (as links) whose NAME is left for the caller to break.
bad_data() {
    local dir=$TMP/bad-$1-$RANDOM f
    mkdir -p "$dir"
    for f in "$DATA"/*; do
        [[ $(basename "$f") == "$1"* ]] || ln -s "$f" "$dir/"
    done
    echo "$dir"
}

d=$(bad_data train-images-idx3-ubyte)
ln -s "$TMP/not-there" "$d/train-images-idx3-ubyte"
expect_fail 1 "a dangling link in place of a data file" \
    "train-images-idx3-ubyte' is a dangling symbolic link (to '$TMP/not-there')" \
    train --data "$d" --epochs 1

d=$(bad_data train-images-idx3-ubyte)
ln -s train-images-idx3-ubyte "$d/train-images-idx3-ubyte"
expect_fail 1 "a symbolic link loop in place of a data file" \
    "train-images-idx3-ubyte': too many levels of symbolic links" train --data "$d" --epochs 1

d=$(bad_data train-labels-idx1-ubyte)
mkdir "$d/train-labels-idx1-ubyte"
expect_fail 1 "a directory in place of a data file" \
    "train-labels-idx1-ubyte' is a directory, not a regular file" train --data "$d" --epochs 1

d=$(bad_data t10k-labels-idx1-ubyte)
mkfifo "$d/t10k-labels-idx1-ubyte"
"$BIN" train --data "$d" --epochs 1 >"$TMP/out" 2>"$TMP/err" &
pid=$!
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    wait "$pid"
    not_ok "a FIFO in place of a data file hangs"
else
    wait "$pid"
    rc=$?
    if [[ $rc -eq 1 ]] && has_message "t10k-labels-idx1-ubyte' is a FIFO, not a regular file"
    then
        ok "a FIFO in place of a data file is named at once (exit 1)"
    else
        not_ok "a FIFO in place of a data file: exit $rc"
    fi
fi

expect_fail 1 "--data naming a file" \
    "data directory '$DATA/train-images-idx3-ubyte' is a regular file, not a directory" \
    train --data "$DATA/train-images-idx3-ubyte"

# ---- corrupt labels: the data is wrong (1), unless the net is too small for it (2) ------

# labels_copy: a copy of the data set with real (not linked) label files, to corrupt.
labels_copy() {
    local dir=$TMP/labels-$RANDOM
    mkdir -p "$dir"
    cp "$DATA"/* "$dir/"
    echo "$dir"
}

# MNIST has 10 classes: label 10 is corrupt wherever it is.
d=$(labels_copy)
set_byte "$d/train-labels-idx1-ubyte" $((8 + 5)) 10
expect_fail_env 1 "--data mnist: label 10 is corrupt, named by file and sample" \
    "$d/train-labels-idx1-ubyte': sample index 5 has label 10, but MNIST has 10 classes (0..9)" \
    BACKPROP_MNIST_DIR="$d" train --layers 16,8,10 --epochs 1
expect_fail_env 1 "--data fashion: label 10 is corrupt too" \
    "sample index 5 has label 10, but Fashion-MNIST has 10 classes" \
    BACKPROP_FASHION_DIR="$d" train --data fashion --layers 16,8,10 --epochs 1
# For a data set of its own, 0..10 with every value present are simply 11 classes.
expect_fail 2 "--data DIR: labels 0..10 without gaps need 11 outputs" \
    "the output layer has 10 neurons but '$d' has 11 classes" \
    train --data "$d" --layers 16,8,10 --epochs 1

# ... but a label far above the others is a corrupt byte, not class 200.
d=$(labels_copy)
set_byte "$d/t10k-labels-idx1-ubyte" $((8 + 37)) 200
set_byte "$d/t10k-labels-idx1-ubyte" $((8 + 41)) 200
expect_fail 1 "--data DIR: label 200 among 0..9 is corrupt, first sample named" \
    "$d/t10k-labels-idx1-ubyte': sample index 37 has label 200, but only 11 of the values 0..200" \
    train --data "$d" --layers 16,8,10 --epochs 1

# ---- the summary file: checked before training, never anything but a regular file ------

run train --data "$DATA" --layers 16,8,10 --epochs 1 --summary-json "$TMP/no/such/dir/s.json"
if [[ $rc -eq 1 ]] && has_message "directory '$TMP/no/such/dir' does not exist" && no_training
then
    ok "a --summary-json in a missing directory exits 1 before training"
else
    not_ok "unwritable summary: expected exit 1 before training, got $rc"
fi

mkdir -p "$TMP/sdir/s.json"
run train --data "$DATA" --layers 16,8,10 --epochs 1 --summary-json "$TMP/sdir/s.json"
if [[ $rc -eq 1 ]] && has_message "s.json' is a directory, not a regular file: refusing" &&
    no_training && [[ -z $(ls -A "$TMP/sdir/s.json") ]]; then
    ok "a directory as --summary-json is refused before training"
else
    not_ok "a directory as --summary-json: exit $rc"
fi

mkfifo "$TMP/sdir/fifo.json"
timeout 20 "$BIN" train --data "$DATA" --layers 16,8,10 --epochs 1 \
    --summary-json "$TMP/sdir/fifo.json" >"$TMP/out" 2>"$TMP/err"
rc=$?
if [[ $rc -eq 1 ]] && has_message "fifo.json' is a FIFO, not a regular file" && no_training &&
    [[ -p $TMP/sdir/fifo.json ]]; then
    ok "a FIFO as --summary-json is refused before training and left alone"
else
    not_ok "a FIFO as --summary-json: exit $rc"
fi

echo precious >"$TMP/sdir/pointee"
ln -s pointee "$TMP/sdir/link.json"
run train --data "$DATA" --layers 16,8,10 --epochs 1 --summary-json "$TMP/sdir/link.json"
if [[ $rc -eq 1 ]] && has_message "link.json' is a symbolic link (to 'pointee')" && no_training &&
    [[ $(cat "$TMP/sdir/pointee") == precious && -L $TMP/sdir/link.json ]]; then
    ok "a symbolic link as --summary-json is refused and its pointee untouched"
else
    not_ok "a symbolic link as --summary-json: exit $rc"
fi

# A character device is only ever stat'ed. As root, a regression would turn the machine's
# /dev/null into a regular file, so root tests a node of its own (the same device, made with
# mknod); anyone else cannot write /dev and tests the real one.
dev=/dev/null
if [[ $(id -u) -eq 0 ]] && mknod "$TMP/sdir/null" c 1 3 2>/dev/null; then
    dev=$TMP/sdir/null
fi
if [[ -c $dev ]]; then
    run train --data "$DATA" --layers 16,8,10 --epochs 1 --summary-json "$dev"
    if [[ $rc -eq 1 ]] && has_message "'$dev' is a character device" && no_training &&
        [[ -c $dev ]]; then
        ok "a character device as --summary-json is refused and is still a device"
    else
        not_ok "--summary-json $dev: exit $rc"
    fi
fi

# A directory that refuses new files: chmod stops anyone but root; sysfs, where nobody can
# create a file, stops root too. Without either there is nothing to test here.
ro=''
if [[ $(id -u) -ne 0 ]]; then
    mkdir -p "$TMP/ro" && chmod 0555 "$TMP/ro" && ro=$TMP/ro/s.json
elif [[ $(stat -f -c %T /sys 2>/dev/null) == sysfs ]]; then
    ro=/sys/backprop-test-summary.json
fi
if [[ -n $ro ]]; then
    run train --data "$DATA" --layers 16,8,10 --epochs 1 --summary-json "$ro"
    if [[ $rc -eq 1 ]] && has_message "cannot create a file in directory '$(dirname "$ro")'" &&
        no_training && [[ ! -e $ro ]]; then
        ok "a --summary-json in a directory that refuses files exits 1 before training"
    else
        not_ok "read-only summary directory: exit $rc"
    fi
fi
[[ -d $TMP/ro ]] && chmod 0755 "$TMP/ro"

# ---- a real run -------------------------------------------------------------------------

SDIR=$TMP/summaries
mkdir -p "$SDIR"
SUMMARY=$SDIR/summary.json
# The predictable name the old tool wrote through: a link planted there must change nothing.
echo precious >"$TMP/planted"
ln -s "$TMP/planted" "$SUMMARY.tmp"
echo '{"old": true}' >"$SUMMARY"
run train --data "$DATA" --layers 16,8,10 --epochs 1 --batch 10 --eta 0.1 --threads 1 \
    --summary-json "$SUMMARY"
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
if grep -q '200 train, 40 validation, 50 test, 16 inputs, 10 classes' "$TMP/out"; then
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
if [[ $(ls -A "$SDIR") == $'summary.json\nsummary.json.tmp' && -L $SUMMARY.tmp &&
    $(cat "$TMP/planted") == precious ]]; then
    ok "no temporary file is left, and the link planted at FILE.tmp was not followed"
else
    not_ok "the summary directory holds: $(ls -A "$SDIR" | tr '\n' ' ')"
fi
# The rate as the user wrote it, not as the float it became (0.100000001490116).
if grep -q '"eta": 0.1,' "$SUMMARY" && grep -q '"threads": 1,' "$SUMMARY"; then
    ok "the summary holds --eta 0.1 as 0.1 and the thread count used"
else
    not_ok "summary: $(grep -E '"(eta|threads)"' "$SUMMARY" | tr -d '\n')"
fi
if grep -q '^  "ranks": 1,$' "$SUMMARY" && grep -q '^  "communication_seconds": 0,$' "$SUMMARY"
then
    ok "a run without mpirun records 1 rank and no communication"
else
    not_ok "summary: $(grep -E '"(ranks|communication_seconds)"' "$SUMMARY" | tr -d '\n')"
fi

if command -v python3 >/dev/null 2>&1; then
    # check_json FILE [PYTHON-EXPRESSION over d, the parsed file, and a, the extra arguments]
    check_json() {
        python3 -c 'import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
a = sys.argv[3:]
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "${2:-True}" "${@:3}" 2>/dev/null
    }
    if check_json "$SUMMARY" 'd["config"]["eta"] == 0.1 and d["epochs"] == 1'; then
        ok "the summary JSON parses"
    else
        not_ok "the summary JSON does not parse"
    fi

    # Every control character escaped, UTF-8 kept: the data path must come back exactly.
    weird=$TMP/we$'\t'ird$'\001'\ \"quoted\"\ back\\slash\ é
    ln -s "$DATA" "$weird"
    run train --data "$weird" --layers 16,8,10 --epochs 1 --summary-json "$SDIR/weird.json"
    if [[ $rc -eq 0 ]] && check_json "$SDIR/weird.json" 'd["config"]["data"] == a[0]' "$weird"
    then
        ok "a data path with control characters, quotes and UTF-8 survives the JSON"
    else
        not_ok "weird data path: exit $rc"
    fi
fi

# A path that is not UTF-8 cannot be a JSON string: refused before any work, and only when a
# summary is asked for.
# Latin-1, an overlong '/', a UTF-16 surrogate: bytes a strict JSON reader rejects.
for bad in caf$'\xe9' over$'\xc0\xaf'long sur$'\xed\xa0\x80'rogate; do
    ln -s "$DATA" "$TMP/$bad"
    run train --data "$TMP/$bad" --layers 16,8,10 --epochs 1 --summary-json "$SDIR/bad.json"
    if [[ $rc -eq 2 ]] && has_message 'is not valid UTF-8' && no_training &&
        [[ ! -e $SDIR/bad.json ]]; then
        ok "a data path that is not UTF-8 ($(printf %q "$bad")) is refused (exit 2)"
    else
        not_ok "non-UTF-8 data path $(printf %q "$bad") with --summary-json: exit $rc"
    fi
done
latin1=$TMP/caf$'\xe9'
run train --data "$latin1" --layers 16,8,10 --epochs 1
if [[ $rc -eq 0 ]]; then
    ok "the same path trains without --summary-json"
else
    not_ok "non-UTF-8 data path without a summary: exit $rc"
fi

run train --data "$DATA" --layers 16,8,10 --hidden-act relu --output softmax \
    --cost log-likelihood --init he --eta 0.1 --epochs 2 --batch 7 --seed 42 --threads 1 \
    --backend naive
if [[ $rc -eq 0 ]] && grep -q '^epoch 2/2' "$TMP/out"; then
    ok "every flag at once, naive backend, runs"
else
    not_ok "the all-flags run: exit $rc"
fi

# Adam with halving and early stopping on the tiny set: it learns its 40 validation images in
# a few epochs and then cannot improve, so the run must end early, say so, keep the best epoch's
# net, show eta on each epoch line, and record all of it in the summary.
run train --data "$DATA" --layers 16,8,10 --epochs 200 --eta 0.1 --threads 1 \
    --optimizer adam --beta2 0.99 --schedule halve:1 --early-stop 2 --clip-norm 5 \
    --summary-json "$SDIR/adam.json"
if [[ $rc -eq 0 ]] && grep -q '^epoch 1/200 .* eta 0.1  cost' "$TMP/out" &&
    grep -q '^stopped after epoch [0-9]*: ' "$TMP/out" &&
    grep -q "^kept the best epoch's net: epoch [0-9]*, validation" "$TMP/out"; then
    ok "--optimizer adam --schedule halve:1 --early-stop 2 runs, stops early and says so"
else
    not_ok "the adam run with halving and early stopping: exit $rc"
fi
if command -v python3 >/dev/null 2>&1; then
    if check_json "$SDIR/adam.json" '(d["config"]["optimizer"] == "adam" and
            d["config"]["schedule"] == "halve:1" and d["config"]["early_stop"] == 2 and
            d["config"]["beta2"] == 0.99 and d["config"]["clip_norm"] == 5 and
            d["config"]["momentum"] == 0.9 and d["config"]["eps"] == 1e-08 and
            d["stopped_early"] is True and 1 <= d["best_epoch"] < d["epochs"] < 200 and
            d["best_validation_accuracy"] >= d["validation_accuracy"] and
            d["best_validation_accuracy"] >= 0.9 and
            any(d["final_eta"] == 0.1 / 2 ** k for k in range(8)))'; then
        ok "the summary records the optimiser, schedule, early stop and where it stopped"
    else
        not_ok "adam summary: $(tr -d '\n' <"$SDIR/adam.json")"
    fi
    if check_json "$SUMMARY" '(d["config"]["optimizer"] == "sgd" and
            d["config"]["schedule"] == "const" and d["stopped_early"] is False and
            d["best_epoch"] == 1 and d["final_eta"] == 0.1)'; then
        ok "a plain run's summary has the defaults and no early stop"
    else
        not_ok "plain summary: $(tr -d '\n' <"$SUMMARY")"
    fi
fi

# ---- the usage is the library's ---------------------------------------------------------
# The names and defaults in --help are read from the library at run time. The checks compare
# --help with what the tool itself takes and does, so they need no list of names of their own.

"$BIN" --help >"$TMP/help" 2>/dev/null
# help_line FLAG: the usage line of FLAG; help_default FLAG: the first [default] on it.
help_line() { grep -m1 -- "^  $1 " "$TMP/help"; }
help_default() { help_line "$1" | sed -n 's/^[^[]*\[\([^]]*\)\].*/\1/p'; }

# Every name a flag's error message calls known is on that flag's line of the usage, and the
# line lists no others.
for flag in --hidden-act --output --cost --init --backend --optimizer; do
    run train "$flag" no-such-name
    known=$(grep -a '^backprop: ' "$TMP/err" | sed -n 's/.*(known: \(.*\))$/\1/p' | head -n 1)
    listed=$(help_line "$flag" | awk '{print $2}')
    if [[ -n $known && ${known//, /|} == "$listed" ]]; then
        ok "--help lists the names $flag knows ($listed)"
    else
        not_ok "$flag: the error knows '$known', --help lists '$listed'"
    fi
done

# The bracketed defaults are the ones a run without those flags uses (its first line says).
run train --data "$DATA" --layers 16,8,10 --threads 1
first=$(head -n 1 "$TMP/out")
wrong=''
for pair in hidden-act:hidden output:output cost:cost init:init eta:eta batch:batch \
    epochs:epochs backend:backend seed:seed; do
    flag=--${pair%%:*} field=${pair#*:}
    used=$(sed -n "s/.*  $field \([^ ]*\)  .*/\1/p" <<<"$first")
    shown=$(help_default "$flag")
    [[ -n $used && $used == "$shown" ]] || wrong+=" $flag (help '$shown', run '$used')"
done
if [[ $rc -eq 0 && -z $wrong ]]; then
    ok "--help's defaults are the ones a run uses"
else
    not_ok "defaults differ:$wrong; exit $rc"
fi
if grep -q '^  --layers .*2\.\.64 layers' "$TMP/help" && grep -q '1\.\.1048576 neurons' "$TMP/help" &&
    grep -q '^  --batch .*1\.\.1048576 ' "$TMP/help"; then
    ok "--help states the limits --layers and --batch enforce"
else
    not_ok "--help lacks the limits: $(grep -E -- '^  --(layers|batch)' "$TMP/help")"
fi

# Unique prefixes and the accepted number forms.
run train --data "$DATA" --lay 16,8,10 --epo 1 --et 5e-1 --seed 007 --thr 01
if [[ $rc -eq 0 ]] && grep -q 'eta 0.5  batch 10  epochs 1 .* threads 1  seed 7  openblas' "$TMP/out"
then
    ok "abbreviations and leading zeros are accepted"
else
    not_ok "abbreviated run: exit $rc"
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

# ---- saturation: a warning, not an error ------------------------------------------------

warning='warning: validation accuracy 10.00% is near chance level for 10 classes and the '
warning+='outputs are saturated; try a smaller --eta'
run train --data "$DATA" --layers 16,8,10 --cost quadratic --eta 1e30 --epochs 3
if [[ $rc -eq 0 ]] && [[ $(grep -c 'warning: validation accuracy' "$TMP/err") -eq 1 ]] &&
    has_message "$warning"; then
    ok "a saturated net warns once that it is at chance level (exit 0)"
else
    not_ok "saturation warning: exit $rc, $(grep -c warning "$TMP/err") warnings"
fi
# Saturated sigmoids that still tell some samples apart (cross-entropy at 1e30 on MNIST gave
# 16-19%): pinned outputs, not identical ones, and still a warning.
run train --data "$DATA" --layers 16,8,10 --eta 1e30 --epochs 2
if [[ $rc -eq 0 ]] && [[ $(grep -c 'warning: validation accuracy' "$TMP/err") -eq 1 ]] &&
    has_message "outputs are saturated"; then
    ok "pinned outputs near chance warn too (exit 0)"
else
    not_ok "pinned-output warning: exit $rc, $(grep -c warning "$TMP/err") warnings"
fi
# A net that is merely slow (10% after an epoch at a small rate) has not saturated.
run train --data "$DATA" --layers 16,8,10 --eta 0.01 --epochs 2
if [[ $rc -eq 0 ]] && grep -q 'validation 10.00%' "$TMP/out" && ! grep -q warning "$TMP/err"
then
    ok "a slow net at chance level is not called saturated"
else
    not_ok "slow net: exit $rc, stderr: $(head -c 200 "$TMP/err")"
fi

# ---- standard output that fails --------------------------------------------------------

if [[ -w /dev/full ]]; then
    start=$SECONDS
    "$BIN" train --data "$DATA" --layers 16,8,10 --epochs 100000 >/dev/full 2>"$TMP/err"
    rc=$?
    if [[ $rc -eq 1 ]] && has_message 'writing standard output: No space left on device' &&
        ((SECONDS - start < 30)); then
        ok "train > /dev/full stops at the first line (exit 1)"
    else
        not_ok "train > /dev/full: exit $rc after $((SECONDS - start)) s"
    fi
fi

# A file that fills up after a few lines: the epoch lines are checked too. RLIMIT_FSIZE with
# SIGXFSZ ignored makes the write fail with EFBIG, like a disk that is full.
(ulimit -f 2 && trap '' XFSZ && exec "$BIN" train --data "$DATA" --layers 16,8,10 \
    --epochs 100000 >"$TMP/out" 2>"$TMP/err")
rc=$?
lines=$(grep -c '^epoch ' "$TMP/out")
if [[ $rc -eq 1 ]] && has_message 'writing standard output: File too large' && ((lines < 100))
then
    ok "an output file that fills up after $lines epoch lines stops the run (exit 1)"
else
    not_ok "filling output: exit $rc after $lines epoch lines"
fi

# ---- signals -----------------------------------------------------------------------------

# start_long_run SUMMARY [SIGNALS]: a run that would take minutes, in the background, once it
# is training (its first epoch line is out), with SIGHUP and SIGTERM at their defaults or as
# SIGNALS (env's flags) say. Sets $pid.
start_long_run() {
    # Not the previous run's lines: the background shell may not have truncated it yet.
    rm -f "$TMP/out"
    # A signal ignored when the process starts stays ignored (that is nohup), and a test run
    # under nohup or a CI runner that ignores SIGHUP passes that on: the run then trained to
    # the end and exited 0. The shell cannot undo an ignore it inherited; env can.
    env "${2:---default-signal=HUP,TERM}" \
        "$BIN" train --data "$DATA" --layers 16,8,10 --epochs 1000000 --summary-json "$1" \
        >"$TMP/out" 2>"$TMP/err" &
    pid=$!
    for ((i = 0; i < 200; i++)); do
        grep -q '^epoch ' "$TMP/out" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# SIGTERM ends the run like Ctrl-C: after the mini-batch, with the test figure and the summary,
# and the status says which signal (128 + 15).
SIGDIR=$TMP/signals
mkdir -p "$SIGDIR"
echo '{"old": true}' >"$SIGDIR/s.json"
start_long_run "$SIGDIR/s.json"
kill -TERM "$pid"
wait "$pid"
rc=$?
if [[ $rc -eq 143 ]] && grep -q '^interrupted by SIGTERM: stopped ' "$TMP/out" &&
    grep -q '^test accuracy' "$TMP/out" && grep -q '"epochs": [0-9]' "$SIGDIR/s.json" &&
    ! grep -q '"old"' "$SIGDIR/s.json" && [[ $(ls -A "$SIGDIR") == s.json ]]; then
    ok "SIGTERM stops training, reports and replaces the summary whole (exit 143)"
else
    not_ok "SIGTERM: exit $rc, files: $(ls -A "$SIGDIR" | tr '\n' ' ')"
fi

# SIGHUP, or a second SIGTERM, ends the process at once: no temporary file exists during
# training, so the old summary is all there is.
echo '{"old": true}' >"$SIGDIR/s.json"
start_long_run "$SIGDIR/s.json"
kill -HUP "$pid"
wait "$pid" 2>/dev/null # not the shell's "Hangup" report in the test log
rc=$?
if [[ $rc -eq $((128 + 1)) ]] && [[ $(cat "$SIGDIR/s.json") == '{"old": true}' ]] &&
    [[ $(ls -A "$SIGDIR") == s.json ]]; then
    ok "SIGHUP during training leaves the old summary and no other file"
else
    not_ok "SIGHUP: exit $rc, files: $(ls -A "$SIGDIR" | tr '\n' ' ')"
fi

# Under nohup SIGHUP is ignored from the start, and stays so: the run goes on (SIGTERM ends it).
start_long_run "$SIGDIR/s.json" --ignore-signal=HUP
kill -HUP "$pid"
sleep 0.5
if kill -0 "$pid" 2>/dev/null; then alive=1; else alive=0; fi
kill -TERM "$pid"
wait "$pid"
rc=$?
if [[ $alive -eq 1 && $rc -eq 143 ]]; then
    ok "an ignored SIGHUP (nohup) stays ignored: training goes on until SIGTERM"
else
    not_ok "nohup: alive after SIGHUP $alive, exit $rc"
fi

# ---- regularisation ----------------------------------------------------------------------
expect_fail 2 "--lambda -1" "--lambda: -1 must be a finite number >= 0" train --lambda -1
expect_fail 2 "--l1 0x1" "--l1: '0x1' is not a decimal number (like 5.0 or 1e-4)" train --l1 0x1
run train --data "$DATA" --layers 16,8,10 --epochs 1 --lambda 5 --l1 0.5 \
    --summary-json "$TMP/reg.json"
if [[ $rc -eq 0 ]] && grep -q '"lambda": 5,' "$TMP/reg.json" && grep -q '"l1": 0.5,' "$TMP/reg.json"
then
    ok "--lambda and --l1 train and are recorded as given in the summary"
else
    not_ok "--lambda 5 --l1 0.5: exit $rc"
fi

# ---- the epoch log ------------------------------------------------------------------------
LDIR=$TMP/logs
mkdir -p "$LDIR"
norm_columns='grad_norm:layers.0.weight,grad_norm:layers.0.bias,grad_norm:layers.1.weight,'
norm_columns+='grad_norm:layers.1.bias'
log_header='epoch,eta,train_cost,validation_cost,validation_accuracy,seconds,samples_per_second'

expect_fail 2 "--log x.txt is a usage error" "--log: '$LDIR/x.txt' must end in .jsonl" \
    train --data "$DATA" --layers 16,8,10 --epochs 1 --log "$LDIR/x.txt"
expect_fail 2 "--norm-samples without --log" "--norm-samples: the gradient norms go to the --log" \
    train --data "$DATA" --layers 16,8,10 --epochs 1 --norm-samples 10
expect_fail 2 "--norm-samples -1" "--norm-samples: '-1' is not a whole number" \
    train --data "$DATA" --layers 16,8,10 --epochs 1 --log "$LDIR/n.jsonl" --norm-samples -1
run train --data "$DATA" --layers 16,8,10 --epochs 1 --log "$TMP/no/such/dir/x.jsonl"
if [[ $rc -eq 1 ]] && has_message "--log: " && has_message "'$TMP/no/such/dir' does not exist" &&
    no_training; then
    ok "a --log in a missing directory exits 1 before training"
else
    not_ok "--log in a missing directory: exit $rc"
fi
echo precious >"$LDIR/pointee"
ln -s pointee "$LDIR/link.jsonl"
run train --data "$DATA" --layers 16,8,10 --epochs 1 --log "$LDIR/link.jsonl"
if [[ $rc -eq 1 ]] && has_message "--log: " && has_message "link.jsonl' is a symbolic link" &&
    no_training && [[ $(cat "$LDIR/pointee") == precious ]]; then
    ok "a symbolic link as --log is refused before training, its pointee untouched"
else
    not_ok "--log through a symbolic link: exit $rc"
fi
# The log is created when training starts: a run that fails on its data leaves an old one.
echo old >"$LDIR/old.jsonl"
run train --data "$TMP/empty" --layers 16,8,10 --epochs 1 --log "$LDIR/old.jsonl"
if [[ $rc -eq 1 && $(cat "$LDIR/old.jsonl") == old ]]; then
    ok "a run that fails before training leaves an existing log as it was"
else
    not_ok "failed run and an old log: exit $rc, log: $(head -c 80 "$LDIR/old.jsonl")"
fi

if command -v python3 >/dev/null 2>&1; then
    # check_py FILE PYTHON [ARGS...]: the script sees FILE's path as f, the rest as a, and
    # must exit 0.
    check_py() {
        local file=$1 code=$2
        shift 2
        python3 -c "import csv, json, math, sys
f, a = sys.argv[1], sys.argv[2:]
$code" "$file" "$@"
    }

    echo '{"old": true}' >"$LDIR/run.jsonl"
    run train --data "$DATA" --layers 16,8,10 --epochs 3 --eta 0.1 --threads 1 \
        --log "$LDIR/run.jsonl"
    if [[ $rc -eq 0 ]] && check_py "$LDIR/run.jsonl" '
lines = open(f, encoding="utf-8").read().splitlines()
recs = [json.loads(l) for l in lines]
assert [r["epoch"] for r in recs] == [0, 1, 2, 3], lines
names = ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
# Epoch 0 is the net as initialised: norms and validation figures, no training cost or speed.
init, recs = recs[0], recs[1:]
assert init["train_cost"] is None and init["samples_per_second"] is None, init
assert init["seconds"] == 0 and init["validation_cost"] > 0, init
assert list(init["grad_norms"]) == names and all(v > 0 for v in init["grad_norms"].values())
assert init["grad_norms"] != recs[0]["grad_norms"], (init, recs[0])
for r in recs:
    assert isinstance(r, dict)
    assert r["eta"] == 0.1, r
    assert r["train_cost"] > 0 and r["validation_cost"] > 0, r
    v = r["validation_accuracy"]
    assert 0 <= v <= 1 and v == round(v * 40) / 40, r
    assert r["seconds"] > 0 and r["samples_per_second"] > 0, r
    assert list(r["grad_norms"]) == names, r
    assert all(math.isfinite(v) and v > 0 for v in r["grad_norms"].values()), r
'; then
        ok "--log x.jsonl: one JSON object per epoch with the figures and every tensor's norm"
    else
        not_ok "--log x.jsonl: exit $rc, log: $(head -c 300 "$LDIR/run.jsonl")"
    fi
    # The epoch lines on stdout and the records agree on the validation accuracy.
    printed=$(sed -n 's/^epoch [0-9]*\/3  validation \([0-9.]*\)%.*/\1/p' "$TMP/out" | tr '\n' ' ')
    if [[ -n $printed ]] && check_py "$LDIR/run.jsonl" '
acc = ["%.2f" % (100 * r["validation_accuracy"])
       for r in map(json.loads, open(f)) if r["epoch"] > 0]
assert " ".join(acc) + " " == a[0], acc
' "$printed"; then
        ok "the log's accuracies are the ones the epoch lines print ($printed)"
    else
        not_ok "log vs stdout accuracies: printed '$printed'"
    fi

    run train --data "$DATA" --layers 16,8,10 --epochs 2 --threads 1 --log "$LDIR/run.csv" \
        --norm-samples 50
    if [[ $rc -eq 0 ]] && [[ $(head -n 1 "$LDIR/run.csv") == "$log_header,$norm_columns" ]] &&
        check_py "$LDIR/run.csv" '
rows = list(csv.reader(open(f, newline="")))
assert len(rows) == 4, rows
assert [r[0] for r in rows[1:]] == ["0", "1", "2"], rows
assert rows[1][2] == "nan" and rows[1][6] == "nan", rows[1]
for r in rows[2:]:
    assert len(r) == len(rows[0]), r
    assert all(math.isfinite(float(c)) and float(c) >= 0 for c in r), r
'; then
        ok "--log x.csv: the header with a column per tensor norm, and one row per epoch"
    else
        not_ok "--log x.csv: exit $rc, log: $(head -c 300 "$LDIR/run.csv")"
    fi

    run train --data "$DATA" --layers 16,8,10 --epochs 2 --threads 1 --log "$LDIR/off.jsonl" \
        --norm-samples 0
    run2_rc=$rc
    run train --data "$DATA" --layers 16,8,10 --epochs 1 --threads 1 --log "$LDIR/off.csv" \
        --norm-samples 0
    if [[ $run2_rc -eq 0 && $rc -eq 0 && $(head -n 1 "$LDIR/off.csv") == "$log_header" ]] &&
        check_py "$LDIR/off.jsonl" '
recs = [json.loads(l) for l in open(f)]
assert len(recs) == 2 and all("grad_norms" not in r for r in recs), recs
'; then
        ok "--norm-samples 0 leaves the norms out of both formats"
    else
        not_ok "--norm-samples 0: exit $run2_rc / $rc, csv header: $(head -n 1 "$LDIR/off.csv")"
    fi

    # A log that fills up (RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG, like a full disk) stops the
    # run with status 1, naming the file, and keeps whole records only.
    (ulimit -f 2 && trap '' XFSZ && exec "$BIN" train --data "$DATA" --layers 16,8,10 \
        --epochs 100000 --log "$LDIR/full.jsonl" >/dev/null 2>"$TMP/err")
    rc=$?
    if [[ $rc -eq 1 ]] && has_message "--log: cannot write '$LDIR/full.jsonl': File too large" &&
        [[ $(grep -c 'backprop: ' "$TMP/err") -eq 1 ]] && check_py "$LDIR/full.jsonl" '
text = open(f, encoding="utf-8").read()
assert text.endswith("\n")
recs = [json.loads(l) for l in text.splitlines()]
assert 1 <= len(recs) < 100 and [r["epoch"] for r in recs] == list(range(len(recs)))
'; then
        ok "a log that fills up stops the run (exit 1) and keeps its whole records"
    else
        not_ok "filling log: exit $rc, $(wc -l <"$LDIR/full.jsonl") lines"
    fi
fi

# ---- dropout and batch norm --------------------------------------------------------------
expect_fail 2 "--dropout 1" "--dropout: 1 must be in [0, 1)" train --dropout 1
expect_fail 2 "--dropout -0.5" "--dropout: -0.5 must be in [0, 1)" \
    train --dropout -0.5
expect_fail 2 "--dropout 0.999999999 (1 in float)" "--dropout: 0.999999999 must be in [0, 1)" \
    train --dropout 0.999999999
expect_fail 2 "--dropout x" "--dropout: 'x' is not a decimal number" train --dropout x
expect_fail 2 "--dropout nan" "--dropout: 'nan' is not a decimal number" train --dropout nan
expect_fail 2 "--batchnorm=1" "option '--batchnorm' takes no value" train --batchnorm=1
expect_fail 2 "--batchnorm without a hidden layer" "--batchnorm: the net has no hidden layer" \
    train --layers 16,10 --batchnorm
expect_fail 2 "--dropout without a hidden layer" "--dropout: the net has no hidden layer" \
    train --layers 16,10 --dropout 0.5
# Batches of 40 on two threads: the step is split, and batch norm's statistics with it.
run train --data "$DATA" --layers 16,12,10 --epochs 2 --batch 40 --threads 2 --eta 0.5 \
    --batchnorm --summary-json "$TMP/bn.json"
if [[ $rc -eq 0 ]] && grep -q '^epoch 2' "$TMP/out" && grep -q '"batchnorm": true' "$TMP/bn.json"
then
    ok "--batchnorm trains and is recorded in the summary"
else
    not_ok "--batchnorm: exit $rc"
fi
run train --data "$DATA" --layers 16,12,10 --epochs 2 --dropout 0.5 --summary-json "$TMP/do.json"
if [[ $rc -eq 0 ]] && grep -q '^epoch 2' "$TMP/out" && grep -q '"dropout": 0.5,' "$TMP/do.json" &&
    grep -q '"batchnorm": false' "$TMP/do.json"; then
    ok "--dropout 0.5 trains and is recorded in the summary"
else
    not_ok "--dropout 0.5: exit $rc"
fi

# ---- model files: train --save -------------------------------------------------------------
MDIR=$TMP/models
mkdir -p "$MDIR"
MODEL=$MDIR/m.st

if "$BIN" train --help | grep -q '^  --save FILE '; then
    ok "train --help documents --save"
else
    not_ok "train --help lacks --save"
fi
expect_fail 2 "train --save ''" "--save: empty file name" train --save ''
expect_fail 2 "train --save and --summary-json the same file" \
    "--save and --summary-json name the same file '$MDIR/x'" \
    train --data "$DATA" --layers 16,8,10 --save "$MDIR/x" --summary-json "$MDIR/x"
run train --data "$DATA" --layers 16,8,10 --epochs 1 --save "$TMP/no/such/dir/m.st"
if [[ $rc -eq 1 ]] && has_message "--save: " && has_message "'$TMP/no/such/dir' does not exist" &&
    no_training; then
    ok "a --save in a missing directory exits 1 before training"
else
    not_ok "--save in a missing directory: exit $rc"
fi

# The model the later sections judge: its test accuracy is printed here.
run train --data "$DATA" --layers 16,8,10 --epochs 3 --eta 0.5 --threads 1 --save "$MODEL" \
    --summary-json "$MDIR/train.json"
train_acc=$(sed -n 's/^test accuracy \(.*\)$/\1/p' "$TMP/out")
if [[ $rc -eq 0 && -s $MODEL ]] && grep -q "^saved the net to $MODEL\$" "$TMP/out" &&
    [[ $(ls -A "$MDIR") == $'m.st\ntrain.json' ]]; then
    ok "train --save writes the model, says so and leaves no temporary file"
else
    not_ok "train --save: exit $rc, files: $(ls -A "$MDIR" | tr '\n' ' ')"
fi

# A save that fails after training (the file outgrows RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG, as
# on a full disk) exits 1 naming the file, and the old model is still there, whole.
mkdir -p "$MDIR/full"
cp "$MODEL" "$MDIR/full/m.st"
(ulimit -f 1 && trap '' XFSZ && exec "$BIN" train --data "$DATA" --layers 16,8,10 --epochs 1 \
    --threads 1 --save "$MDIR/full/m.st" >"$TMP/out" 2>"$TMP/err")
rc=$?
if [[ $rc -eq 1 ]] && has_message "--save: " && has_message "$MDIR/full/m.st" &&
    grep -q '^test accuracy' "$TMP/out" && cmp -s "$MODEL" "$MDIR/full/m.st" &&
    [[ $(ls -A "$MDIR/full") == m.st ]]; then
    ok "a --save that fails after training exits 1 naming the file; the old model stays"
else
    not_ok "failing --save: exit $rc, files: $(ls -A "$MDIR/full" | tr '\n' ' ')"
fi

# --early-stop: the net saved is the best epoch's, and the line says so.
run train --data "$DATA" --layers 16,8,10 --epochs 200 --eta 0.1 --threads 1 \
    --optimizer adam --early-stop 2 --save "$MDIR/best.st"
if [[ $rc -eq 0 ]] && grep -q "^saved the best epoch's net (epoch [0-9]*) to $MDIR/best.st\$" \
    "$TMP/out"; then
    ok "train --early-stop --save saves the best epoch's net and says which"
else
    not_ok "--early-stop --save: exit $rc, $(grep saved "$TMP/out")"
fi

# check_help CMD FLAG...: `backprop help CMD` and `CMD --help` print the same usage, and each
# FLAG has its line with a [default] on it or the next one (--help excepted).
check_help() {
    local cmd=$1 flag missing='' help_rc
    shift
    "$BIN" help "$cmd" >"$TMP/help-$cmd" 2>/dev/null
    help_rc=$?
    run "$cmd" --help
    for flag in "$@"; do
        if ! grep -q -- "^  \(-., \)\?$flag\( \|$\)" "$TMP/help-$cmd"; then
            missing+=" $flag"
        elif [[ $flag != --help ]] &&
            ! grep -A1 -- "^  \(-., \)\?$flag\( \|$\)" "$TMP/help-$cmd" | tr '\n' ' ' | grep -q '\['; then
            missing+=" $flag (default)"
        fi
    done
    if [[ $help_rc -eq 0 && $rc -eq 0 && -z $missing ]] && cmp -s "$TMP/out" "$TMP/help-$cmd" &&
        grep -q "^usage: backprop $cmd " "$TMP/out" && "$BIN" --help | grep -q "^  $cmd "; then
        ok "backprop help $cmd = $cmd --help: every flag with its default; --help lists $cmd"
    else
        not_ok "help $cmd: exit $help_rc / $rc, undocumented:$missing"
    fi
}

# flip_last_bit MODEL COPY: COPY is MODEL with the last bit of its last tensor flipped.
flip_last_bit() {
    local size last
    cp "$1" "$2"
    size=$(wc -c <"$1")
    last=$(tail -c 1 "$1" | od -An -tu1 | tr -d ' ')
    set_byte "$2" $((size - 1)) $((last ^ 1))
}

# ---- eval ------------------------------------------------------------------------------------
check_help eval --model --data --set --summary-json --threads --help
expect_fail 2 "help of an unknown command" "help: unknown command 'frob'" help frob
expect_fail 2 "eval --bogus" "unknown option '--bogus'" eval --bogus
if grep -q '^usage: backprop eval ' "$TMP/err"; then
    ok "an eval usage error shows eval's usage"
else
    not_ok "eval usage error without eval's usage"
fi
expect_fail 2 "eval without --model" "--model: which model?" eval --data "$DATA"
expect_fail 2 "eval without --data" "--data: which data?" eval --model "$MODEL"
expect_fail 2 "eval --set bogus" "--set: unknown set 'bogus' (known: test, validation, train)" \
    eval --model "$MODEL" --data "$DATA" --set bogus
expect_fail 2 "eval --threads 0" "--threads: 0 is out of range (1..4096)" \
    eval --model "$MODEL" --data "$DATA" --threads 0
expect_fail 2 "eval --model with no value" "--model needs a value" eval --model
expect_fail 2 "eval extra argument" "unexpected argument 'x'" eval --model "$MODEL" --data "$DATA" x

# The model a run saves is the net it tested: eval's test accuracy is train's.
run eval --model "$MODEL" --data "$DATA" --threads 1 --summary-json "$MDIR/eval.json"
eval_acc=$(sed -n 's/^accuracy \(.*\)  cost .*$/\1/p' "$TMP/out")
if [[ $rc -eq 0 && -n $train_acc && $eval_acc == "$train_acc" ]] &&
    grep -q '^data .*: test set, 50 samples$' "$TMP/out" &&
    grep -q '^true\\pred  0  1  2  3  4  5  6  7  8  9$' "$TMP/out"; then
    ok "eval prints train's test accuracy ($eval_acc) and the confusion table"
else
    not_ok "eval: exit $rc, accuracy '$eval_acc', train's '$train_acc'"
fi
if [[ $(grep -cE '^ {8}[0-9]( +[0-9]+){10}$' "$TMP/out") -eq 10 ]]; then
    ok "the confusion table has a row of ten counts per true class"
else
    not_ok "confusion table: $(grep -A11 '^confusion' "$TMP/out" | head -3)"
fi
run eval --model "$MODEL" --data "$DATA" --set validation --threads 1
if [[ $rc -eq 0 ]] && grep -q ': validation set, 40 samples$' "$TMP/out" &&
    grep -q '^accuracy [0-9.]*% ([0-9]*/40)' "$TMP/out"; then
    ok "eval --set validation takes the last 1/6 of the training file (40 images)"
else
    not_ok "eval --set validation: exit $rc"
fi
run eval --model "$MODEL" --data "$DATA" --set train --threads 1
if [[ $rc -eq 0 ]] && grep -q ': train set, 200 samples$' "$TMP/out"; then
    ok "eval --set train takes the first 5/6 (200 images)"
else
    not_ok "eval --set train: exit $rc"
fi
if command -v python3 >/dev/null 2>&1; then
    if check_py "$MDIR/eval.json" '
d, t = json.load(open(f)), json.load(open(a[1]))
assert d["accuracy"] == t["test_accuracy"], (d["accuracy"], t["test_accuracy"])
assert d["count"] == 50 and d["set"] == "test" and d["model"] == a[0], d
assert d["cost"] > 0 and d["correct"] == round(d["accuracy"] * 50), d
c = d["confusion"]
assert len(c) == 10 and all(len(r) == 10 and sum(r) == 5 for r in c), c
assert sum(c[i][i] for i in range(10)) == d["correct"], c
' "$MODEL" "$MDIR/train.json"; then
        ok "eval's JSON: the train summary's test accuracy, count, set, model, confusion"
    else
        not_ok "eval JSON: $(tr -d '\n' <"$MDIR/eval.json" | head -c 300)"
    fi
fi

# A model that does not fit the data: status 1, naming both.
expect_fail 1 "eval on images of another shape" \
    "'$TMP/shapes/t10k-images-idx3-ubyte' holds 16x1 images but the model '$MODEL' was trained" \
    eval --model "$MODEL" --data "$TMP/shapes"
d=$(labels_copy)
set_byte "$d/train-labels-idx1-ubyte" $((8 + 5)) 10
expect_fail 1 "eval on a set with more classes than the model has outputs" \
    "'$d/train-labels-idx1-ubyte' has 11 classes but the model '$MODEL' has 10 outputs" \
    eval --model "$MODEL" --data "$d" --set train

# Missing and corrupt model files: status 1, the file named.
expect_fail 1 "eval --model of a missing file" "--model: '$MDIR/none.st': no such file" \
    eval --model "$MDIR/none.st" --data "$DATA"
expect_fail 1 "eval --model of a directory" "--model: '$MDIR' is a directory" \
    eval --model "$MDIR" --data "$DATA"
flip_last_bit "$MODEL" "$MDIR/flipped.st"
run eval --model "$MDIR/flipped.st" --data "$DATA"
if [[ $rc -eq 1 ]] && has_message "$MDIR/flipped.st" && has_message "CRC" && [[ ! -s $TMP/out ]]
then
    ok "eval refuses a model with one bit flipped (its CRC), naming the file (exit 1)"
else
    not_ok "eval on a flipped model: exit $rc"
fi
head -c $(($(wc -c <"$MODEL") / 2)) "$MODEL" >"$MDIR/half.st"
expect_fail 1 "a truncated model file is refused, named" "$MDIR/half.st" \
    eval --model "$MDIR/half.st" --data "$DATA"

# ---- predict ---------------------------------------------------------------------------------
check_help predict --model --data --set --limit --out --summary-json --threads --help
expect_fail 2 "predict --limit 0" "--limit: 0 is out of range" \
    predict --model "$MODEL" --data "$DATA" --limit 0
expect_fail 2 "predict --limit -1" "--limit: '-1' is not a whole number" \
    predict --model "$MODEL" --data "$DATA" --limit -1
expect_fail 2 "predict --out ''" "--out: empty file name" \
    predict --model "$MODEL" --data "$DATA" --out ''
expect_fail 2 "predict with nothing to predict" "nothing to predict" predict --model "$MODEL"
expect_fail 2 "predict --data and images" "--data and images ('x.pgm'): one or the other" \
    predict --model "$MODEL" --data "$DATA" x.pgm
expect_fail 2 "predict --set with images" "--set: only with --data" \
    predict --model "$MODEL" --set test x.pgm

run predict --model "$MODEL" --data "$DATA" --threads 1
cp "$TMP/out" "$MDIR/stdout.csv"
run predict --model "$MODEL" --data "$DATA" --threads 1 --out "$MDIR/p.csv" \
    --summary-json "$MDIR/predict.json"
if [[ $rc -eq 0 && ! -s $TMP/out ]] && cmp -s "$MDIR/p.csv" "$MDIR/stdout.csv"; then
    ok "predict --out writes what predict prints"
else
    not_ok "predict --out: exit $rc, differs from stdout or printed too"
fi
run predict --model "$MODEL" --data "$DATA" --limit 7 --set validation
if [[ $rc -eq 0 && $(wc -l <"$TMP/out") -eq 8 ]] && tail -n 1 "$TMP/out" | grep -q '^6,6,'; then
    ok "predict --limit 7 --set validation: seven rows, indices within the set"
else
    not_ok "predict --limit: exit $rc, $(wc -l <"$TMP/out") lines"
fi
if command -v python3 >/dev/null 2>&1; then
    # Up to a near-tie the batches of eval and predict round apart (predict --help), the
    # counts agree: on these 50 images they do.
    if check_py "$MDIR/p.csv" '
rows = list(csv.reader(open(f, newline="")))
assert rows[0] == ["index", "label", "predicted"] + ["out%d" % k for k in range(10)], rows[0]
rows = rows[1:]
assert [int(r[0]) for r in rows] == list(range(50)), rows
assert [int(r[1]) for r in rows] == [i % 10 for i in range(50)], rows
correct = 0
for r in rows:
    out = [float(v) for v in r[3:]]
    assert int(r[2]) == out.index(max(out)), r
    correct += int(r[2]) == int(r[1])
e, p = json.load(open(a[0])), json.load(open(a[1]))
assert correct == e["correct"] and correct / 50 == e["accuracy"], (correct, e["correct"])
assert (p["count"], p["correct"], p["accuracy"], p["set"]) == (50, correct, correct / 50, "test")
' "$MDIR/eval.json" "$MDIR/predict.json"; then
        ok "predict's CSV: a row per sample, predicted = argmax, eval's accuracy recomputed"
    else
        not_ok "predict CSV: $(head -n 3 "$MDIR/p.csv")"
    fi
fi

# PGM images: test images 3 and 7 as binary PGMs give rows 3 and 7, bit for bit.
# pgm_pixels I: the 16 bytes of test image I.
pgm_pixels() {
    gzip -dc "$DATA/t10k-images-idx3-ubyte.gz" | tail -c +$((17 + $1 * 16)) | head -c 16
}
{ printf 'P5\n# test image 3\n4 4\n255\n'; pgm_pixels 3; } >"$MDIR/three.pgm"
{ printf 'P5 4\t4 255 '; pgm_pixels 7; } >"$MDIR/seven.pgm"
run predict --model "$MODEL" "$MDIR/three.pgm" "$MDIR/seven.pgm"
want3=$(sed -n '5s/^3,3,//p' "$MDIR/p.csv")
want7=$(sed -n '9s/^7,7,//p' "$MDIR/p.csv")
if [[ $rc -eq 0 && -n $want3 ]] && [[ $(sed -n 1p "$TMP/out") == file,predicted,out0,*,out9 ]] &&
    [[ $(sed -n 2p "$TMP/out") == "$MDIR/three.pgm,$want3" ]] &&
    [[ $(sed -n 3p "$TMP/out") == "$MDIR/seven.pgm,$want7" ]]; then
    ok "predict IMAGE.pgm: the class and output vector of the same image in the data set"
else
    not_ok "predict on PGM: exit $rc, got '$(sed -n 2p "$TMP/out")', want '$want3'"
fi
{ printf 'P2\n4 4\n255\n'; for ((i = 0; i < 16; i++)); do printf '0 '; done; } >"$MDIR/ascii.pgm"
expect_fail 1 "a P2 (ASCII) PGM is refused" \
    "'$MDIR/ascii.pgm' is a plain (ASCII) PGM, P2; only binary PGM (P5) images are read" \
    predict --model "$MODEL" "$MDIR/three.pgm" "$MDIR/ascii.pgm"
if [[ ! -s $TMP/out ]]; then
    ok "(and nothing is printed for the good image before it)"
else
    not_ok "predict printed rows before refusing an image"
fi
{ printf 'P5\n5 4\n255\n'; pgm_pixels 0; printf '1234'; } >"$MDIR/wide.pgm"
expect_fail 1 "a PGM of another shape than the model's is refused" \
    "'$MDIR/wide.pgm' is 5x4 (width x height) but the model '$MODEL' takes 4x4 images" \
    predict --model "$MODEL" "$MDIR/wide.pgm"
head -c $(($(wc -c <"$MDIR/three.pgm") - 6)) "$MDIR/three.pgm" >"$MDIR/short.pgm"
expect_fail 1 "a truncated PGM is refused" "'$MDIR/short.pgm' is truncated: " \
    predict --model "$MODEL" "$MDIR/short.pgm"
{ printf 'P5\n4 4\n65535\n'; pgm_pixels 0; pgm_pixels 0; } >"$MDIR/deep.pgm"
expect_fail 1 "a 16-bit PGM is refused" "'$MDIR/deep.pgm' has maxval 65535; only maxval 255" \
    predict --model "$MODEL" "$MDIR/deep.pgm"
{ cat "$MDIR/three.pgm"; printf 'x'; } >"$MDIR/long.pgm"
expect_fail 1 "a PGM with bytes after its pixels is refused" "'$MDIR/long.pgm' has bytes after" \
    predict --model "$MODEL" "$MDIR/long.pgm"
expect_fail 1 "a missing image is named" "'$MDIR/none.pgm': no such file" \
    predict --model "$MODEL" "$MDIR/none.pgm"
flip_last_bit "$MODEL" "$MDIR/flipped.st"
run predict --model "$MDIR/flipped.st" --data "$DATA"
if [[ $rc -eq 1 ]] && has_message "$MDIR/flipped.st" && has_message "CRC" && [[ ! -s $TMP/out ]]
then
    ok "predict refuses a model with one bit flipped (its CRC), naming the file (exit 1)"
else
    not_ok "predict on a flipped model: exit $rc"
fi

# ---- inspect ---------------------------------------------------------------------------------
check_help inspect --model --json --summary-json --help
expect_fail 2 "inspect --json=1" "option '--json' takes no value" inspect --model "$MODEL" --json=1
expect_fail 2 "inspect --mod (a prefix) without a value" "--mod needs a value" inspect --mod
expect_fail 2 "inspect without --model" "--model: which model?" inspect --json
if command -v python3 >/dev/null 2>&1; then
    run inspect --model "$MODEL" --json
    if [[ $rc -eq 0 ]] && check_py "$TMP/out" '
d = json.load(open(f))
assert d["parameters"] == 16 * 8 + 8 + 8 * 10 + 10 == 226, d["parameters"]
assert [l["parameters"] for l in d["layers"]] == [136, 90], d["layers"]
assert [l["spec"] for l in d["layers"]] == ["dense:8:sigmoid", "dense:10:sigmoid"], d["layers"]
assert d["spec"] == "dense:8:sigmoid,dense:10:sigmoid" and d["input_width"] == 16
assert d["cost"] == "cross-entropy" and d["outputs"] == 10 and d["buffers"] == 0
m = d["metadata"]
assert m["input_rows"] == 4 and m["input_cols"] == 4 and abs(m["input_scale"] - 1 / 255) < 1e-9
assert m["class_names"] is None, m
assert m["training"]["epochs"] == 3 and m["training"]["layers"] == [16, 8, 10], m
t = json.load(open(a[0]))
assert m["training"] == t["config"], (m["training"], t["config"])
s = d["spectra"]
assert [x["tensor"] for x in s] == ["layers.0.weight", "layers.1.weight"], s
assert [x["shape"] for x in s] == [[8, 16], [10, 8]], s
for x in s:
    assert x["largest"] >= x["smallest"] > 0, x
    assert abs(x["condition"] - x["largest"] / x["smallest"]) <= 1e-6 * x["condition"], x
' "$MDIR/train.json"; then
        ok "inspect --json: 226 parameters by layer, the metadata and training config, spectra"
    else
        not_ok "inspect --json: exit $rc, $(head -c 300 "$TMP/out")"
    fi
fi
"$BIN" inspect --model "$MODEL" --json >"$MDIR/inspect-stdout.json" 2>/dev/null
run inspect --model "$MODEL" --summary-json "$MDIR/inspect.json"
if [[ $rc -eq 0 ]] && cmp -s "$MDIR/inspect.json" "$MDIR/inspect-stdout.json"; then
    ok "inspect --summary-json FILE holds what --json prints"
else
    not_ok "inspect --summary-json: exit $rc"
fi
if [[ $rc -eq 0 ]] && grep -qE '^total +226$' "$TMP/out" &&
    grep -qE '^layers\.0\.weight +8x16 ' "$TMP/out" && grep -q '"epochs": 3' "$TMP/out"; then
    ok "inspect prints the parameter total, the spectra and the training configuration"
else
    not_ok "inspect: exit $rc"
fi

# Fashion-MNIST's names are recorded (the data set's own, not digits).
BACKPROP_FASHION_DIR=$DATA run train --data fashion --layers 16,8,10 --epochs 1 \
    --save "$MDIR/f.st"
run inspect --model "$MDIR/f.st"
if [[ $rc -eq 0 ]] && grep -q '^classes  *T-shirt/top,Trouser,Pullover,.*,Ankle boot$' "$TMP/out"
then
    ok "a model trained with --data fashion records Fashion-MNIST's class names"
else
    not_ok "fashion class names: exit $rc, $(grep classes "$TMP/out")"
fi
expect_fail 1 "inspect --model of a directory" "--model: '$MDIR' is a directory" \
    inspect --model "$MDIR"
flip_last_bit "$MODEL" "$MDIR/flipped.st"
run inspect --model "$MDIR/flipped.st"
if [[ $rc -eq 1 ]] && has_message "$MDIR/flipped.st" && has_message "CRC" && [[ ! -s $TMP/out ]]
then
    ok "inspect refuses a model with one bit flipped (its CRC), naming the file (exit 1)"
else
    not_ok "inspect on a flipped model: exit $rc"
fi

# ---- the memory limit ---------------------------------------------------------------------
# A net whose plan exceeds --max-memory is refused before anything is allocated, with the bytes.
run train --data "$DATA" --layers 16,30000,30000,10 --epochs 1 --max-memory 1G
if [[ $rc -eq 1 ]] && has_message "[16,30000,30000,10] net planned for 10 columns needs" &&
    has_message "bytes" && no_training; then
    ok "a net over --max-memory exits 1 stating the bytes it needs"
else
    not_ok "--max-memory 1G with a 7 GB net: exit $rc"
fi
expect_fail 2 "--max-memory 12x" "'12x' is not a size" train --max-memory 12x
expect_fail 2 "--max-memory 0" "--max-memory: 0 is out of range (1 byte .. 16 EiB)" \
    train --max-memory 0
expect_fail 2 "--max-memory 2^74" "--max-memory: 17179869184T is out of range (1 byte .. 16 EiB)" \
    train --max-memory 17179869184T

# ---- OpenBLAS's kernels ------------------------------------------------------------------
# A core the user names stays: no restart, no second-guessing, and openblas-core is silent.
OPENBLAS_CORETYPE=Prescott run train --data "$DATA" --layers 16,8,10 --epochs 1 --threads 1
if [[ $rc -eq 0 ]] && head -n 1 "$TMP/out" | grep -q '  openblas Prescott$'; then
    ok "a user's OPENBLAS_CORETYPE is kept and named in the first line"
else
    not_ok "OPENBLAS_CORETYPE=Prescott: exit $rc, first line: $(head -n 1 "$TMP/out")"
fi
OPENBLAS_CORETYPE=Prescott run openblas-core
if [[ $rc -eq 0 && ! -s $TMP/out ]]; then
    ok "openblas-core says nothing when OPENBLAS_CORETYPE is set"
else
    not_ok "openblas-core with OPENBLAS_CORETYPE set: exit $rc"
fi
# ---- checkpoints, resume, rollback ------------------------------------------------------
CK=$TMP/ckpt
mkdir -p "$CK"
ck_train=(train --data "$DATA" --layers 16,8,10 --threads 1 --optimizer adam --eta 0.01
    --batch 4)
# A run checkpointed after epoch 2 and resumed to epoch 4 ends as the straight 4-epoch run does:
# the same figures to the last digit (one thread: bit for bit).
run "${ck_train[@]}" --epochs 4 --summary-json "$CK/straight.json"
straight_rc=$rc
run "${ck_train[@]}" --epochs 2 --checkpoint "$CK/run.ckpt" --checkpoint-every 2
first_rc=$rc
run train --data "$DATA" --resume "$CK/run.ckpt" --epochs 4 --threads 1 \
    --summary-json "$CK/resumed.json"
if [[ $straight_rc -eq 0 && $first_rc -eq 0 && $rc -eq 0 ]] &&
    grep -q "resumed from $CK/run.ckpt at epoch 2" "$TMP/out" &&
    python3 -c 'import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
for k in ("test_accuracy", "validation_accuracy", "epochs"):
    assert a[k] == b[k], (k, a[k], b[k])
assert b["config"]["optimizer"] == "adam", b["config"]
' "$CK/straight.json" "$CK/resumed.json"; then
    ok "--checkpoint after epoch 2 and --resume to epoch 4 match the straight run"
else
    not_ok "checkpoint and resume: exit $straight_rc/$first_rc/$rc"
fi
# The checkpoint is a model file too.
run eval --model "$CK/run.ckpt" --data "$DATA"
if [[ $rc -eq 0 ]]; then ok "eval reads a checkpoint as its model"; else not_ok "eval of a checkpoint: exit $rc"; fi
expect_fail 2 "--resume with a flag that changes the run" \
    "--resume: --eta would change the resumed run" \
    train --data "$DATA" --resume "$CK/run.ckpt" --eta 0.1
expect_fail 2 "--checkpoint-every without --checkpoint" "give --checkpoint FILE too" \
    train --data "$DATA" --checkpoint-every 2
expect_fail 2 "--on-diverge with an unknown action" "--on-diverge: 'retry' is not stop or rollback" \
    train --data "$DATA" --on-diverge retry
expect_fail 2 "--checkpoint-every 0" "--checkpoint-every" train --data "$DATA" \
    --checkpoint "$CK/x.ckpt" --checkpoint-every 0
printf 'not a checkpoint' >"$CK/bad.ckpt"
expect_fail 1 "--resume of a file that is not one" "bad.ckpt" \
    train --data "$DATA" --resume "$CK/bad.ckpt"
run "${ck_train[@]}" --epochs 1 --save "$CK/model.st"
expect_fail 1 "--resume of a model file" "not a checkpoint" \
    train --data "$DATA" --resume "$CK/model.st"
# A run that diverges rolls back to its last good epoch with half the rate, three times at
# most, then fails as it would have; the last checkpoint written stays whole.
run train --data "$DATA" --layers 16,8,10 --hidden-act relu --output linear --cost quadratic \
    --eta 1e30 --epochs 3 --threads 1 --on-diverge rollback --checkpoint "$CK/div.ckpt"
if [[ $rc -eq 1 ]] && [[ $(grep -c '^rollback [123] of 3: ' "$TMP/out") -eq 3 ]] &&
    has_message "diverged" && grep -q 'with eta 1.25e+29' "$TMP/out"; then
    ok "--on-diverge rollback: three rollbacks halving eta, then the failure (exit 1)"
else
    not_ok "--on-diverge rollback: exit $rc, $(grep -c '^rollback' "$TMP/out") rollbacks"
fi

# Left to itself on a CPU with AVX2 and FMA, training never runs OpenBLAS's SSE or AVX-only
# kernels: where OpenBLAS does not know the CPU, the tool restarts itself with fitting ones.
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
if [[ $flags == *" avx2 "* && $flags == *" fma "* ]]; then
    env -u OPENBLAS_CORETYPE "$BIN" train --data "$DATA" --layers 16,8,10 --epochs 1 \
        --threads 1 >"$TMP/out" 2>"$TMP/err"
    rc=$?
    core=$(head -n 1 "$TMP/out" | sed -n 's/.*  openblas \([A-Za-z0-9]*\).*/\1/p')
    case ${core,,} in
    skylakex | cooperlake | sapphirerapids | haswell | zen)
        ok "an AVX2 CPU trains with wide OpenBLAS kernels ($core)" ;;
    *) not_ok "an AVX2 CPU trained with OpenBLAS's '$core' kernels (exit $rc)" ;;
    esac
fi

# ---- conv nets: train --arch ---------------------------------------------------------------
# The 4x4 images as one plane: a 3x3 conv leaves 2x2 planes, the 2x2 max pool one value each.
ARCH=conv:4x3x3,maxpool:2,dense:10:softmax
ADIR=$TMP/arch
mkdir -p "$ADIR"
run train --data "$DATA" --arch "$ARCH" --cost log-likelihood --epochs 3 --eta 0.5 --threads 1 \
    --save "$ADIR/m.st" --checkpoint "$ADIR/c.ck" --summary-json "$ADIR/train.json"
arch_acc=$(sed -n 's/^test accuracy \(.*\)$/\1/p' "$TMP/out")
spec=conv:4x3x3:relu:s1:p0,maxpool:2:s2,dense:10:softmax
if [[ $rc -eq 0 && -s $ADIR/m.st && -n $arch_acc ]] &&
    grep -q "^backprop .*  input 1x4x4  arch $spec  cost log-likelihood " "$TMP/out" &&
    grep -q "\"arch\": \"$spec\"" "$ADIR/train.json" && ! grep -q '"hidden_act"' "$ADIR/train.json"
then
    ok "train --arch trains a conv net, its spec in the header and the summary"
else
    not_ok "train --arch: exit $rc"
fi
run inspect --model "$ADIR/m.st"
if [[ $rc -eq 0 ]] && grep -q "^architecture  $spec\$" "$TMP/out"; then
    ok "inspect shows the conv model's architecture"
else
    not_ok "inspect on a conv model: exit $rc"
fi
run eval --model "$ADIR/m.st" --data "$DATA" --threads 1
eval_arch=$(sed -n 's/^accuracy \(.*\)  cost .*$/\1/p' "$TMP/out")
if [[ $rc -eq 0 && $eval_arch == "$arch_acc" ]]; then
    ok "eval of the conv model gives train's test accuracy ($eval_arch)"
else
    not_ok "eval on a conv model: exit $rc, accuracy '$eval_arch', train's '$arch_acc'"
fi
# predict's argmax is the class eval counts: the same hits, row by row.
run predict --model "$ADIR/m.st" --data "$DATA" --threads 1
hits=$(awk -F, 'NR > 1 && $2 == $3 { c++ } NR > 1 { n++ } END { printf "%d/%d", c, n }' "$TMP/out")
if [[ $rc -eq 0 && "($hits)" == "${eval_arch#* }" ]]; then
    ok "predict on the conv model scores as eval does ($hits)"
else
    not_ok "predict on a conv model: exit $rc, $hits against eval's $eval_arch"
fi
run train --data "$DATA" --resume "$ADIR/c.ck" --epochs 4 --threads 1
if [[ $rc -eq 0 ]] && grep -q "arch $spec .* resumed from $ADIR/c.ck at epoch 3" "$TMP/out" &&
    grep -q '^epoch 4/4 ' "$TMP/out" && ! grep -q '^epoch 3/' "$TMP/out"; then
    ok "a conv run resumes from its checkpoint"
else
    not_ok "--resume of a conv run: exit $rc"
fi
expect_fail 2 "--resume with --arch" "--resume: --arch would change the resumed run" \
    train --data "$DATA" --resume "$ADIR/c.ck" --arch dense:10
for flag in "--layers 16,10" "--hidden-act relu" "--output softmax" "--dropout 0.5" "--batchnorm"
do
    # shellcheck disable=SC2086 # the flag and its value are two words
    expect_fail 2 "--arch with ${flag%% *}" "--arch and ${flag%% *}: --arch names every layer" \
        train --data "$DATA" --arch dense:10 $flag
done
expect_fail 2 "--arch's output narrower than the classes" \
    "--arch: the output layer has 5 neurons but '$DATA' has 10 classes" \
    train --data "$DATA" --arch conv:2x3x3,dense:5 --epochs 1
# Every malformed token: its position, its text and what was expected, before any data is read.
while IFS='|' read -r arch text; do
    expect_fail 2 "--arch $arch" "--arch: $text" train --data "$DATA" --arch "$arch" --epochs 1
    if ! no_training; then not_ok "--arch $arch trained"; fi
done <<'LIST'
conv:0x5x5|layers spec: entry 1 of 'conv:0x5x5': layer spec 'conv:0x5x5': conv: '0x5x5' has a zero count
dense:10,conv:20x5|layers spec: entry 2 of 'dense:10,conv:20x5': layer spec 'conv:20x5': conv: '20x5' is not KxHxW
conv:20x5x5:bogus|layers spec: entry 1 of 'conv:20x5x5:bogus': layer spec 'conv:20x5x5:bogus': conv: 'bogus' is not an activation
conv:20x5x5:s0|layers spec: entry 1 of 'conv:20x5x5:s0': layer spec 'conv:20x5x5:s0': conv: 's0' is not a stride sS with S >= 1
maxpool:0|layers spec: entry 1 of 'maxpool:0': layer spec 'maxpool:0': maxpool: '0' does not start with a window size N >= 1
conv:2x3x3,maxpool:2:s0|layers spec: entry 2 of 'conv:2x3x3,maxpool:2:s0': layer spec 'maxpool:2:s0': maxpool: 's0' is not a stride sS with S >= 1
dense:0|layers spec: entry 1 of 'dense:0': layer spec 'dense:0': dense: '0' does not start with a width of 1 to
dropout:1|layers spec: entry 1 of 'dropout:1': layer spec 'dropout:1': dropout: '1' is not a drop probability in [0, 1)
frob:3,dense:10|layers spec: entry 1 of 'frob:3,dense:10': layer spec 'frob:3': unknown kind 'frob' (known:
conv:2x3x3,,dense:10|layers spec: entry 2 of 'conv:2x3x3,,dense:10' is empty
conv:2x3x3,dense:10,|layers spec: entry 3 of 'conv:2x3x3,dense:10,' is empty
conv:2x5x5,dense:10|layer 1: conv: a 5 x 5 window (padding 0) is larger than its 4 x 4 input
conv:2x3x3,maxpool:3,dense:10|layer 2: maxpool: a 3 x 3 window (padding 0) is larger than its 2 x 2 input
conv:2x3x3:softmax,dense:10|layers spec: entry 1 of 'conv:2x3x3:softmax,dense:10': layer spec 'conv:2x3x3:softmax': conv: softmax normalises a whole output column, which a convolution's
LIST

# ---- recurrent nets: train --arch lstm/gru --sequence ----------------------------------------
# The 4x4 images as 4 steps of their columns: the spec the model file keeps says so, and eval
# of that file reads them the same way (its accuracy is train's).
run train --data "$DATA" --arch gru:6,dense:10:softmax --sequence cols --cost log-likelihood \
    --optimizer adam --eta 0.01 --epochs 2 --threads 1 --save "$ADIR/r.st"
rnn_acc=$(sed -n 's/^test accuracy \(.*\)$/\1/p' "$TMP/out")
if [[ $rc -eq 0 && -n $rnn_acc ]] &&
    grep -q "^backprop .*  input 1x4x4  arch gru:6:cols,dense:10:softmax  " "$TMP/out"; then
    ok "train --arch gru:6 --sequence cols trains a GRU reading columns"
else
    not_ok "train --arch gru:6 --sequence cols: exit $rc"
fi
run eval --model "$ADIR/r.st" --data "$DATA" --threads 1
if [[ $rc -eq 0 && "$(sed -n 's/^accuracy \(.*\)  cost .*$/\1/p' "$TMP/out")" == "$rnn_acc" ]]
then
    ok "eval of the GRU model reads by columns again and gives train's accuracy ($rnn_acc)"
else
    not_ok "eval of the GRU model: exit $rc, train's accuracy '$rnn_acc'"
fi
# Resumed through time: 2 epochs, a checkpoint, a third epoch from it; the net is the 3-epoch
# run's to the bit (its predictions on every test image are the same text). Clipping by norm,
# which long sequences' gradients may need, is on.
rnn=(train --data "$DATA" --arch lstm:6,dense:10:softmax --sequence cols --cost log-likelihood
     --optimizer adam --eta 0.01 --clip-norm 5 --threads 1)
run "${rnn[@]}" --epochs 3 --save "$ADIR/r3.st"
run "${rnn[@]}" --epochs 2 --checkpoint "$ADIR/r.ck"
run train --data "$DATA" --resume "$ADIR/r.ck" --epochs 3 --threads 1 --save "$ADIR/r2+1.st"
resume_rc=$rc
run predict --model "$ADIR/r3.st" --data "$DATA" --threads 1 --out "$ADIR/r3.csv"
run predict --model "$ADIR/r2+1.st" --data "$DATA" --threads 1 --out "$ADIR/r2+1.csv"
if [[ $resume_rc -eq 0 && $rc -eq 0 && -s $ADIR/r3.csv ]] && cmp -s "$ADIR/r3.csv" "$ADIR/r2+1.csv"
then
    ok "an LSTM run resumed from its epoch-2 checkpoint predicts as the 3-epoch run, bit for bit"
else
    not_ok "LSTM resume: exit $resume_rc, predict exit $rc, outputs differ or missing"
fi
run train --data "$DATA" --arch lstm:5,dense:10:softmax --sequence rows --cost log-likelihood \
    --epochs 1 --threads 1
if [[ $rc -eq 0 ]] && grep -q "  arch lstm:5,dense:10:softmax  " "$TMP/out"; then
    ok "--sequence rows is the layers' default order"
else
    not_ok "train --arch lstm:5 --sequence rows: exit $rc"
fi
expect_fail 2 "--sequence without --arch" "--sequence: it says how --arch's lstm and gru" \
    train --data "$DATA" --sequence cols
expect_fail 2 "--sequence with no recurrent layer" "--arch 'dense:10' has no lstm or gru layer" \
    train --data "$DATA" --arch dense:10 --sequence cols
expect_fail 2 "--sequence against a layer's own order" \
    "--sequence cols and --arch's 'lstm:5:rows': the layer names its own order" \
    train --data "$DATA" --arch lstm:5:rows,dense:10:softmax --sequence cols
expect_fail 2 "--sequence diagonal" "--sequence: 'diag' is not rows or cols" \
    train --data "$DATA" --arch lstm:5,dense:10 --sequence diag

# ---- data expansion: train --expand --------------------------------------------------------
# Each of the 200 training images and its four one-pixel shifts; validation and test as they are.
run train --data "$DATA" --arch "$ARCH" --cost log-likelihood --epochs 2 --eta 0.5 --threads 1 \
    --expand --checkpoint "$ADIR/e.ck" --summary-json "$ADIR/e.json"
if [[ $rc -eq 0 ]] && grep -q "^data $DATA: 1000 train, 40 validation, 50 test, " "$TMP/out" &&
    grep -q '"expand": true' "$ADIR/e.json" && grep -q '"expand": false' "$ADIR/train.json"; then
    ok "--expand trains on 5x the training images, validation and test unchanged"
else
    not_ok "--expand: exit $rc"
fi
run train --data "$DATA" --resume "$ADIR/e.ck" --epochs 3 --threads 1
if [[ $rc -eq 1 ]] && has_message "the run trained on 1000 samples, the training set given has 200"
then
    ok "an expanded run does not resume without --expand (exit 1)"
else
    not_ok "resume of an expanded run without --expand: exit $rc"
fi
run train --data "$DATA" --resume "$ADIR/e.ck" --epochs 3 --threads 1 --expand
if [[ $rc -eq 0 ]] && grep -q '^epoch 3/3 ' "$TMP/out"; then
    ok "an expanded run resumes with --expand"
else
    not_ok "resume of an expanded run with --expand: exit $rc"
fi
expect_fail 2 "--expand=1" "option '--expand' takes no value" train --expand=1

# ---- every command's flags: accepted, documented, in the reference -----------------------
# `backprop help --options CMD` lists the long options CMD's parser accepts, from the table
# getopt_long is given. Each must be taken by the binary (a value-taking one alone "needs a
# value", any other given a value "takes no value": neither runs anything), have its line in
# CMD --help and be named in CMD's section of docs/CLI.md, so a flag added without help or
# reference fails here. And every command refuses an unknown flag, a flag without its value
# and, where it takes numbers, a bad one, each with status 2 and a message.

DOC=$(cd "$(dirname "$0")/.." && pwd)/docs/CLI.md
# doc_section CMD: the lines of docs/CLI.md from the heading naming CMD to the next heading.
doc_section() {
    awk -v cmd="$1" '/^## /{on = ($0 ~ "(^|[^a-z])" cmd "([^a-z]|$)")} on' "$DOC" 2>/dev/null
}
# A numeric flag of each command that has one, and a value it must refuse.
declare -A bad_number=([train]="--batch 1x" [eval]="--threads -2" [predict]="--limit 0x10"
    [bench]="" [inspect]="" [export]="" [plot]="")

# The commands as the binary lists them, so a new one is held to the same rules.
commands=$("$BIN" --help | sed -n '/^commands:/,/^$/p' | awk 'NR > 1 && NF {print $1}' |
    grep -vx -e help -e openblas-core -e --version)
if [[ $(wc -w <<<"$commands") -ge 4 ]]; then
    ok "backprop --help lists the commands: $(echo $commands)"
else
    not_ok "backprop --help lists the commands: '$commands'"
fi
for cmd in $commands; do
    "$BIN" help --options "$cmd" >"$TMP/opts-$cmd" 2>"$TMP/err"
    rc=$?
    if [[ $rc -ne 0 || ! -s $TMP/opts-$cmd ]]; then
        not_ok "help --options $cmd: exit $rc, $(head -n 1 "$TMP/err")"
        continue
    fi
    "$BIN" "$cmd" --help >"$TMP/help-$cmd" 2>/dev/null
    doc_section "$cmd" >"$TMP/doc-$cmd"
    refused='' undocumented='' unreferenced='' first_valued=''
    while read -r opt value; do
        if [[ -n $value ]]; then
            [[ -z $first_valued ]] && first_valued=$opt
            run "$cmd" "$opt"
            [[ $rc -eq 2 ]] && has_message "$opt needs a value" || refused+=" $opt"
        elif [[ $opt != --help ]]; then
            run "$cmd" "$opt=1"
            [[ $rc -eq 2 ]] && has_message "option '$opt' takes no value" || refused+=" $opt"
        fi
        grep -q -- "^  \(-., \)\?$opt\( \|$\)" "$TMP/help-$cmd" || undocumented+=" $opt"
        [[ $opt == --help ]] || grep -qF -- "$opt" "$TMP/doc-$cmd" || unreferenced+=" $opt"
    done <"$TMP/opts-$cmd"
    n_opts=$(wc -l <"$TMP/opts-$cmd")
    if [[ -z $refused ]] && grep -qx -- '--help' "$TMP/opts-$cmd"; then
        ok "$cmd: its $n_opts long options are all taken, each with or without its value"
    else
        not_ok "$cmd: options the parser does not take as listed:$refused"
    fi
    if [[ -z $undocumented ]]; then
        ok "$cmd --help documents each of its $n_opts long options"
    else
        not_ok "$cmd --help lacks:$undocumented"
    fi
    if [[ -s $TMP/doc-$cmd && -z $unreferenced ]]; then
        ok "docs/CLI.md's $cmd section names each of its options"
    else
        not_ok "docs/CLI.md ($DOC) lacks a $cmd section or, in it:$unreferenced"
    fi
    expect_fail 2 "$cmd --no-such-flag" "unknown option '--no-such-flag'" "$cmd" --no-such-flag
    if [[ -n $first_valued ]]; then
        expect_fail 2 "$cmd $first_valued without its value" "$first_valued needs a value" \
            "$cmd" "$first_valued"
    fi
    if [[ -n ${bad_number[$cmd]} ]]; then
        read -r flag value <<<"${bad_number[$cmd]}"
        expect_fail 2 "$cmd $flag $value" "$flag: '$value' is not a whole number" \
            "$cmd" "$flag" "$value"
    fi
done

echo "1..$n"
if [[ $failures -ne 0 ]]; then
    echo "# $failures of $n checks failed"
    exit 1
fi
exit 0
