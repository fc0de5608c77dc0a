/*
 * bench.c - `backprop bench`: the benchmark harness of bench/ run from the command line.
 *
 * The harness stays a set of programs of its own rather than code linked into the tool: it
 * measures the library against the bare GEMM calls a step makes and the sgemm roofline, which
 * means calling OpenBLAS and the library's private headers directly, and the tool sees only
 * the public header. So this command finds those programs (next to the tool in a build tree,
 * in libexec once installed), runs the ones asked for one after the other with the flags that
 * mean the same thing to each, and passes their output through untouched: the header line
 * naming the CPU, OpenBLAS's version and kernels, the threads and the commit is theirs, the
 * same one `meson test --benchmark` and bench/README readers see.
 */
#include "cli.h"
#include "options.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Where `meson install` puts the harness; meson.build defines it. */
#ifndef BP_BENCH_DIR
#define BP_BENCH_DIR "/usr/local/libexec/backprop"
#endif

/* The suites, each one program, with what --quick and --json become for it. */
typedef struct suite {
    const char *name, *program, *what;
    const char *quick[7]; /* the program's flags for --quick (NULL-terminated) */
    const char *full[7];  /* and without it */
    const char *json;     /* its flag for JSON lines, NULL if it has none */
} suite;

static const suite suites[] = {
    {"train", "bench_train",
     "epoch time of [784,100,10] and [784,1024,1024,10] per thread count and batch, against "
     "the bare GEMM floor and the sgemm roofline; the naive backend and a per-sample baseline",
     {"--quick", NULL}, {NULL}, "--json"},
    {"ops", "bench_ops",
     "each kernel (GEMMs of the forward pass, BP2, BP4, Hadamard products, activations) on "
     "the BLAS backend against the naive one, with the speed-up",
     {"--quick", NULL}, {NULL}, "--json"},
    {"features", "bench_features",
     "the cost of each training feature (optimisers, dropout, batch norm, L1/L2) as a ratio "
     "to the fused SGD step, in one run",
     {"--rounds", "1", NULL}, {"--rounds", "3", NULL}, "--json"},
    {"conv", "bench_conv_epoch",
     "epoch time of Nielsen's network3 (two conv-pool stages, ReLU) at B = 10 and 64 on "
     "MNIST, and the peak memory; bench/torch_reference.py --conv is PyTorch's side",
     {"--train", "2000", NULL}, {NULL}, "--json"},
    {"lstm", "bench_conv_epoch",
     "epoch time of lstm:128 on MNIST rows (28 steps of 28 pixels) at B = 64, and the peak "
     "memory; bench/torch_reference.py --lstm is PyTorch's side",
     {"--arch", "lstm:128,dense:10:softmax", "--batch", "64", "--train", "2000", NULL},
     {"--arch", "lstm:128,dense:10:softmax", "--batch", "64", NULL}, "--json"},
    {"gru", "bench_conv_epoch",
     "the same for gru:128; bench/torch_reference.py --gru is PyTorch's side",
     {"--arch", "gru:128,dense:10:softmax", "--batch", "64", "--train", "2000", NULL},
     {"--arch", "gru:128,dense:10:softmax", "--batch", "64", NULL}, "--json"},
};
enum { N_SUITES = sizeof suites / sizeof suites[0] };

/* By default the two that answer "how fast is it here": the whole epoch and the kernels. */
static const unsigned default_suites = 1u << 0 | 1u << 1;

typedef struct bench_options {
    unsigned suites; /* bits of suites[] */
    int quick, list;
    output_args output; /* --json */
    char **extra; /* after "--": handed to the one suite chosen */
    int n_extra;
} bench_options;

enum { BENCH_QUICK, BENCH_SUITE, BENCH_LIST };

static const opt_spec bench_opts[] = {
    {"quick", BENCH_QUICK, NULL,
     "a few seconds a suite: enough to catch a wrong or\n"
     "grossly slow kernel, too short for figures to quote\n"
     "(off: a full run, minutes a suite)", 0, 0},
    {"suite", BENCH_SUITE, "LIST", "", 0, 0},
    {"list", BENCH_LIST, NULL, "where each suite's program is, and stop", 0, 0},
    {0},
};

