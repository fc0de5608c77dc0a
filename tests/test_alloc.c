/*
 * test_alloc.c - a training step makes no heap allocation.
 *
 * Two witnesses. The library's own counter (bp_alloc_stats) sees every buffer libbackprop makes.
 * And, in builds without sanitizers (which bring their own malloc), this executable defines
 * malloc, calloc, realloc, aligned_alloc and posix_memalign itself, forwarding to glibc's
 * __libc_* entry points: the dynamic linker then binds every caller in the process to them,
 * OpenBLAS and the C library included, so any heap call during a step is counted.
 *
 * One heap call is not ours to remove: OpenBLAS 0.3.21's SkylakeX "small matrix" sgemm kernels
 * (chosen for m*n*k up to about 10^6, e.g. a hidden layer at B = 7) malloc a packing buffer on
 * every call. The interposer attributes each call to the shared object that made it (dladdr of
 * the return address) and the test demands zero calls from everything else; the naive backend,
 * which never enters OpenBLAS, must make zero calls in all.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

static volatile long heap_calls, openblas_calls;

#ifdef BP_TEST_INTERPOSE_MALLOC
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t s);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t a, size_t n);

static void count(void *caller)
{
    Dl_info info;
    if (dladdr(caller, &info) && info.dli_fname && strstr(info.dli_fname, "libopenblas"))
        openblas_calls++;
    else
        heap_calls++;
}

void *malloc(size_t n)
{
    count(__builtin_return_address(0));
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t s)
{
    count(__builtin_return_address(0));
    return __libc_calloc(n, s);
}
void *realloc(void *p, size_t n)
{
    count(__builtin_return_address(0));
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t a, size_t n)
{
    count(__builtin_return_address(0));
    return __libc_memalign(a, n);
}
int posix_memalign(void **p, size_t a, size_t n)
{
    count(__builtin_return_address(0));
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12; /* ENOMEM */
}
static const int interposed = 1;
#else
static const int interposed = 0;
#endif

static void check_steps(const char *backend, int threads)
{
    bp_set_threads(threads);
    const int sizes[] = {784, 100, 10};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.output = BP_ACT_SOFTMAX;
    cfg.cost = BP_COST_LOG_LIKELIHOOD;
    cfg.max_batch = 32;
    cfg.backend = backend;
    long before_create = heap_calls;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    /* The interposer sees the library's allocations: the zero below is not for want of looking. */
    if (interposed)
        ck_assert_int_gt(heap_calls, before_create);

    float *x = calloc(784 * 32, sizeof(float)), *y = calloc(10 * 32, sizeof(float));
    uint64_t seed = 1;
    bp_test_fill(x, 784 * 32, 0, 1, &seed);
    for (int s = 0; s < 32; s++)
        y[s * 10 + s % 10] = 1;
    /* The library's own allocations stop when the net is made: the first step, the one that
     * once made the team of threads, allocates nothing either. */
    bp_alloc_stats s0, s1;
    bp_alloc_stats_get(&s0);
    ck_assert_int_eq(bp_net_sgd_step(net, x, 784, y, 10, 32, 0.1f, NULL), BP_OK);
    bp_alloc_stats_get(&s1);
    ck_assert_msg(s1.allocations == s0.allocations, "%s, %d threads: the first step made %llu "
                  "allocations", backend, threads,
                  (unsigned long long)(s1.allocations - s0.allocations));
    /* That step was also the warm-up for the process-wide count below: OpenBLAS sets up its
     * thread pool and buffers on first use. */
    long calls0 = heap_calls, blas0 = openblas_calls;
    /* No Check assertion inside the loop: Check itself allocates to record each one. */
    int failures = 0;
    for (int step = 0; step < 20; step++) {
        int batch = step % 2 ? 32 : 7; /* a smaller batch uses a prefix of the same buffers */
        double cost;
        failures += bp_net_sgd_step(net, x, 784, y, 10, batch, 0.1f, &cost) != BP_OK;
    }
    long calls = heap_calls - calls0, blas = openblas_calls - blas0;
    ck_assert_int_eq(failures, 0);
    bp_alloc_stats_get(&s1);
    ck_assert_msg(calls == 0, "%s, %d threads: %ld heap calls in 20 training steps", backend,
                  threads, calls);
    if (strcmp(backend, "naive") == 0)
        ck_assert_int_eq(blas, 0);
    else
        printf("# %s, %d threads: OpenBLAS itself made %ld heap calls in 20 steps\n", backend,
               threads, blas);
    ck_assert_uint_eq(s1.allocations, s0.allocations);
    free(x), free(y);
    bp_net_free(net);
    bp_alloc_stats_get(&s1);
    ck_assert_uint_eq(s1.allocations, s1.frees); /* and everything made was freed */
}

START_TEST(test_step_allocates_nothing_blas_1) { check_steps("blas", 1); }
END_TEST
START_TEST(test_step_allocates_nothing_blas_2) { check_steps("blas", 2); }
END_TEST
START_TEST(test_step_allocates_nothing_naive) { check_steps("naive", 1); }
END_TEST

static Suite *alloc_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("step");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_step_allocates_nothing_blas_1);
    tcase_add_test(tc, test_step_allocates_nothing_blas_2);
    tcase_add_test(tc, test_step_allocates_nothing_naive);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(alloc_suite()); }
