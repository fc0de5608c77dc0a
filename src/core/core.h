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
/* Put a context in front of the message a callee just recorded: "layer 2: " + its message.
 * (Passing bp_last_error() to bp_fail would format the buffer into itself.) */
bp_status bp_fail_context(bp_status status, const char *fmt, ...)
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

/* Where backpropagation writes a layer's gradient of the mean cost G: T = beta T + alpha G.
 * The optimiser chooses (optim/optim.h); layers only honour it (layers/layer.h), so neither
 * knows the other.
 * - BP_TARGET_GRADS: T is the gradient arena, overwritten (beta must be 0): {alpha 1, beta 0}
 *   leaves G there for an optimiser with state (momentum, Adam) or a caller. Accumulating
 *   into it (beta 1, for gradient accumulation) is not supported yet.
 * - BP_TARGET_PARAMS: T is the parameters: a stateless rule folded into BP4's GEMM, so G is
 *   never written to memory and read back. Plain SGD is {alpha -eta, beta 1}; L2 decay will be
 *   beta = 1 - eta lambda / n. beta applies to weights; biases always take beta 1 here. */
typedef enum bp_target_kind { BP_TARGET_GRADS = 0, BP_TARGET_PARAMS } bp_target_kind;
typedef struct bp_grad_target {
    bp_target_kind into;
    float alpha, beta;
} bp_grad_target;

/* Round n floats up to a whole number of cache lines. */
static inline size_t bp_round_floats(size_t n) { return (n + 15) & ~(size_t)15; }

/* xoshiro256**: fast, 256 bits of state, and the same stream on every platform. */
typedef struct bp_rng { uint64_t s[4]; } bp_rng;
void bp_rng_seed(bp_rng *rng, uint64_t seed);
uint64_t bp_rng_next(bp_rng *rng);
double bp_rng_uniform(bp_rng *rng);          /* [0, 1) with 53 random bits */
double bp_rng_gaussian(bp_rng *rng);         /* N(0,1) by Box-Muller, no cached spare */
uint64_t bp_rng_below(bp_rng *rng, uint64_t n); /* uniform in [0, n), unbiased */

/* Counter-based randomness for anything drawn inside a training step (dropout masks next): a
 * pure function of (seed, step, layer, column, index), so a draw does not depend on which
 * thread (or, later, which rank) computes that column, nor on how many draws came before. Each
 * coordinate goes through the splitmix64 finaliser before the next is mixed in, so neighbouring
 * keys give unrelated values. */
uint64_t bp_rng_counter(uint64_t seed, uint64_t step, uint32_t layer, uint32_t column,
                        uint32_t index);
/* The same in two halves, for a loop over one column's draws: the key of (seed, step, layer,
 * column), three mixes, once per column; then one mix per index.
 * bp_rng_counter(s, t, l, c, i) == bp_rng_counter_draw(bp_rng_counter_key(s, t, l, c), i). */
uint64_t bp_rng_counter_key(uint64_t seed, uint64_t step, uint32_t layer, uint32_t column);
static inline uint64_t bp_rng_mix64(uint64_t z) /* splitmix64's finaliser: a bijection */
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline uint64_t bp_rng_counter_draw(uint64_t key, uint32_t index)
{
    return bp_rng_mix64(key ^ ((uint64_t)index * 0xabc98388fb8fac03ULL + 1));
}
static inline float bp_rng_counter_uniform(uint64_t bits) /* [0, 1) with 24 random bits */
{
    return (float)(bits >> 40) * 0x1.0p-24f;
}

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