static const char *suite_name_i(int i) { return suites[i].name; }

/* "train,ops" -> bits; "all" -> every suite. */
static unsigned parse_suites(const char *flag, const char *s)
{
    unsigned bits = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (len == 3 && strncmp(p, "all", 3) == 0) {
            bits |= (1u << N_SUITES) - 1;
        } else {
            int found = -1;
            for (int i = 0; i < N_SUITES; i++)
                if (strlen(suites[i].name) == len && strncmp(p, suites[i].name, len) == 0)
                    found = i;
            if (found < 0) {
                char names[128];
                list_names(names, sizeof names, ", ", N_SUITES, -1, suite_name_i);
                usage_error("%s: unknown suite '%.*s' in '%s' (known: %s, all)", flag, (int)len,
                            p, s, names);
            }
            bits |= 1u << found;
        }
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    return bits;
}

static void bench_parse(void *target, const opt_spec *spec, const char *flag, const char *value)
{
    bench_options *o = target;
    switch (spec->key) {
    case BENCH_QUICK: o->quick = 1; break;
    case BENCH_SUITE: o->suites = parse_suites(flag, value); break;
    case BENCH_LIST: o->list = 1; break;
    }
}

/* --suite's line lists the suites, from the table the runs use. */
static void bench_describe(const void *target, const opt_spec *spec, opt_text *t)
{
    const bench_options *o = target;
    if (spec->key != BENCH_SUITE)
        return;
    size_t used = (size_t)snprintf(t->help, sizeof t->help, "which suites, comma-separated");
    for (int i = 0; i < N_SUITES && used < sizeof t->help; i++)
        used += (size_t)snprintf(t->help + used, sizeof t->help - used, "\n  %-9s %s",
                                 suites[i].name, suites[i].what);
    if (used < sizeof t->help)
        snprintf(t->help + used, sizeof t->help - used, "\n  %-9s every one of them", "all");
    used = 0;
    t->dflt[0] = '\0';
    for (int i = 0; i < N_SUITES && used < sizeof t->dflt; i++)
        if (o->suites & 1u << i)
            used += (size_t)snprintf(t->dflt + used, sizeof t->dflt - used, "%s%s",
                                     used ? "," : "", suites[i].name);
}

static const opt_group bench_group = {"bench", bench_opts, bench_parse, bench_describe};

static void bench_init(void *opts)
{
    *(bench_options *)opts = (bench_options){.suites = default_suites};
}

const command_line bench_line = {
    .name = "bench",
    .synopsis = "usage: backprop bench [--quick] [--json] [--suite NAME[,...]] [-- FLAGS]\n",
    .about = "The benchmark harness (bench/): training and kernel speed on this machine, every\n"
             "figure a ratio or rate measured in the same run, under a header line naming the\n"
             "CPU, OpenBLAS's version and kernels, the threads and the commit. Real MNIST when\n"
             "it is in place (scripts/fetch-mnist.sh, BACKPROP_MNIST_DIR), else random data of\n"
             "the same shape. --json: one JSON object per line instead of the tables.\n",
    .notes = "After --, the rest goes to the suite's program as it is (one suite only; e.g.\n"
             "backprop bench --suite train -- --small --batches 10,64 --threads 1).\n"
             "\n"
             "The programs are looked for in $BACKPROP_BENCH_DIR, then in bench/ beside this\n"
             "executable (a build tree), then in " BP_BENCH_DIR " (installed).\n"
             "\n"
             "exit status: 0 ok, 1 a suite failed or was not found, 2 bad command line; a suite\n"
             "ended by a signal gives 128 + its number\n",
    .size = sizeof(bench_options),
    .init = bench_init,
    .uses = {{&bench_group, 0, 0},
             {&output_group, offsetof(bench_options, output), 1u << OUTPUT_JSON}},
    .operands = 1,
    .stop_at_operand = 1, /* "--" and what follows are the suite's */
};

void bench_usage(FILE *f) { print_usage(f, &bench_line); }

