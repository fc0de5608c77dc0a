/*
 * test_savekill.c - atomic saves under SIGKILL: a child process saves two different models in
 * turn to one path, as fast as it can, and is killed at a different moment each round; after
 * every kill the file must load, and be exactly one of the two models, never a mix or a part.
 * (A killed save may leave its temporary file beside the path: the library installs no signal
 * handlers, as backprop.h says. Those are counted and removed, and must never be the path.)
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backprop.h"
#include "testutil.h"

enum { ROUNDS = 60 };

static bp_net *make_net(uint64_t seed)
{
    const int sizes[] = {784, 100, 10};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.seed = seed;
    cfg.threads = 1;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    return net;
}

/* Remove the temporary files killed saves left in dir; returns how many there were. */
static int sweep(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            ck_assert_msg(strcmp(e->d_name, keep) != 0, "the model itself is hidden");
            unlink(path);
            n++;
        }
    closedir(d);
    return n;
}

START_TEST(test_killed_saves_leave_old_or_new)
{
    char dir[] = "/tmp/bp-savekill-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    bp_net *a = make_net(1), *b = make_net(2);
    ck_assert_int_eq(bp_model_save(a, path, NULL), BP_OK);
    size_t n;
    const float *pa = bp_net_params(a, &n), *pb = bp_net_params(b, NULL);
    ck_assert(memcmp(pa, pb, n * sizeof *pa) != 0);

    int seen_a = 0, seen_b = 0, leftovers = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            for (unsigned i = 0;; i++)
                if (bp_model_save(i % 2 ? a : b, path, NULL) != BP_OK)
                    _exit(3);
        }
        /* From 0 to about 30 ms, a different moment of some save each round. */
        struct timespec wait = {0, (long)(round * 997 % 61) * 500000L};
        nanosleep(&wait, NULL);
        kill(pid, SIGKILL);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status), "the saving child ended by itself (status %d)",
                      status);
        bp_net *loaded = NULL;
        bp_status st = bp_model_load(&loaded, path, NULL, NULL);
        ck_assert_msg(st == BP_OK, "round %d: the file does not load: %s", round,
                      bp_last_error());
        const float *p = bp_net_params(loaded, NULL);
        int is_a = memcmp(p, pa, n * sizeof *p) == 0, is_b = memcmp(p, pb, n * sizeof *p) == 0;
        ck_assert_msg(is_a || is_b, "round %d: the file is neither model", round);
        seen_a += is_a;
        seen_b += is_b;
        bp_net_free(loaded);
        leftovers += sweep(dir, "model.safetensors");
    }
    /* Both models were seen: the kills did land in the middle of a stream of saves. */
    ck_assert_msg(seen_a > 0 && seen_b > 0, "only one model seen (%d a, %d b)", seen_a, seen_b);
    fprintf(stderr, "# %d rounds: %d old, %d new, %d temporary files left by killed saves\n",
            ROUNDS, seen_a, seen_b, leftovers);
    unlink(path);
    rmdir(dir);
    bp_net_free(a);
    bp_net_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("savekill");
    TCase *tc = tcase_create("savekill");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_killed_saves_leave_old_or_new);
    suite_add_tcase(s, tc);
    return bp_test_main(s);
}
