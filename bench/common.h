/*
 * common.h - what the benchmark programs share: timing statistics, the report header (CPU,
 * OpenBLAS version and core, threads, commit) and small output helpers.
 */
#ifndef BP_BENCH_COMMON_H
#define BP_BENCH_COMMON_H

#include <stddef.h>
#include <stdio.h>

#include "backprop.h"
#include "parallel/team.h"

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

typedef struct bench_stats {
    double median, best; /* seconds per repetition */
    int reps;
} bench_stats;

/* Sort v[0..n) ascending (for medians and quartiles). */
void bench_sort(double *v, int n);

/* Time fn(arg) `reps` times after `warmup` untimed calls. */
bench_stats bench_time(void (*fn)(void *), void *arg, int warmup, int reps);

/* One line naming the machine and the libraries: "# cpu ... | openblas 0.3.21 core Cooperlake |
 * threads 2 | commit abc123". In JSON mode, the same fields as a JSON object (no newline). */
void bench_header(FILE *out, int json, const char *threads_desc);

/* The CPU model name from /proc/cpuinfo, or "unknown". */
const char *bench_cpu_name(void);

/* "784,100,10" into out[] (at most max values, each in [lo, 2^20]). Returns the count, or 0 on
 * any malformed, out-of-range or surplus value. */
int bench_parse_list(const char *s, int *out, int max, int lo);

/* {1, 2} as "1,2" into buf. */
void bench_join_ints(char *buf, size_t size, const int *v, int n);

/* sgemm roofline: GFLOPS of one 2048^3 cblas_sgemm (best of a few) with the current threads. */
double bench_roofline_gflops(void);

/* FLOPs of that product, and the seconds of one run of it as one single-threaded part per
 * member of `team` (NULL: the calling thread alone), the way a training step uses the cores:
 * OpenBLAS's own pool never wakes (its idle workers would take a core from what runs next). */
double bench_roofline_flops(void);
double bench_roofline_seconds(bp_team *team);

/* The training set the benchmarks run on: real MNIST's 60,000 training images when
 * scripts/fetch-mnist.sh has put them in place (BACKPROP_MNIST_DIR, BACKPROP_DATA_DIR/mnist or
 * ~/.cache/backprop/mnist), else 60,000 random images of the same shape (the arithmetic costs
 * the same). *source says which: "mnist" or "synthetic". NULL if neither can be made. */
enum { BENCH_SET = 60000 };
bp_dataset *bench_load_training_set(const char **source);

#endif