static void parse_bench_args(int argc, char **argv, bench_options *o)
{
    parsed_args p = parse_command_line(&bench_line, o, argc, argv);
    /* getopt_long consumes a bare "--" itself and leaves the index after it. */
    if (p.operand > 1 && strcmp(argv[p.operand - 1], "--") == 0) {
        o->extra = argv + p.operand;
        o->n_extra = argc - p.operand;
    } else if (p.operand < argc) {
        usage_error("unexpected argument '%s' (a suite's own flags go after --)",
                    argv[p.operand]);
    }
    if (o->n_extra > 0 && (o->suites & (o->suites - 1)) != 0)
        usage_error("flags after -- go to one suite's program; choose it with --suite NAME");
}

/* The directory of this executable, or "" if /proc does not say. */
static void own_dir(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0) {
        buf[0] = '\0';
        return;
    }
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
    else
        buf[0] = '\0';
}

/* Where the program of a suite is: the first candidate directory holding it executable. 0, or
 * -1 with every place looked in listed in *why. */
static int find_program_path(const char *program, char path[PATH_BUF], char *why, size_t size)
{
    char dirs[3][PATH_BUF];
    int n = 0;
    const char *env = getenv("BACKPROP_BENCH_DIR");
    if (env && *env)
        snprintf(dirs[n++], PATH_BUF, "%s", env);
    char self[PATH_BUF];
    own_dir(self, sizeof self);
    if (self[0]) {
        size_t len = strlen(self);
        if (len + sizeof "/bench" <= PATH_BUF) {
            memcpy(dirs[n], self, len);
            memcpy(dirs[n] + len, "/bench", sizeof "/bench");
            n++;
        }
    }
    snprintf(dirs[n++], PATH_BUF, "%s", BP_BENCH_DIR);
    size_t used = 0;
    why[0] = '\0';
    for (int i = 0; i < n; i++) {
        int len = snprintf(path, PATH_BUF, "%s/%s", dirs[i], program);
        if (len > 0 && len < PATH_BUF && access(path, X_OK) == 0)
            return 0;
        if (used < size) {
            int w = snprintf(why + used, size - used, "%s%s", used ? ", " : "", dirs[i]);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    return -1;
}

/* Run one suite's program to its end with its output on ours. Its exit status, 128 + the
 * signal that ended it, or 1 when it could not be started. */
static int run_suite(const suite *s, const bench_options *o)
{
    char path[PATH_BUF], where[3 * PATH_BUF];
    if (find_program_path(s->program, path, where, sizeof where) != 0) {
        print_error("bench: no %s in %s (build the project, or install it, or set "
                    "BACKPROP_BENCH_DIR to the directory that holds it)", s->program, where);
        return 1;
    }
    const char *args[8 + 64];
    int n = 0;
    args[n++] = path;
    for (const char *const *f = o->quick ? s->quick : s->full; *f; f++)
        args[n++] = *f;
    if (o->output.json && s->json)
        args[n++] = s->json;
    if (o->n_extra > 64)
        usage_error("more than 64 flags after --");
    for (int i = 0; i < o->n_extra; i++)
        args[n++] = o->extra[i];
    args[n] = NULL;
    /* What is already buffered must come out before the child's output, not after it. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        print_error("bench: cannot start %s: %s", path, strerror(errno));
        return 1;
    }
    if (pid == 0) {
        execv(path, (char *const *)args);
        fprintf(stderr, "backprop: bench: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            print_error("bench: waiting for %s: %s", path, strerror(errno));
            return 1;
        }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

int cmd_bench(int argc, char **argv)
{
    bench_options o;
    parse_bench_args(argc, argv, &o);
    if (o.list) {
        for (int i = 0; i < N_SUITES; i++) {
            char path[PATH_BUF], where[3 * PATH_BUF];
            if (find_program_path(suites[i].program, path, where, sizeof where) == 0)
                printf("%-9s %s\n", suites[i].name, path);
            else
                printf("%-9s not found in %s\n", suites[i].name, where);
        }
        return 0;
    }
    /* Suites run in table order; the first failure ends the run with its status. */
    for (int i = 0; i < N_SUITES; i++) {
        if (!(o.suites & (1u << i)))
            continue;
        int rc = run_suite(&suites[i], &o);
        if (rc != 0) {
            if (rc < 128)
                print_error("bench: suite %s failed (exit status %d)", suites[i].name, rc);
            return rc;
        }
    }
    return 0;
}
