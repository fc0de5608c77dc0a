/*
 * test_openblas.c - bp_blas_core and bp_blas_core_fitting: which kernels OpenBLAS runs, and
 * whether they are a fallback narrower than the CPU. meson runs this suite twice: as the
 * machine comes, and with OPENBLAS_CORETYPE=Prescott (a fallback forced on purpose), so the
 * detection is exercised on every machine, not only on CPUs OpenBLAS does not know.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backprop.h"
#include "testutil.h"

static int cpu_has_avx2_fma(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

START_TEST(test_core_is_named)
{
    const char *core = bp_blas_core();
    ck_assert_ptr_nonnull(core);
    ck_assert_int_gt((int)strlen(core), 0);
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && *forced)
        ck_assert_str_eq(core, forced); /* OpenBLAS honoured the variable: the name is its own */
}
END_TEST

START_TEST(test_fallback_is_detected)
{
    const char *core = bp_blas_core(), *fits = bp_blas_core_fitting();
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && strcmp(forced, "Prescott") == 0) {
        /* SSE3 kernels on a CPU with AVX2 and FMA are a fallback by definition. */
        if (cpu_has_avx2_fma()) {
            ck_assert_msg(fits != NULL, "Prescott kernels on an AVX2 CPU went unnoticed");
            ck_assert_msg(strcmp(fits, "SkylakeX") == 0 || strcmp(fits, "Haswell") == 0,
                          "suggested '%s'", fits);
        } else {
            ck_assert_ptr_null(fits);
        }
        return;
    }
    /* Whatever this machine is: a suggestion only ever replaces an SSE or AVX core. */
    if (fits) {
        static const char *const wide[] = {"SkylakeX", "Cooperlake", "SapphireRapids",
                                           "Haswell", "Zen"};
        for (size_t i = 0; i < sizeof wide / sizeof *wide; i++)
            ck_assert_msg(strcasecmp(core, wide[i]) != 0, "%s second-guessed as %s", core, fits);
    }
}
END_TEST

static Suite *openblas_suite(void)
{
    Suite *s = suite_create("openblas");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_core_is_named);
    tcase_add_test(tc, test_fallback_is_detected);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(openblas_suite()); }
