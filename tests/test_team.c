/*
 * test_team.c - the fork-join team that splits a training step: every member runs, barriers
 * order the members' writes, a team can be made, used many times and freed at any size, and
 * the share function partitions exactly.
 */
#include <stdlib.h>
#include <time.h>

#include "parallel/team.h"
#include "testutil.h"

enum { ROUNDS = 2000 };

typedef struct round_job {
    bp_team *team;
    int round;
    long slot[BP_TEAM_MAX];     /* written by each member before the barrier */
    long seen[BP_TEAM_MAX];     /* what each member read of the others after it */
    int ran[BP_TEAM_MAX];
} round_job;

static void round_fn(void *arg, int member, int size)
{
    round_job *job = arg;
    job->ran[member]++;
    job->slot[member] = (long)job->round * 1000 + member;
    bp_team_barrier(job->team);
    long sum = 0;
    for (int m = 0; m < size; m++)
        sum += job->slot[m];
    job->seen[member] = sum;
    bp_team_barrier(job->team); /* nobody overwrites a slot while another still reads it */
}

START_TEST(test_members_run_and_barriers_order_writes)
{
    const int sizes[] = {1, 2, 3, 5};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int size = sizes[si];
        bp_team *team;
        ck_assert_int_eq(bp_team_create(&team, size), BP_OK);
        ck_assert_int_eq(bp_team_size(team), size);
        round_job *job = calloc(1, sizeof *job);
        job->team = team;
        int wrong = 0;
        for (int r = 0; r < ROUNDS; r++) {
            job->round = r;
            bp_team_run(team, round_fn, job);
            long want = 0;
            for (int m = 0; m < size; m++)
                want += (long)r * 1000 + m;
            for (int m = 0; m < size; m++)
                wrong += job->seen[m] != want;
        }
        ck_assert_msg(wrong == 0, "team of %d: %d members saw stale slots", size, wrong);
        for (int m = 0; m < size; m++)
            ck_assert_int_eq(job->ran[m], ROUNDS);
        free(job);
        bp_team_free(team);
    }
}
END_TEST

static void sleepy_fn(void *arg, int member, int size)
{
    (void)size;
    int *ran = arg;
    ran[member]++;
}

/* Members that have slept (far past the spin limit) still wake for the next job. */
START_TEST(test_sleeping_members_wake)
{
    bp_team *team;
    ck_assert_int_eq(bp_team_create(&team, 2), BP_OK);
    int ran[2] = {0, 0};
    for (int r = 0; r < 3; r++) {
        bp_team_run(team, sleepy_fn, ran);
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    ck_assert_int_eq(ran[0], 3);
    ck_assert_int_eq(ran[1], 3);
    bp_team_free(team);
}
END_TEST

START_TEST(test_bad_sizes_are_refused)
{
    bp_team *team = (bp_team *)1;
    ck_assert_int_eq(bp_team_create(&team, 0), BP_EINVAL);
    ck_assert_ptr_null(team);
    ck_assert_int_eq(bp_team_create(&team, BP_TEAM_MAX + 1), BP_EINVAL);
    bp_team_free(NULL);
}
END_TEST

/* Shares cover [0, n) in order without overlap, start on multiples of align, and (when there is
 * enough to share) differ in size by at most 2 * align items. */
START_TEST(test_shares_partition)
{
    const int ns[] = {0, 1, 7, 10, 37, 100, 784, 1024};
    const int aligns[] = {1, 4, 8, 16};
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
        for (size_t ai = 0; ai < sizeof aligns / sizeof *aligns; ai++)
            for (int size = 1; size <= 5; size++) {
                int n = ns[ni], align = aligns[ai], next = 0, smallest = n, largest = 0;
                for (int m = 0; m < size; m++) {
                    int b, e;
                    bp_team_share(n, m, size, align, &b, &e);
                    ck_assert_int_eq(b, next);
                    ck_assert_int_le(b, e);
                    ck_assert_int_eq(b % align, 0);
                    next = e;
                    smallest = e - b < smallest ? e - b : smallest;
                    largest = e - b > largest ? e - b : largest;
                }
                ck_assert_int_eq(next, n);
                if (n >= size * align)
                    ck_assert_int_le(largest - smallest, 2 * align);
            }
}
END_TEST

static Suite *team_suite(void)
{
    Suite *s = suite_create("team");
    TCase *tc = tcase_create("team");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_members_run_and_barriers_order_writes);
    tcase_add_test(tc, test_sleeping_members_wake);
    tcase_add_test(tc, test_bad_sizes_are_refused);
    tcase_add_test(tc, test_shares_partition);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(team_suite()); }
