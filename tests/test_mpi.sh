#!/usr/bin/env bash
# test_mpi.sh BACKPROP: `mpirun -np 2 backprop train` against one process, on real MNIST.
#
# - 100 steps (the first 1,200 training images: 1,000 train and 200 validate, batch 10) on 2
#   ranks give one rank's training cost to 1e-5 relative, for plain SGD, dropout (its masks
#   are keyed by the column's place in the whole mini-batch, not the rank's), Adam, ReLU, a
#   conv net and an LSTM (each kind scales its gradient by the rank's share),
#   and the overlapped per-layer sums give the one call's cost exactly;
# - a 3-epoch run on all of MNIST ends within 0.1 percentage point (10 images) of one rank's
#   test accuracy;
# - a checkpoint written by 2 ranks resumes on 1, and one written by 1 resumes on 2, each
#   continuing as the uninterrupted run does (1e-5);
# - a failure on one rank (its data directory missing: mpirun's MPMD form gives rank 1 other
#   arguments), a divergence, a SIGTERM that reaches one rank only and a rank killed outright
#   end every rank with one clear message and status, and never hang (each run has a timeout).
#
# TAP on stdout; skipped, with the reason, when the tool was built without MPI or mpirun is
# missing. Open MPI refuses root without --allow-run-as-root, and in containers its shared
# memory transport may need the single-copy mechanism off.
set -uo pipefail

BIN=$(realpath "$1")
n=0
failures=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"
    sed 's/^/#   stdout: /' "$TMP/out" 2>/dev/null | tail -n 5
    sed 's/^/#   stderr: /' "$TMP/err" 2>/dev/null | tail -n 5
}

if ! command -v mpirun >/dev/null 2>&1; then
    echo "1..0 # SKIP mpirun is not installed (scripts/install-deps.sh installs openmpi-bin)"
    exit 0
fi
if ! "$BIN" --version | grep -q 'mpi MPI'; then
    echo "1..0 # SKIP this backprop was built without MPI (meson option mpi; libopenmpi-dev)"
    exit 0
fi

TMP=$(mktemp -d /tmp/test_mpi.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(timeout 300 mpirun --allow-run-as-root --oversubscribe)

# The MNIST the other suites use (scripts/fetch-mnist.sh).
MNIST=${BACKPROP_MNIST_DIR:-${BACKPROP_DATA_DIR:-$HOME/.cache/backprop}/mnist}
if [[ ! -f $MNIST/train-images-idx3-ubyte && ! -f $MNIST/train-images-idx3-ubyte.gz ]]; then
    echo "1..1"
    echo "not ok 1 - MNIST in $MNIST (scripts/fetch-mnist.sh)"
    exit 1
fi
raw() { if [[ -f $1 ]]; then cat "$1"; else gzip -dc "$1.gz"; fi; }
be32() { printf "%08x" "$1" | xxd -r -p; }

# The first 1,200 training images (1,000 train, 200 validate) and the whole test set.
SUB=$TMP/sub
mkdir -p "$SUB"
{ printf '\000\000\010\003'; be32 1200; be32 28; be32 28
  raw "$MNIST/train-images-idx3-ubyte" | tail -c +17 | head -c $((1200 * 784)); } \
    >"$SUB/train-images-idx3-ubyte"
{ printf '\000\000\010\001'; be32 1200
  raw "$MNIST/train-labels-idx1-ubyte" | tail -c +9 | head -c 1200; } >"$SUB/train-labels-idx1-ubyte"
for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    raw "$MNIST/$f" >"$SUB/$f"
done

# field FILE.jsonl LINE KEY: a number from the epoch log.
field() { sed -n "${2}p" "$1" | sed -n "s/.*\"$3\": \([-0-9.e+]*\).*/\1/p"; }
# close A B TOL: |A - B| <= TOL |A|
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d;
    m = a < 0 ? -a : a; exit !(a != "" && b != "" && d <= t * m) }'; }

one() { "$BIN" train "$@" --threads 1 >"$TMP/out" 2>"$TMP/err"; }
two() { "${MPIRUN[@]}" -np 2 "$BIN" train "$@" --progress never >"$TMP/out" 2>"$TMP/err"; }

echo "1..17"

