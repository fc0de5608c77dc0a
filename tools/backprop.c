/*
 * backprop.c - the `backprop` command-line tool: argument parsing, data-set lookup, progress
 * output and the run summary. Everything numeric happens in libbackprop through the public
 * header only; this file owns what the library must never do: print, read the environment and
 * exit.
 *
 * Exit status: 0 success; 1 the library or the file system failed (bad data files, a net the
 * library refuses, an unwritable summary); 2 the command line is wrong (the user must change it).
 */
#include "backprop.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    EXIT_USAGE = 2,
    MAX_LAYERS = 64,
    MAX_WIDTH = 1 << 20,
    MAX_BATCH = 1 << 20,
    MAX_THREADS = 4096,
    PATH_BUF = 4096,
};

static const char usage_text[] =
    "usage: backprop train [options]\n"
    "       backprop --version | --help\n"
    "\n"
    "Train a fully connected network with mini-batch SGD on MNIST-style IDX data.\n"
    "The training file is split: the last 1/6 of its images validate each epoch\n"
    "(50,000 / 10,000 for MNIST, as in Nielsen); the t10k files give the final test figure.\n"
    "\n"
    "options of train (defaults in brackets):\n"
    "  --data mnist|fashion|DIR   data set [mnist]\n"
    "        mnist:   $BACKPROP_MNIST_DIR, else ${BACKPROP_DATA_DIR:-$HOME/.cache/backprop}/mnist\n"
    "        fashion: $BACKPROP_FASHION_DIR, else /usr/share/datasets/fashion-mnist\n"
    "        DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
    "        t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz\n"
    "  --layers N0,N1,...,NL      neurons per layer, input first; 2..64 layers [784,30,10]\n"
    "  --hidden-act sigmoid|tanh|relu|linear                 [sigmoid]\n"
    "  --output sigmoid|softmax|linear|tanh|relu             [sigmoid]\n"
    "  --cost quadratic|cross-entropy|log-likelihood         [cross-entropy]\n"
    "  --epochs N                 [30]\n"
    "  --batch B                  mini-batch size, 1..1048576 [10]\n"
    "  --eta X                    learning rate, > 0 [3.0: Nielsen ch. 1 uses 3.0 with the\n"
    "                             quadratic cost; ch. 3 uses 0.5 with cross-entropy]\n"
    "  --init gaussian|large|xavier|he|orthogonal            [gaussian]\n"
    "  --seed S                   drives initialisation and shuffling [1]\n"
    "  --threads T                BLAS threads [one per core]\n"
    "  --backend blas|naive       [blas]\n"
    "  --summary-json FILE        write the results as JSON to FILE\n"
    "  --help                     this text\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure, 2 bad command line\n";

/* ---- errors ------------------------------------------------------------------------------ */

/* A command-line mistake: one line naming it, then the usage so the fix is on screen. */
static _Noreturn void usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("backprop: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n\n", stderr);
    fputs(usage_text, stderr);
    exit(EXIT_USAGE);
}

/* A runtime failure outside the library (environment, file system). */
static void print_error(const char *fmt, ...)
{
    va_list ap;
    fputs("backprop: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void print_lib_error(bp_status st)
{
    print_error("%s: %s", bp_status_str(st), bp_last_error());
}

/* ---- strict value parsing ---------------------------------------------------------------- */

/* strtol and friends skip leading blanks and accept trailing garbage unless asked; a flag value
 * must be exactly one number, so both are refused here. */
static long parse_long(const char *flag, const char *s, long min, long max)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        usage_error("%s: '%s' is not an integer", flag, s);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0')
        usage_error("%s: '%s' is not an integer", flag, s);
    if (errno == ERANGE || v < min || v > max)
        usage_error("%s: %s is out of range (%ld..%ld)", flag, s, min, max);
    return v;
}

static uint64_t parse_u64(const char *flag, const char *s)
{
    /* strtoull negates "-1" into 2^64-1 instead of failing: demand a digit first. */
    if (!isdigit((unsigned char)s[0]))
        usage_error("%s: '%s' is not a non-negative integer", flag, s);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        usage_error("%s: '%s' is not a non-negative integer", flag, s);
    if (errno == ERANGE)
        usage_error("%s: %s is out of range (0..%llu)", flag, s,
                    (unsigned long long)UINT64_MAX);
    return (uint64_t)v;
}

static float parse_eta(const char *flag, const char *s)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        usage_error("%s: '%s' is not a number", flag, s);
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end != '\0')
        usage_error("%s: '%s' is not a number", flag, s);
    /* ERANGE also flags underflow: a rate that rounds to (almost) zero is a typo, not a wish. */
    if (errno == ERANGE || !isfinite(v) || !(v > 0.0f))
        usage_error("%s: %s must be a finite number > 0", flag, s);
    return v;
}

