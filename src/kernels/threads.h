/*
 * threads.h - how many threads OpenBLAS gets for each GEMM.
 *
 * OpenBLAS's thread count is one process-wide setting, and on the shapes of a training step two
 * threads are often SLOWER than one (measured with OpenBLAS 0.3.21, SkylakeX kernels: the NT
 * weight-gradient GEMM 100 x 784 x 32 takes 1.7x as long on two threads, 100 x 1024 x 10 takes
 * 3x). So the blas backend chooses per call, and changes OpenBLAS's setting only when the choice
 * differs from the last one.
 */
#ifndef BP_THREADS_H
#define BP_THREADS_H

#include "kernels/backend.h"

/* The threads (1 .. max_threads) for one sgemm call of this shape. */
int bp_gemm_threads(bp_trans ta, bp_trans tb, int m, int n, int k, int max_threads);

/* The ceiling for this thread's GEMMs: bp_get_threads(), unless this thread is a member of a
 * team splitting a step (parallel/team.h), where each member's GEMMs run on one thread. */
int bp_blas_thread_budget(void);
/* Set this thread's ceiling (0: back to bp_get_threads()); returns the previous setting. */
int bp_blas_set_thread_budget(int threads);

/* Make OpenBLAS use `threads` threads for the next calls (cheap when unchanged). */
void bp_blas_use_threads(int threads);

#endif
