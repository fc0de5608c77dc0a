#!/usr/bin/env bash
# mpi.sh [BACKPROP [EPOCHS]]: data-parallel train against one process, same machine, same run.
#
# For [784,1024,1024,10] at B = 256 and [784,100,10] at B = 32 on MNIST: one epoch (EPOCHS,
# default 1, each timed by train itself) as
#   - one rank with 1 thread,
#   - one rank with 2 threads (the net's team and OpenBLAS's),
#   - `mpirun --oversubscribe -np 2`, one thread (and one BLAS thread) per rank, the gradient
#     summed in one call after backpropagation (the default),
#   - the same with BACKPROP_MPI_OVERLAP=1: each layer's sum started as soon as its gradient
#     is ready, overlapping the layers below,
# with the training time, samples/s and, for the MPI run, rank 0's seconds in the collective's
# sums (its waits for the other rank included) as a share of training. Plain SGD (its fused
# update is off under MPI, so the 1-rank runs here are fused: what a user gets from each).
# Prints the CPU and one table row per run; numbers are this machine's, at this moment.
set -uo pipefail
BIN=${1:-build/backprop}
EPOCHS=${2:-1}
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $("$BIN" --version | tr '\n' ' ')"
echo "# $(date -u +%F), $("$BIN" train --help >/dev/null 2>&1 && git -C "$(dirname "$0")" describe --always --dirty 2>/dev/null)"
printf '| net | B | run | train s/epoch | samples/s | communication |\n|---|---|---|---|---|---|\n'
for net in "784,1024,1024,10 256 0.1" "784,100,10 32 0.1"; do
    read -r layers batch eta <<<"$net"
    common=(train --data mnist --layers "$layers" --batch "$batch" --eta "$eta"
            --epochs "$EPOCHS" --progress never --quiet)
    for how in "1 rank, 1 thread" "1 rank, 2 threads" "2 ranks, 1 thread each" \
        "2 ranks, overlapped sums"; do
        case $how in
        "1 rank, 1 thread") out=$("$BIN" "${common[@]}" --threads 1) ;;
        "1 rank, 2 threads") out=$("$BIN" "${common[@]}" --threads 2) ;;
        "2 ranks, 1 thread each")
            out=$(OPENBLAS_NUM_THREADS=1 "${MPIRUN[@]}" -np 2 "$BIN" "${common[@]}" --threads 1) ;;
        *) out=$(BACKPROP_MPI_OVERLAP=1 OPENBLAS_NUM_THREADS=1 "${MPIRUN[@]}" \
                 -x BACKPROP_MPI_OVERLAP -np 2 "$BIN" "${common[@]}" --threads 1) ;;
        esac
        seconds=$(sed -n 's/^training \([0-9.]*\) s .*/\1/p' <<<"$out")
        rate=$(sed -n 's/^training [0-9.]* s  \([0-9]*\) samples.*/\1/p' <<<"$out")
        comm=$(sed -n 's/^communication \([0-9.]*\) s  \([0-9.]*\)%.*/\1 s (\2%)/p' <<<"$out")
        per_epoch=$(awk -v s="$seconds" -v e="$EPOCHS" 'BEGIN { printf "%.2f", s / e }')
        printf '| [%s] | %s | %s | %s | %s | %s |\n' "$layers" "$batch" "$how" "$per_epoch" \
            "$rate" "${comm:--}"
    done
done
