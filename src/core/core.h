/*
 * core.h - what every module may use: status messages, the library's one allocator, the
 * seeded RNG. Private to the library.
 */
#ifndef BP_CORE_H
#define BP_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

/* Record a formatted message for bp_last_error() and return status, so a failure reads
 * `return bp_fail(BP_EINVAL, "layer %d expects %d inputs, got %d", l, n, m);` */
bp_status bp_fail(bp_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Every buffer the library owns comes from here: 64-byte aligned (one cache line, one AVX-512
 * register), counted for bp_alloc_stats_get. bp_alloc(0) returns NULL. */
#define BP_ALIGN 64
void *bp_alloc(size_t bytes);
void *bp_calloc(size_t count, size_t size); /* zeroed; checks count * size for overflow */
void bp_free(void *p);

/* BP_OK if `bytes` more fit under the memory limit (bp_set_memory_limit; by default what the
 * machine has available now), else BP_ENOMEM with a message: "<what> needs N bytes (7.4 GB),
 * more than ...". Called before a plan allocates, so a typo is refused, not OOM-killed. */
bp_status bp_memory_check(uint64_t bytes, const char *what);

/* Round n floats up to a whole number of cache lines. */
static inline size_t bp_round_floats(size_t n) { return (n + 15) & ~(size_t)15; }

/* xoshiro256**: fast, 256 bits of state, and the same stream on every platform. */
typedef struct bp_rng { uint64_t s[4]; } bp_rng;
void bp_rng_seed(bp_rng *rng, uint64_t seed);
uint64_t bp_rng_next(bp_rng *rng);
double bp_rng_uniform(bp_rng *rng);          /* [0, 1) with 53 random bits */
double bp_rng_gaussian(bp_rng *rng);         /* N(0,1) by Box-Muller, no cached spare */
uint64_t bp_rng_below(bp_rng *rng, uint64_t n); /* uniform in [0, n), unbiased */

/* Seconds on CLOCK_MONOTONIC. */
double bp_now(void);

/* Compile a hot loop for AVX-512, AVX2 and baseline x86-64 and let the loader pick the widest
 * the CPU has (GCC function multi-versioning, resolved by an ifunc). The default build targets
 * baseline x86-64, so this is how the kernels use wide vectors. BP_NO_CLONES turns it off: the
 * ThreadSanitizer build needs that, because an ifunc resolver runs before TSan initialises and
 * crashes it. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && !defined(BP_NO_CLONES)
#define BP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BP_CLONES
#endif

#endif