/* "784,30,10" -> sizes; every entry 1..MAX_WIDTH, 2..MAX_LAYERS entries, no empty ones. */
static int parse_layers(const char *flag, const char *s, int sizes[MAX_LAYERS])
{
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            usage_error("%s: empty entry %d in '%s'", flag, n + 1, s);
        if (n == MAX_LAYERS)
            usage_error("%s: more than %d layers in '%s'", flag, MAX_LAYERS, s);
        char item[32];
        if (len >= sizeof item)
            usage_error("%s: entry %d of '%s' is not an integer", flag, n + 1, s);
        memcpy(item, p, len);
        item[len] = '\0';
        if (!isdigit((unsigned char)item[0]))
            usage_error("%s: entry %d ('%s') is not a positive integer", flag, n + 1, item);
        char *end;
        errno = 0;
        long v = strtol(item, &end, 10);
        if (*end != '\0')
            usage_error("%s: entry %d ('%s') is not a positive integer", flag, n + 1, item);
        if (errno == ERANGE || v < 1 || v > MAX_WIDTH)
            usage_error("%s: entry %d (%s) is out of range (1..%d)", flag, n + 1, item,
                        MAX_WIDTH);
        sizes[n++] = (int)v;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (n < 2)
        usage_error("%s: need at least an input and an output layer, got '%s'", flag, s);
    return n;
}

/* The valid names of an enum, for the error message: "sigmoid, tanh, relu". */
static void list_names(char *buf, size_t size, int count, int skip, const char *(*name)(int))
{
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < count; i++) {
        if (i == skip)
            continue;
        int w = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", name(i));
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
    }
}

static const char *act_name_i(int i) { return bp_activation_name((bp_activation)i); }
static const char *cost_name_i(int i) { return bp_cost_name((bp_cost)i); }
static const char *init_name_i(int i) { return bp_init_name((bp_init)i); }
static const char *backend_name_i(int i) { return bp_backend_name(i); }

static bp_activation parse_activation(const char *flag, const char *s, int hidden)
{
    bp_activation a;
    char names[256];
    if (bp_activation_parse(s, &a) != BP_OK) {
        list_names(names, sizeof names, BP_ACT_COUNT, hidden ? (int)BP_ACT_SOFTMAX : -1,
                   act_name_i);
        usage_error("%s: unknown activation '%s' (known: %s)", flag, s, names);
    }
    /* Softmax normalises over a whole column, which only means something at the output. */
    if (hidden && a == BP_ACT_SOFTMAX)
        usage_error("%s: softmax is only allowed as --output", flag);
    return a;
}

static bp_cost parse_cost(const char *flag, const char *s)
{
    bp_cost c;
    char names[256];
    if (bp_cost_parse(s, &c) != BP_OK) {
        list_names(names, sizeof names, BP_COST_COUNT, -1, cost_name_i);
        usage_error("%s: unknown cost '%s' (known: %s)", flag, s, names);
    }
    return c;
}

static bp_init parse_init(const char *flag, const char *s)
{
    bp_init i;
    char names[256];
    if (bp_init_parse(s, &i) != BP_OK) {
        list_names(names, sizeof names, BP_INIT_COUNT, -1, init_name_i);
        usage_error("%s: unknown initialisation '%s' (known: %s)", flag, s, names);
    }
    return i;
}

/* Returns the library's own string, so the net config never points into argv by accident. */
static const char *parse_backend(const char *flag, const char *s)
{
    for (int i = 0; i < bp_backend_count(); i++)
        if (strcmp(s, bp_backend_name(i)) == 0)
            return bp_backend_name(i);
    char names[256];
    list_names(names, sizeof names, bp_backend_count(), -1, backend_name_i);
    usage_error("%s: unknown backend '%s' (known: %s)", flag, s, names);
}

/* ---- options ----------------------------------------------------------------------------- */

typedef struct options {
    const char *data;
    int sizes[MAX_LAYERS];
    int n_sizes;
    bp_activation hidden, output;
    bp_cost cost;
    bp_init init;
    int epochs, batch;
    float eta;
    uint64_t seed;
    int threads; /* 0: leave the library's default */
    const char *backend;
    const char *summary;
} options;

