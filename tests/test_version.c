/*
 * test_version.c - the version has one source, meson's project version (given as argv[1] by
 * tests/meson.build): the header's macros, generated from it, and bp_version(), compiled into
 * the library, must both say it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

static const char *meson_version;

START_TEST(test_string_macro_is_meson_version)
{
    ck_assert_str_eq(BP_VERSION_STRING, meson_version);
}
END_TEST

START_TEST(test_number_macros_are_meson_version)
{
    char joined[64];
    snprintf(joined, sizeof joined, "%d.%d.%d", BP_VERSION_MAJOR, BP_VERSION_MINOR,
             BP_VERSION_PATCH);
    ck_assert_str_eq(joined, meson_version);
}
END_TEST

START_TEST(test_bp_version_is_meson_version)
{
    ck_assert_ptr_nonnull(bp_version());
    ck_assert_str_eq(bp_version(), meson_version);
}
END_TEST

static Suite *version_suite(void)
{
    Suite *s = suite_create("version");
    TCase *tc = tcase_create("version");
    tcase_add_test(tc, test_string_macro_is_meson_version);
    tcase_add_test(tc, test_number_macros_are_meson_version);
    tcase_add_test(tc, test_bp_version_is_meson_version);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_version MESON_PROJECT_VERSION\n");
        return EXIT_FAILURE;
    }
    meson_version = argv[1];
    return bp_test_main(version_suite());
}
