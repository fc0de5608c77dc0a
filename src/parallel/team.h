/*
 * team.h - a fork-join team of threads for splitting one training step across cores.
 *
 * Why our own threads and not OpenBLAS's: OpenBLAS parallelises each GEMM on its own, by rows
 * of C, and on the thin shapes of a training step that costs more than it brings (a 10-row
 * output layer, a weight gradient with k = B). A step splits better by samples: each thread
 * runs the forward pass, BP1 and BP2 on its own columns of the mini-batch with single-threaded
 * GEMMs, meets the others at one barrier, then computes BP3/BP4 and the update for its own rows
 * of every weight matrix. Two synchronisations per step, no reductions, no false sharing.
 *
 * Waiting spins briefly (a step's phases are microseconds to milliseconds apart) and then
 * sleeps on a condition variable, so an idle team costs nothing.
 */
#ifndef BP_TEAM_H
#define BP_TEAM_H

#include "backprop.h"

/* More threads than this are not useful on the machines we target; the bound keeps per-thread
 * scratch (partial costs) in fixed arrays. */
#define BP_TEAM_MAX 64

typedef struct bp_team bp_team;

/* The work of one member: `member` is 0 (the caller) .. size - 1. */
typedef void (*bp_team_fn)(void *arg, int member, int size);

/* A team of `size` members: the caller and size - 1 new threads (1 <= size <= BP_TEAM_MAX).
 * BP_ENOMEM or BP_EINVAL when threads cannot be made; nothing is left behind then. */
bp_status bp_team_create(bp_team **out, int size);
void bp_team_free(bp_team *team);
int bp_team_size(const bp_team *team);

/* Run fn on every member, the caller as member 0, and return when all have finished. Every
 * member's writes are visible to the caller afterwards. Not reentrant. */
void bp_team_run(bp_team *team, bp_team_fn fn, void *arg);

/* Inside fn: wait until every member has reached this point; writes made before it by any
 * member are visible to all after it. */
void bp_team_barrier(bp_team *team);

/* The [begin, end) share of `member` when n items are split over `size` members, boundaries
 * rounded down to multiples of `align` (the last share takes the rest). */
static inline void bp_team_share(int n, int member, int size, int align, int *begin, int *end)
{
    long b = (long)n * member / size, e = (long)n * (member + 1) / size;
    b -= b % align;
    e = member == size - 1 ? n : e - e % align;
    *begin = (int)b;
    *end = (int)e;
}

#endif