enum {
    OPT_DATA = 256,
    OPT_LAYERS,
    OPT_HIDDEN,
    OPT_OUTPUT,
    OPT_COST,
    OPT_EPOCHS,
    OPT_BATCH,
    OPT_ETA,
    OPT_INIT,
    OPT_SEED,
    OPT_THREADS,
    OPT_BACKEND,
    OPT_SUMMARY,
};

static const struct option train_longopts[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"hidden-act", required_argument, NULL, OPT_HIDDEN},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"cost", required_argument, NULL, OPT_COST},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"eta", required_argument, NULL, OPT_ETA},
    {"init", required_argument, NULL, OPT_INIT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"summary-json", required_argument, NULL, OPT_SUMMARY},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void parse_train_args(int argc, char **argv, options *o)
{
    *o = (options){
        .data = "mnist",
        .sizes = {784, 30, 10},
        .n_sizes = 3,
        .hidden = BP_ACT_SIGMOID,
        .output = BP_ACT_SIGMOID,
        .cost = BP_COST_CROSS_ENTROPY,
        .init = BP_INIT_GAUSSIAN,
        .epochs = 30,
        .batch = 10,
        .eta = 3.0f,
        .seed = 1,
        .threads = 0,
        .backend = "blas",
        .summary = NULL,
    };

    /* Our own messages instead of getopt's: one line, then the usage, then status 2.
     * The leading ':' makes a missing value return ':' rather than '?'. */
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":h", train_longopts, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        switch (c) {
        case OPT_DATA:
            if (optarg[0] == '\0')
                usage_error("--data: empty value");
            o->data = optarg;
            break;
        case OPT_LAYERS: o->n_sizes = parse_layers("--layers", optarg, o->sizes); break;
        case OPT_HIDDEN: o->hidden = parse_activation("--hidden-act", optarg, 1); break;
        case OPT_OUTPUT: o->output = parse_activation("--output", optarg, 0); break;
        case OPT_COST: o->cost = parse_cost("--cost", optarg); break;
        case OPT_EPOCHS: o->epochs = (int)parse_long("--epochs", optarg, 1, INT_MAX); break;
        case OPT_BATCH: o->batch = (int)parse_long("--batch", optarg, 1, MAX_BATCH); break;
        case OPT_ETA: o->eta = parse_eta("--eta", optarg); break;
        case OPT_INIT: o->init = parse_init("--init", optarg); break;
        case OPT_SEED: o->seed = parse_u64("--seed", optarg); break;
        case OPT_THREADS:
            o->threads = (int)parse_long("--threads", optarg, 1, MAX_THREADS);
            break;
        case OPT_BACKEND: o->backend = parse_backend("--backend", optarg); break;
        case OPT_SUMMARY:
            if (optarg[0] == '\0')
                usage_error("--summary-json: empty file name");
            o->summary = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
        case ':':
            usage_error("%s needs a value", flag);
        default:
            /* For an unknown long option optopt is 0 and argv[optind-1] holds it whole. */
            if (optopt && optopt < 256)
                usage_error("unknown option '-%c'", optopt);
            usage_error("unknown option '%s'", flag);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
}

/* ---- data -------------------------------------------------------------------------------- */

static int join_path(char *out, size_t size, const char *a, const char *b)
{
    int w = snprintf(out, size, "%s/%s", a, b);
    return w >= 0 && (size_t)w < size ? 0 : -1;
}

/* Where --data points; fails (status 1) only if the environment leaves no answer. */
static int resolve_data_dir(const char *data, char *dir, size_t size)
{
    const char *env;
    int w;
    if (strcmp(data, "mnist") == 0) {
        if ((env = getenv("BACKPROP_MNIST_DIR")) && *env)
            w = snprintf(dir, size, "%s", env);
        else if ((env = getenv("BACKPROP_DATA_DIR")) && *env)
            w = snprintf(dir, size, "%s/mnist", env);
        else if ((env = getenv("HOME")) && *env)
            w = snprintf(dir, size, "%s/.cache/backprop/mnist", env);
        else {
            print_error("HOME is not set: set BACKPROP_MNIST_DIR or BACKPROP_DATA_DIR");
            return -1;
        }
    } else if (strcmp(data, "fashion") == 0) {
        if ((env = getenv("BACKPROP_FASHION_DIR")) && *env)
            w = snprintf(dir, size, "%s", env);
        else
            w = snprintf(dir, size, "%s", "/usr/share/datasets/fashion-mnist");
    } else {
        w = snprintf(dir, size, "%s", data);
    }
    if (w < 0 || (size_t)w >= size) {
        print_error("data directory path is too long");
        return -1;
    }
    return 0;
}

static const char *data_hint(const char *data)
{
    if (strcmp(data, "mnist") == 0)
        return "run scripts/fetch-mnist.sh (or set BACKPROP_MNIST_DIR)";
    if (strcmp(data, "fashion") == 0)
        return "apt-get install dataset-fashion-mnist (or set BACKPROP_FASHION_DIR)";
    return "expected the four MNIST-format IDX files, raw or .gz";
}

/* dir/base if it exists, else dir/base.gz: the raw file wins because it loads faster. */
static int find_idx(const char *dir, const char *base, char *out, size_t size)
{
    struct stat st;
    char gz[256];
    if (join_path(out, size, dir, base) == 0 && stat(out, &st) == 0 && !S_ISDIR(st.st_mode))
        return 0;
    snprintf(gz, sizeof gz, "%s.gz", base);
    if (join_path(out, size, dir, gz) == 0 && stat(out, &st) == 0 && !S_ISDIR(st.st_mode))
        return 0;
    return -1;
}

typedef struct data {
    bp_dataset *all, *train, *valid, *test;
} data;

static void data_free(data *d)
{
    bp_dataset_free(d->train);
    bp_dataset_free(d->valid);
    bp_dataset_free(d->test);
    bp_dataset_free(d->all);
}

static int load_data(const char *spec, data *d, char *dir, size_t dir_size)
{
    static const char *const names[4] = {
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
    };
    char path[4][PATH_BUF];
    struct stat st;

    if (resolve_data_dir(spec, dir, dir_size) != 0)
        return -1;
    if (stat(dir, &st) != 0) {
        print_error("data directory '%s': %s; %s", dir, strerror(errno), data_hint(spec));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        print_error("data '%s' is not a directory; %s", dir, data_hint(spec));
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (find_idx(dir, names[i], path[i], sizeof path[i]) != 0) {
            print_error("no %s[.gz] in '%s'; %s", names[i], dir, data_hint(spec));
            return -1;
        }
    }

    bp_status st_;
    if ((st_ = bp_dataset_load_idx(&d->all, path[0], path[1])) != BP_OK ||
        (st_ = bp_dataset_load_idx(&d->test, path[2], path[3])) != BP_OK) {
        print_lib_error(st_);
        return -1;
    }
    /* Nielsen keeps the last 10,000 of MNIST's 60,000 training images for validation; 1/6
     * reproduces that exactly and scales to smaller (test) sets. */
    size_t n = bp_dataset_count(d->all);
    size_t n_valid = n / 6, n_train = n - n_valid;
    if ((st_ = bp_dataset_slice(d->all, 0, n_train, &d->train)) != BP_OK ||
        (n_valid > 0 && (st_ = bp_dataset_slice(d->all, n_train, n_valid, &d->valid)) != BP_OK)) {
        print_lib_error(st_);
        return -1;
    }
    return 0;
}

/* ---- progress and summary ---------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct progress {
    int epochs;
} progress;

static int print_epoch(const bp_epoch_report *r, void *user)
{
    const progress *p = user;
    printf("epoch %d/%d  ", r->epoch, p->epochs);
    if (r->validation_accuracy >= 0)
        printf("validation %.2f%%  ", 100.0 * r->validation_accuracy);
    else
        printf("validation -  ");
    printf("cost %.4f  %.0f samples/s  %.2f s\n", r->train_cost, r->samples_per_second,
           r->seconds);
    /* Progress is for people watching a pipe or a log: push each line out as it happens. */
    fflush(stdout);
    /* First Ctrl-C finishes the epoch and still reports the test figure; the handler is
     * one-shot, so a second one kills the process the ordinary way. */
    return interrupted ? 1 : 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* JSON has no NaN or infinity; the figures here should never be either, but if one is, the
 * file must still parse. 15 digits print 0.9542 as 0.9542, not 0.95420000000000005. */
static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.15g", v);
    else
        fputs("null", f);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

typedef struct summary {
    double test_accuracy, validation_accuracy, train_seconds, samples_per_second;
    int epochs, threads;
    const char *data_dir;
} summary;

static void write_summary_json(FILE *f, const options *o, const summary *s)
{
    fputs("{\n  \"test_accuracy\": ", f);
    json_number(f, s->test_accuracy);
    fputs(",\n  \"validation_accuracy\": ", f);
    if (s->validation_accuracy >= 0)
        json_number(f, s->validation_accuracy);
    else
        fputs("null", f);
    fprintf(f, ",\n  \"epochs\": %d,\n  \"train_seconds\": ", s->epochs);
    json_number(f, s->train_seconds);
    fputs(",\n  \"samples_per_second\": ", f);
    json_number(f, s->samples_per_second);
    fputs(",\n  \"config\": {\n    \"data\": ", f);
    json_string(f, s->data_dir);
    fputs(",\n    \"layers\": [", f);
    for (int i = 0; i < o->n_sizes; i++)
        fprintf(f, "%s%d", i ? ", " : "", o->sizes[i]);
    fputs("],\n    \"hidden_act\": ", f);
    json_string(f, bp_activation_name(o->hidden));
    fputs(",\n    \"output\": ", f);
    json_string(f, bp_activation_name(o->output));
    fputs(",\n    \"cost\": ", f);
    json_string(f, bp_cost_name(o->cost));
    fputs(",\n    \"init\": ", f);
    json_string(f, bp_init_name(o->init));
    fprintf(f, ",\n    \"epochs\": %d,\n    \"batch\": %d,\n    \"eta\": ", o->epochs, o->batch);
    json_number(f, o->eta);
    /* A seed can exceed 2^53, where JSON readers lose digits: keep it exact as a string. */
    fprintf(f, ",\n    \"seed\": \"%llu\",\n    \"threads\": %d,\n    \"backend\": ",
            (unsigned long long)o->seed, s->threads);
    json_string(f, o->backend);
    fputs("\n  }\n}\n", f);
}

/* Finish FILE.tmp and rename it over FILE, so a reader never sees half a summary. */
static int commit_summary(FILE *f, const char *tmp, const char *final, const options *o,
                          const summary *s)
{
    write_summary_json(f, o, s);
    int failed = fflush(f) != 0 || ferror(f);
    int saved = errno;
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    if (failed) {
        print_error("cannot write '%s': %s", tmp, strerror(saved));
        remove(tmp);
        return -1;
    }
    if (rename(tmp, final) != 0) {
        print_error("cannot rename '%s' to '%s': %s", tmp, final, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

/* ---- train ------------------------------------------------------------------------------- */

static int cmd_train(int argc, char **argv)
{
    options o;
    parse_train_args(argc, argv, &o);

    int rc = 1;
    bp_status st;
    bp_net *net = NULL;
    data d = {0};
    FILE *summary_file = NULL;
    char summary_tmp[PATH_BUF];
    char dir[PATH_BUF];
    double t_start = now_seconds();

    if (o.threads > 0 && (st = bp_set_threads(o.threads)) != BP_OK) {
        print_lib_error(st);
        return 1;
    }

    /* Open the summary's temporary file now: an unwritable path should fail before an hour
     * of training, not after it. */
    if (o.summary) {
        int w = snprintf(summary_tmp, sizeof summary_tmp, "%s.tmp", o.summary);
        if (w < 0 || (size_t)w >= sizeof summary_tmp) {
            print_error("--summary-json: path too long");
            return 1;
        }
        summary_file = fopen(summary_tmp, "w");
        if (!summary_file) {
            print_error("cannot create '%s': %s", summary_tmp, strerror(errno));
            return 1;
        }
    }

    printf("backprop %s  layers ", bp_version());
    for (int i = 0; i < o.n_sizes; i++)
        printf("%s%d", i ? "," : "", o.sizes[i]);
    printf("  hidden %s  output %s  cost %s  init %s  eta %g  batch %d  epochs %d  backend %s"
           "  threads %d  seed %llu\n",
           bp_activation_name(o.hidden), bp_activation_name(o.output), bp_cost_name(o.cost),
           bp_init_name(o.init), (double)o.eta, o.batch, o.epochs, o.backend, bp_get_threads(),
           (unsigned long long)o.seed);
    fflush(stdout);

    /* Build the net before loading data: the library's pairing checks (cross-entropy needs
     * outputs in (0,1), ...) cost nothing and should not wait for 50 MB of gunzip. */
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = o.sizes;
    nc.n_sizes = o.n_sizes;
    nc.hidden = o.hidden;
    nc.output = o.output;
    nc.cost = o.cost;
    nc.init = o.init;
    nc.seed = o.seed;
    nc.max_batch = o.batch;
    nc.backend = o.backend;
    if ((st = bp_net_create(&net, &nc)) != BP_OK) {
        print_lib_error(st);
        goto out;
    }

    if (load_data(o.data, &d, dir, sizeof dir) != 0)
        goto out;

    int dim = bp_dataset_dim(d.train), test_dim = bp_dataset_dim(d.test);
    int classes = bp_dataset_classes(d.train), test_classes = bp_dataset_classes(d.test);
    if (test_classes > classes)
        classes = test_classes;
    if (test_dim != dim) {
        print_error("'%s': training images have %d pixels but test images %d", dir, dim,
                    test_dim);
        goto out;
    }
    /* A wrong --layers for this data set is the user's to fix: status 2, like any bad flag. */
    if (o.sizes[0] != dim) {
        print_error("--layers: the input layer has %d neurons but '%s' has %d inputs per "
                    "sample (try --layers %d,...)", o.sizes[0], dir, dim, dim);
        rc = EXIT_USAGE;
        goto out;
    }
    if (o.sizes[o.n_sizes - 1] < classes) {
        print_error("--layers: the output layer has %d neurons but '%s' has %d classes",
                    o.sizes[o.n_sizes - 1], dir, classes);
        rc = EXIT_USAGE;
        goto out;
    }
    printf("data %s: %zu train, %zu validation, %zu test, %d inputs, %d classes\n", dir,
           bp_dataset_count(d.train), d.valid ? bp_dataset_count(d.valid) : (size_t)0,
           bp_dataset_count(d.test), dim, classes);
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    progress prog = {.epochs = o.epochs};
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = o.epochs;
    tc.batch = o.batch;
    tc.eta = o.eta;
    tc.seed = o.seed;
    tc.on_epoch = print_epoch;
    tc.user = &prog;
    bp_train_result res;
    if ((st = bp_train(net, d.train, d.valid, &tc, &res)) != BP_OK) {
        print_lib_error(st);
        goto out;
    }
    signal(SIGINT, SIG_DFL);
    if (interrupted)
        printf("interrupted: stopped after epoch %d\n", res.epochs);

    float test_acc;
    if ((st = bp_evaluate(net, d.test, &test_acc, NULL)) != BP_OK) {
        print_lib_error(st);
        goto out;
    }
    size_t n_test = bp_dataset_count(d.test);
    /* bp_evaluate reports a fraction; the count is recovered exactly while n < 2^24. */
    size_t correct = (size_t)llround((double)test_acc * (double)n_test);
    printf("test accuracy %.2f%% (%zu/%zu)\n", 100.0 * test_acc, correct, n_test);
    printf("training %.2f s  %.0f samples/s  (wall %.2f s)\n", res.train_seconds,
           res.samples_per_second, now_seconds() - t_start);

    if (summary_file) {
        /* The library's accuracies pass through float; snap them back to count/n so the file
         * says 0.9542 rather than 0.95419999957084656. */
        double valid_acc = res.validation_accuracy;
        if (d.valid && valid_acc >= 0) {
            double nv = (double)bp_dataset_count(d.valid);
            valid_acc = (double)llround(valid_acc * nv) / nv;
        }
        summary s = {
            .test_accuracy = (double)correct / (double)n_test,
            .validation_accuracy = valid_acc,
            .train_seconds = res.train_seconds,
            .samples_per_second = res.samples_per_second,
            .epochs = res.epochs,
            .threads = bp_get_threads(),
            .data_dir = dir,
        };
        FILE *f = summary_file;
        summary_file = NULL; /* commit_summary closes it whatever happens */
        if (commit_summary(f, summary_tmp, o.summary, &o, &s) != 0)
            goto out;
    }
    rc = 0;

out:
    if (summary_file) {
        fclose(summary_file);
        remove(summary_tmp);
    }
    bp_net_free(net);
    data_free(&d);
    return rc;
}

/* ---- main -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc < 2)
        usage_error("missing command");
    const char *cmd = argv[1];
    int rc;
    if (strcmp(cmd, "train") == 0) {
        rc = cmd_train(argc - 1, argv + 1);
    } else if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
               strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        rc = 0;
    } else if (strcmp(cmd, "--version") == 0) {
        printf("backprop %s\n", bp_version());
        rc = 0;
    } else if (cmd[0] == '-') {
        usage_error("unknown option '%s' (the command comes first: backprop train ...)", cmd);
    } else {
        usage_error("unknown command '%s'", cmd);
    }
    /* Output lost to a full disk or a closed pipe is a failure the caller must see. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        print_error("writing standard output: %s", strerror(errno));
        return 1;
    }
    return rc;
}