# ---- equivalence ----------------------------------------------------------------------------
cases=(
    "--layers 784,30,10 --eta 0.5"
    "--layers 784,30,10 --eta 0.5 --dropout 0.2"
    "--layers 784,30,10 --optimizer adam --eta 0.001"
    "--layers 784,100,10 --hidden-act relu --output softmax --cost log-likelihood --init he --eta 0.1"
    # Every layer kind must scale its gradient by the share (the target's alpha) as dense does.
    "--arch conv:6x5x5:relu,maxpool:2,dense:10:softmax --cost log-likelihood --eta 0.05"
    "--arch lstm:16,dense:10:softmax --cost log-likelihood --eta 0.05"
)
for c in "${cases[@]}"; do
    # shellcheck disable=SC2086 # the case's flags are words
    one --data "$SUB" --epochs 1 --batch 10 --seed 7 --log "$TMP/one.jsonl" --norm-samples 0 $c
    rc1=$?
    # shellcheck disable=SC2086
    two --data "$SUB" --epochs 1 --batch 10 --seed 7 --log "$TMP/two.jsonl" --norm-samples 0 $c
    rc2=$?
    a=$(field "$TMP/one.jsonl" 1 train_cost) b=$(field "$TMP/two.jsonl" 1 train_cost)
    if [[ $rc1 -eq 0 && $rc2 -eq 0 ]] && close "$a" "$b" 1e-5 &&
        grep -q '^backprop .* ranks 2 (MPI' "$TMP/out"; then
        ok "100 steps of $c: 2 ranks' cost $b, one rank's $a (1e-5)"
    else
        not_ok "100 steps of $c: exit $rc1 / $rc2, cost $a / $b"
    fi
done

# The overlapped sums (a layer's sum started as soon as its gradient is ready) add the same
# floats: the same cost to the last digit as the one call's.
c=${cases[3]}
# shellcheck disable=SC2086
two --data "$SUB" --epochs 1 --batch 10 --seed 7 --log "$TMP/one-call.jsonl" --norm-samples 0 $c
# shellcheck disable=SC2086
BACKPROP_MPI_OVERLAP=1 "${MPIRUN[@]}" -x BACKPROP_MPI_OVERLAP -np 2 "$BIN" train --data "$SUB" \
    --epochs 1 --batch 10 --seed 7 --log "$TMP/overlap.jsonl" --norm-samples 0 $c \
    --progress never >"$TMP/out" 2>"$TMP/err"
rc=$?
a=$(field "$TMP/one-call.jsonl" 1 train_cost) b=$(field "$TMP/overlap.jsonl" 1 train_cost)
if [[ $rc -eq 0 && -n $a && $a == "$b" ]]; then
    ok "BACKPROP_MPI_OVERLAP=1: per-layer sums give the one call's cost to the last digit ($b)"
else
    not_ok "overlapped sums: exit $rc, cost '$b' against one call's '$a'"
fi

accuracy() { sed -n 's/^test accuracy .*(\([0-9]*\)\/10000)$/\1/p' "$TMP/out"; }
flags=(--data "$MNIST" --layers 784,30,10 --eta 0.5 --epochs 3 --batch 10 --seed 7)
one "${flags[@]}"
a=$(accuracy)
two "${flags[@]}" --summary-json "$TMP/summary.json"
b=$(accuracy)
if [[ -n $a && -n $b ]] && ((a - b <= 10 && b - a <= 10)); then
    ok "3 epochs of all MNIST: 2 ranks $b / 10000, one rank $a (within 0.1 point)"
else
    not_ok "3 epochs of all MNIST: 2 ranks '$b', one rank '$a'"
fi
if grep -q '^communication [0-9.]* s  [0-9.]*% of training (rank 0 of 2)$' "$TMP/out" &&
    [[ $(grep -c '^test accuracy' "$TMP/out") -eq 1 ]] &&
    grep -q '^  "ranks": 2,$' "$TMP/summary.json" &&
    grep -Eq '^  "communication_seconds": [0-9.e-]+,$' "$TMP/summary.json" &&
    ! grep -q '^  "communication_seconds": 0,$' "$TMP/summary.json" &&
    ! grep -q 'parameters differed' "$TMP/err"; then
    ok "rank 0 alone prints: one test line, the communication share; the summary says 2 ranks; the ranks' parameters agreed after every epoch"
else
    not_ok "the 2-rank run's output"
fi

# ---- checkpoints across rank counts -----------------------------------------------------------
# Adam: its moments are part of the checkpoint. (Momentum 0.9 at eta 0.5 is chaotic here: a
# rounding-level difference, fused against unfused SGD on one rank alike, grows to a percent
# in 200 steps, so it could not tell a wrong resume from a right one.)
run=(--data "$SUB" --layers 784,30,10 --eta 0.001 --batch 10 --seed 3 --optimizer adam)
two "${run[@]}" --epochs 2 --log "$TMP/straight.jsonl" --norm-samples 0
two "${run[@]}" --epochs 1 --checkpoint "$TMP/two.ck"
"$BIN" train --data "$SUB" --resume "$TMP/two.ck" --epochs 2 --threads 1 \
    --log "$TMP/resumed1.jsonl" >"$TMP/out" 2>"$TMP/err"
rc=$?
a=$(field "$TMP/straight.jsonl" 2 train_cost) b=$(field "$TMP/resumed1.jsonl" 1 train_cost)
if [[ $rc -eq 0 ]] && close "$a" "$b" 1e-5 && grep -q 'resumed from .* at epoch 1' "$TMP/out"; then
    ok "a 2-rank checkpoint resumes on 1 rank: epoch 2's cost $b, the 2-rank run's $a"
