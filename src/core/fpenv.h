/*
 * fpenv.h - the floating-point environment of the library's compute: subnormal numbers
 * flushed to zero while a step or a forward pass runs, and the caller's environment put back
 * exactly as it was afterwards. Private to the library.
 *
 * Why: a saturated sigmoid (z between about -104 and -87) has a subnormal output, and from
 * there a(1-a), the deltas and the GEMMs that read them run on subnormal operands, which x86
 * cores handle in microcode at ~100 cycles an operation instead of one. Saturated training
 * (Nielsen's chapter 3, or simply eta = 3 with cross-entropy) ran several times slower for
 * nothing: an activation, delta or update below FLT_MIN (2^-126 ~ 1.18e-38) is under half an
 * ulp of any parameter of magnitude 2^-102 (~2e-31) or more, so adding it changes no bit, and a
 * parameter smaller than that contributes nothing a float sum of O(1) terms can hold either.
 * docs/ARCHITECTURE.md ("Subnormals") has the rest.
 *
 * Two switches, both on for the duration: flush-to-zero (a subnormal result becomes +-0) and
 * denormals-are-zero (a subnormal operand, e.g. from the caller's data, reads as +-0). On
 * x86-64 they are MXCSR bits 15 and 6 and cover every SSE/AVX float and double operation of
 * the thread; on AArch64 FPCR.FZ (bit 24) is both at once. Elsewhere this is a no-op
 * (BP_FPENV_FLUSHES is 0) and subnormals stay as slow as the hardware makes them.
 *
 * The state is per thread. A step's threads are the caller's and the net's team members
 * (parallel/team.c flushes for each job the same way); OpenBLAS's own worker threads, used
 * when a step stays on the calling thread with a BLAS thread count above one, keep whatever
 * they were started with: nothing here can reach them.
 *
 * Restoring writes back the saved register whole: the caller's modes (rounding, exception
 * masks, its own FTZ/DAZ if it had them) and, on x86, its sticky exception flags are as before
 * the flush, and the flags raised inside it are dropped. They never were meaningful to a
 * caller: the team members' and OpenBLAS's threads raise theirs in their own registers. (The
 * public entry points do some arithmetic of their own outside the flush, a mean cost, a time,
 * which raises flags in the caller's register as any function's arithmetic does.)
 */
#ifndef BP_FPENV_H
#define BP_FPENV_H

#include <stdint.h>

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__))
#include <xmmintrin.h>

#define BP_FPENV_FLUSHES 1
#define BP_FPENV_FTZ 0x8000u /* MXCSR.FZ: subnormal results become zero */
#define BP_FPENV_DAZ 0x0040u /* MXCSR.DAZ: subnormal operands read as zero */
#define BP_FPENV_FLUSH (BP_FPENV_FTZ | BP_FPENV_DAZ)
#define BP_FPENV_STATUS 0x003fu /* the sticky exception flags, which MXCSR holds too */

typedef uint32_t bp_fpenv;

static inline bp_fpenv bp_fpenv_get(void) { return _mm_getcsr(); }
static inline void bp_fpenv_set(bp_fpenv env) { _mm_setcsr(env); }

#elif defined(__aarch64__)

#define BP_FPENV_FLUSHES 1
#define BP_FPENV_FLUSH (UINT64_C(1) << 24) /* FPCR.FZ: subnormal operands and results are zero */
#define BP_FPENV_STATUS 0u /* the flags are in FPSR, which is not touched */

typedef uint64_t bp_fpenv;

static inline bp_fpenv bp_fpenv_get(void)
{
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    return fpcr;
}

/* The memory clobber keeps the compiler from moving loads and stores (and so the arithmetic on
 * them) across the switch. */
static inline void bp_fpenv_set(bp_fpenv env)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"(env) : "memory");
}

#else

#define BP_FPENV_FLUSHES 0
#define BP_FPENV_FLUSH 0u
#define BP_FPENV_STATUS 0u

typedef unsigned bp_fpenv;

static inline bp_fpenv bp_fpenv_get(void) { return 0; }
static inline void bp_fpenv_set(bp_fpenv env) { (void)env; }

#endif

/* Turn the flush on for this thread and return what to restore. */
static inline bp_fpenv bp_fpenv_flush(void)
{
    bp_fpenv saved = bp_fpenv_get();
    bp_fpenv_set(saved | BP_FPENV_FLUSH);
    return saved;
}

/* Put back exactly what bp_fpenv_flush saved. */
static inline void bp_fpenv_restore(bp_fpenv saved) { bp_fpenv_set(saved); }

#endif