else
    not_ok "2-rank checkpoint on 1 rank: exit $rc, cost '$b' against '$a'"
fi
one "${run[@]}" --epochs 1 --checkpoint "$TMP/one.ck"
"${MPIRUN[@]}" -np 2 "$BIN" train --data "$SUB" --resume "$TMP/one.ck" --epochs 2 \
    --log "$TMP/resumed2.jsonl" --progress never >"$TMP/out" 2>"$TMP/err"
rc=$?
b=$(field "$TMP/resumed2.jsonl" 1 train_cost)
if [[ $rc -eq 0 ]] && close "$a" "$b" 1e-5 && grep -q 'ranks 2 .*resumed from' "$TMP/out"; then
    ok "a 1-rank checkpoint resumes on 2 ranks: epoch 2's cost $b, against $a"
else
    not_ok "1-rank checkpoint on 2 ranks: exit $rc, cost '$b' against '$a'"
fi

# ---- failures end every rank -------------------------------------------------------------------
# Rank 1 is given a data directory that does not exist, rank 0 the real one.
"${MPIRUN[@]}" -np 1 "$BIN" train --data "$SUB" --epochs 1 : \
    -np 1 "$BIN" train --data "$TMP/nowhere" --epochs 1 >"$TMP/out" 2>"$TMP/err"
rc=$?
if [[ $rc -eq 1 ]] && grep -q "^backprop: rank 1 of 2: .*nowhere" "$TMP/err" &&
    ! grep -q '^epoch' "$TMP/out"; then
    ok "a failure on rank 1 alone (its data missing) ends both ranks with its message (exit 1)"
else
    not_ok "rank 1's missing data: exit $rc"
fi
two --data "$SUB" --layers 784,30,10 --epochs 2 --eta 1e30 --output linear --cost quadratic
rc=$?
if [[ $rc -eq 1 ]] && [[ $(grep -c 'diverged' "$TMP/err") -eq 1 ]]; then
    ok "a divergence stops both ranks with one message (exit 1)"
else
    not_ok "divergence on 2 ranks: exit $rc, $(grep -c 'diverged' "$TMP/err") messages"
fi
if [[ $rc -eq 1 ]] && ! grep -q '^backprop: rank 1' "$TMP/err"; then
    ok "the ranks agree on the divergence: rank 0's message only, not rank 1's as well"
else
    not_ok "divergence reported by rank 1 too"
fi

# A long run; its rank-1 process, found by the marker seed and Open MPI's rank variable.
start_long() {
    "${MPIRUN[@]}" -np 2 "$BIN" train --data "$SUB" --layers 784,30,10 --epochs 100000 \
        --seed 424242 --progress never --checkpoint "$TMP/long.ck" "$@" >"$TMP/out" 2>"$TMP/err" &
    job=$!
    rank1=
    for ((i = 0; i < 300; i++)); do
        if grep -q '^epoch ' "$TMP/out" 2>/dev/null; then
            for p in $(pgrep -f 'seed 424242'); do
                if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'
                then
                    rank1=$p
                fi
            done
            [[ -n $rank1 ]] && return 0
        fi
        sleep 0.1
    done
    return 1
}
if start_long; then
    kill -TERM "$rank1"
    wait "$job"
    rc=$?
    if [[ $rc -eq 143 ]] && grep -q '^interrupted by SIGTERM: stopped ' "$TMP/out" &&
        grep -q '^test accuracy' "$TMP/out" && [[ -s $TMP/long.ck ]]; then
        ok "SIGTERM to rank 1 alone: both ranks stop after the same mini-batch, rank 0 reports and checkpoints (exit 143)"
    else
        not_ok "SIGTERM to rank 1: exit $rc"
    fi
else
    kill "$job" 2>/dev/null
    wait "$job"
    not_ok "the long run did not start (or its rank 1 was not found)"
fi
if start_long; then
    kill -KILL "$rank1"
    t0=$SECONDS
    wait "$job"
    rc=$?
    if [[ $rc -ne 0 && $rc -ne 124 ]] && ((SECONDS - t0 < 60)); then
        ok "a rank killed outright ends the job in $((SECONDS - t0)) s (mpirun's exit $rc), no hang"
    else
        not_ok "killed rank 1: exit $rc after $((SECONDS - t0)) s"
    fi
else
    kill "$job" 2>/dev/null
    wait "$job"
    not_ok "the long run did not start (or its rank 1 was not found)"
fi

# Without mpirun the MPI build trains alone, as the build without MPI does.
one --data "$SUB" --layers 784,30,10 --epochs 1
if [[ $? -eq 0 ]] && ! grep -q 'ranks' "$TMP/out"; then
    ok "started without mpirun, the MPI build trains alone"
else
    not_ok "the MPI build without mpirun"
fi

[[ $n -eq 17 ]] || { echo "# ran $n tests, planned 17"; exit 1; }
exit $((failures > 0))
