/*
 * cli.c - what the `backprop` commands share (cli.h says what and why): messages and exit
 * statuses, strict numbers, output that must not be lost, the data sets and model files.
 */
#include "cli.h"
#include "options.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------------------------ */

static void (*current_usage)(FILE *f);

void cli_set_usage(void (*usage)(FILE *f)) { current_usage = usage; }

/* The usage follows the message so the fix is on screen. */
static int errors_silenced;

_Noreturn void usage_error(const char *fmt, ...)
{
    if (errors_silenced) /* every rank of an MPI job meets the same mistake: rank 0 says it */
        exit(EXIT_USAGE);
    va_list ap;
    fputs("backprop: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n\n", stderr);
    if (current_usage)
        current_usage(stderr);
    exit(EXIT_USAGE);
}

static char last_error[1024];

void print_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (errors_silenced)
        return;
    fputs("backprop: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *last_error_text(void) { return last_error; }

void silence_errors(int silent) { errors_silenced = silent; }

void print_lib_error(bp_status st)
{
    print_error("%s: %s", bp_status_str(st), bp_last_error());
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* getopt_long returns '?' for an unknown option, an ambiguous abbreviation and a value given
 * to a flag that takes none alike; the table tells them apart. */
_Noreturn void bad_option(const struct option *table, const char *arg, int opt)
{
    if (strncmp(arg, "--", 2) != 0) {
        if (opt > 0 && opt < 256)
            usage_error("unknown option '-%c'", opt);
        usage_error("unknown option '%s'", arg);
    }
    const char *name = arg + 2;
    size_t len = strcspn(name, "=");
    /* The candidates in alphabetical order: the table's order is the usage's, by group, and
     * says nothing to someone who typed a prefix. */
    const char *cand[256];
    int n = 0;
    const struct option *exact = NULL, *only = NULL;
    for (const struct option *op = table; op->name; op++) {
        if (strncmp(op->name, name, len) != 0)
            continue;
        if (op->name[len] == '\0')
            exact = op;
        only = op;
        if (n < 256)
            cand[n++] = op->name;
    }
    qsort(cand, (size_t)n, sizeof cand[0], compare_names);
    char matches[512] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        int w = snprintf(matches + used, sizeof matches - used, "%s--%s", used ? ", " : "",
                         cand[i]);
        if (w > 0 && (size_t)w < sizeof matches - used)
            used += (size_t)w;
    }
    if (exact || n == 1) {
        const struct option *op = exact ? exact : only;
        if (op->has_arg == no_argument && name[len] == '=')
            usage_error("option '--%s' takes no value", op->name);
        usage_error("option '%s' is malformed", arg);
    }
    if (n > 1 && len > 0)
        usage_error("ambiguous option '--%.*s' (could be %s)", (int)len, name, matches);
    usage_error("unknown option '--%.*s'", (int)len, name);
}

_Noreturn void help_exit(void (*usage)(FILE *f))
{
    usage(stdout);
    exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
}

/* ---- strict value parsing ---------------------------------------------------------------- */

/* The old entry points, each one kind of value of the one parser (options.c). */
int parse_digits(const char *s, uint64_t *out)
{
    static const number_spec any = {.kind = NUMBER_WHOLE, .max = UINT64_MAX};
    number v;
    int r = read_number(s, &any, &v);
    if (r == NUMBER_OK)
        *out = v.whole;
    return r == NUMBER_OK ? 0 : r == NUMBER_SYNTAX ? -1 : -2;
}

uint64_t parse_bytes(const char *flag, const char *s)
{
    static const number_spec bytes = {.kind = NUMBER_SIZE, .min = 1, .max = UINT64_MAX};
    return parse_number(flag, s, &bytes).whole;
}

uint64_t parse_uint(const char *flag, const char *s, uint64_t min, uint64_t max)
{
    const number_spec whole = {.kind = NUMBER_WHOLE, .min = min, .max = max};
    return parse_number(flag, s, &whole).whole;
}

float parse_eta(const char *flag, const char *s)
{
    return parse_number(flag, s, &NUMBER_POSITIVE).decimal;
}

float parse_strength(const char *flag, const char *s)
{
    return parse_number(flag, s, &NUMBER_NONNEGATIVE).decimal;
}

float parse_probability(const char *flag, const char *s)
{
    return parse_number(flag, s, &NUMBER_UNIT_INTERVAL).decimal;
}

float parse_fraction(const char *flag, const char *s)
{
    static const number_spec fraction = {.kind = NUMBER_DECIMAL, .low = 0.0f, .high = 1.0f,
                                         .high_open = 1, .example = "0.9"};
    return parse_number(flag, s, &fraction).decimal;
}

const char *parse_path(const char *flag, const char *s)
{
    if (s[0] == '\0')
        usage_error("%s: empty file name", flag);
    return s;
}

/* The valid names of an enum, for a message ("sigmoid, tanh, relu") or the usage
 * ("sigmoid|tanh|relu"): always the library's, so a new name needs no edit here. */
void list_names(char *buf, size_t size, const char *sep, int count, int skip,
                const char *(*name)(int))
{
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < count; i++) {
        if (i == skip)
            continue;
        int w = snprintf(buf + used, size - used, "%s%s", used ? sep : "", name(i));
        if (w < 0 || (size_t)w >= size - used)
            break;
        used += (size_t)w;
    }
}

/* ---- data -------------------------------------------------------------------------------- */

const char *plural(long n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static int join_path(char *out, size_t size, const char *a, const char *b)
{
    int w = snprintf(out, size, "%s/%s", a, b);
    return w >= 0 && (size_t)w < size ? 0 : -1;
}

/* Fails (status 1) only if the environment leaves no answer. */
int resolve_data_dir(const char *spec, data_dir *dd)
{
    const char *env;
    int w;
    dd->var = dd->value = NULL;
    if (strcmp(spec, "mnist") == 0) {
        if ((env = getenv("BACKPROP_MNIST_DIR")) && *env) {
            dd->var = "BACKPROP_MNIST_DIR";
            w = snprintf(dd->path, sizeof dd->path, "%s", env);
        } else if ((env = getenv("BACKPROP_DATA_DIR")) && *env) {
            dd->var = "BACKPROP_DATA_DIR";
            w = snprintf(dd->path, sizeof dd->path, "%s/mnist", env);
        } else if ((env = getenv("HOME")) && *env) {
            w = snprintf(dd->path, sizeof dd->path, "%s/.cache/backprop/mnist", env);
        } else {
            print_error("HOME is not set: set BACKPROP_MNIST_DIR or BACKPROP_DATA_DIR");
            return -1;
        }
        dd->value = env;
    } else if (strcmp(spec, "fashion") == 0) {
        if ((env = getenv("BACKPROP_FASHION_DIR")) && *env) {
            dd->var = "BACKPROP_FASHION_DIR";
            dd->value = env;
            w = snprintf(dd->path, sizeof dd->path, "%s", env);
        } else {
            w = snprintf(dd->path, sizeof dd->path, "%s", "/usr/share/datasets/fashion-mnist");
        }
    } else {
        w = snprintf(dd->path, sizeof dd->path, "%s", spec);
    }
    if (w < 0 || (size_t)w >= sizeof dd->path) {
        if (dd->var)
            print_error("%s: the data directory path is too long", dd->var);
        else
            print_error("the data directory path is too long");
        return -1;
    }
    return 0;
}

/* "BACKPROP_MNIST_DIR=/x", "BACKPROP_DATA_DIR=/x: data directory '/x/mnist'" or
 * "data directory '/x'": the subject of a message about the data directory. */
static void data_dir_name(const data_dir *dd, char *buf, size_t size)
{
    if (!dd->var)
        snprintf(buf, size, "data directory '%s'", dd->path);
    else if (strcmp(dd->value, dd->path) == 0)
        snprintf(buf, size, "%s=%s", dd->var, dd->value);
    else
        snprintf(buf, size, "%s=%s: data directory '%s'", dd->var, dd->value, dd->path);
}

static const char *data_hint(const char *spec)
{
    if (strcmp(spec, "mnist") == 0)
        return "run scripts/fetch-mnist.sh (or set BACKPROP_MNIST_DIR)";
    if (strcmp(spec, "fashion") == 0)
        return "apt-get install dataset-fashion-mnist (or set BACKPROP_FASHION_DIR)";
    return "expected the four MNIST-format IDX files, raw or .gz";
}

/* What is wrong with path as a directory (want_dir) or a data file, as the rest of a sentence
 * that starts with its name: " is a directory, not a regular file", ": no such directory".
 * "No such file" would be a lie for a dangling link or a link loop, and sends the user
 * looking in the wrong place. Returns 0 if nothing is wrong, 1 if path does not exist at all,
 * -1 for anything else. */
int describe_node(const char *path, int want_dir, char *why, size_t size)
{
    struct stat st;
    why[0] = '\0';
    if (stat(path, &st) == 0) {
        if (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode))
            return 0;
        snprintf(why, size, " is %s, not %s", bp_file_kind(st.st_mode),
                 want_dir ? "a directory" : "a regular file");
        return -1;
    }
    int err = errno;
    struct stat lst;
    if (err == ENOENT && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        char to[PATH_BUF];
        ssize_t n = readlink(path, to, sizeof to - 1);
        to[n > 0 ? n : 0] = '\0';
        snprintf(why, size, " is a dangling symbolic link (to '%s')", to);
        return -1;
    }
    if (err == ENOENT) {
        snprintf(why, size, ": %s", want_dir ? "no such directory" : "no such file");
        return 1;
    }
    if (err == ELOOP)
        snprintf(why, size, ": too many levels of symbolic links (a link loop?)");
    else
        snprintf(why, size, ": %s", strerror(err));
    return -1;
}

/* dir/base if it is a regular file, else dir/base.gz: the raw file wins because it loads
 * faster. When neither will do, why names what is wrong with the one that is there in some
 * form (raw first), or is "" when neither exists. */
static int find_idx(const char *dir, const char *base, char *out, size_t size, char *why,
                    size_t why_size)
{
    char gz_base[64], gz[PATH_BUF], raw_why[128], gz_why[128];
    snprintf(gz_base, sizeof gz_base, "%s.gz", base);
    if (join_path(out, size, dir, base) != 0 || join_path(gz, sizeof gz, dir, gz_base) != 0) {
        snprintf(why, why_size, "'%s/%s': path too long", dir, base);
        return -1;
    }
    int raw = describe_node(out, 0, raw_why, sizeof raw_why);
    if (raw == 0)
        return 0;
    int packed = describe_node(gz, 0, gz_why, sizeof gz_why);
    if (packed == 0) {
        snprintf(out, size, "%s", gz);
        return 0;
    }
    /* The precision only bounds what GCC's truncation check can prove: paths fit PATH_BUF. */
    if (raw < 0)
        snprintf(why, why_size, "'%.4096s'%s", out, raw_why);
    else if (packed < 0)
        snprintf(why, why_size, "'%.4096s'%s", gz, gz_why);
    else
        why[0] = '\0';
    return -1;
}

static const char *const data_names[DATA_FILES] = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
};

int find_data(const char *spec, const data_dir *dd, unsigned files,
              char path[DATA_FILES][PATH_BUF])
{
    char name[2 * PATH_BUF + 64], why[PATH_BUF + 256];
    data_dir_name(dd, name, sizeof name);
    if (describe_node(dd->path, 1, why, sizeof why) != 0) {
        print_error("%s%s; %s", name, why, data_hint(spec));
        return -1;
    }
    for (int i = 0; i < DATA_FILES; i++) {
        if (!(files & 1u << i))
            continue;
        if (find_idx(dd->path, data_names[i], path[i], PATH_BUF, why, sizeof why) == 0)
            continue;
        if (why[0])
            print_error("%s", why);
        else
            print_error("no %s[.gz] in %s; %s", data_names[i], name, data_hint(spec));
        return -1;
    }
    return 0;
}

void data_free(data *d)
{
    bp_dataset_free(d->train);
    bp_dataset_free(d->valid);
    bp_dataset_free(d->test);
    bp_dataset_free(d->all);
}

int load_data(char path[DATA_FILES][PATH_BUF], unsigned files, const bp_idx_expect *shape,
              data *d)
{
    bp_status st;
    int train = (files & DATA_TRAIN_FILES) != 0, test = (files & DATA_TEST_FILES) != 0;
    if ((train && (st = bp_dataset_load_idx_ex(&d->all, path[TRAIN_IMAGES], path[TRAIN_LABELS],
                                               shape)) != BP_OK) ||
        (test && (st = bp_dataset_load_idx_ex(&d->test, path[TEST_IMAGES], path[TEST_LABELS],
                                              shape)) != BP_OK)) {
        print_lib_error(st);
        return -1;
    }
    if (!train)
        return 0;
    /* Nielsen keeps the last 10,000 of MNIST's 60,000 training images for validation; 1/6
     * reproduces that exactly and scales to smaller (test) sets. */
    size_t n = bp_dataset_count(d->all);
    size_t n_valid = n / 6, n_train = n - n_valid;
    if ((st = bp_dataset_slice(d->all, 0, n_train, &d->train)) != BP_OK ||
        (n_valid > 0 && (st = bp_dataset_slice(d->all, n_train, n_valid, &d->valid)) != BP_OK)) {
        print_lib_error(st);
        return -1;
    }
    return 0;
}

/* A label is a byte, so a corrupt one is any value up to 255, and the data set would quietly
 * grow its classes to fit it: the user would then be told to widen --layers for a class that
 * does not exist. MNIST and Fashion-MNIST have 10 classes by definition. For any other data set
 * the labels are the only evidence: classes are 0..K-1 and each occurs, so a largest label
 * with values missing below it is taken for the corrupt one. Status 1: the data is wrong, not
 * the command line. */
int check_labels(const char *spec, const data *d, char path[DATA_FILES][PATH_BUF])
{
    const bp_dataset *sets[2] = {d->all, d->test};
    const char *files[2] = {path[TRAIN_LABELS], path[TEST_LABELS]};
    const char *known = strcmp(spec, "mnist") == 0     ? "MNIST"
                        : strcmp(spec, "fashion") == 0 ? "Fashion-MNIST"
                                                       : NULL;
    enum { KNOWN_CLASSES = 10, LABEL_VALUES = 256 };
    unsigned char seen[LABEL_VALUES] = {0};
    int largest = -1, distinct = 0;
    for (int k = 0; k < 2; k++) {
        size_t n = sets[k] ? bp_dataset_count(sets[k]) : 0;
        for (size_t i = 0; i < n; i++) {
            int y = bp_dataset_label(sets[k], i);
            if ((known && y >= KNOWN_CLASSES) || y < 0 || y >= LABEL_VALUES) {
                print_error("'%s': sample index %zu has label %d, but %s has %d classes "
                            "(0..%d): the file is corrupt", files[k], i, y,
                            known ? known : "an IDX label file", known ? KNOWN_CLASSES : 256,
                            known ? KNOWN_CLASSES - 1 : 255);
                return -1;
            }
            distinct += !seen[y];
            seen[y] = 1;
            if (y > largest)
                largest = y;
        }
    }
    if (known || distinct == largest + 1)
        return 0;
    for (int k = 0; k < 2; k++) {
        size_t n = sets[k] ? bp_dataset_count(sets[k]) : 0;
        for (size_t i = 0; i < n; i++)
            if (bp_dataset_label(sets[k], i) == largest) {
                print_error("'%s': sample index %zu has label %d, but only %d of the values "
                            "0..%d occur as labels: label %d looks corrupt", files[k], i,
                            largest, distinct, largest, largest);
                return -1;
            }
    }
    return -1;
}

const char *data_class_names(const char *spec)
{
    if (strcmp(spec, "mnist") == 0)
        return "0,1,2,3,4,5,6,7,8,9";
    /* Zalando's names, in label order (github.com/zalandoresearch/fashion-mnist). */
    if (strcmp(spec, "fashion") == 0)
        return "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot";
    return NULL;
}

static const char *const set_names[SET_COUNT] = {"test", "validation", "train"};

data_set parse_set(const char *flag, const char *s)
{
    for (int i = 0; i < SET_COUNT; i++)
        if (strcmp(s, set_names[i]) == 0)
            return (data_set)i;
    usage_error("%s: unknown set '%s' (known: test, validation, train)", flag, s);
}

const char *set_name(data_set s) { return s >= 0 && s < SET_COUNT ? set_names[s] : "unknown"; }

/* ---- output ------------------------------------------------------------------------------ */

static int stdout_reported;

/* Output lost to a full disk or a closed pipe is a failure the caller must see, and as soon as
 * it happens: a run printing into /dev/full must not train for an hour first. */
int stdout_failed(void)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return 0;
    if (!stdout_reported)
        print_error("writing standard output: %s", strerror(errno ? errno : EIO));
    stdout_reported = 1;
    return 1;
}

static const int deferrable[3] = {SIGINT, SIGTERM, SIGHUP};

/* One that arrived while an output file was being written, to be acted on afterwards. */
static volatile sig_atomic_t deferred_signal;

static void on_deferred(int sig) { deferred_signal = sig; }

/* While an output file's temporary file (or the preflight's probe) exists, no termination signal
 * may end the process, or the file stays behind. Blocking them on this thread is not enough:
 * a signal sent to the process goes to any thread that does not block it, and the net's team
 * and OpenBLAS's pool have their own masks. So a handler that only records the signal is
 * installed too, wherever it lands; critical_end delivers it again once the file is renamed
 * or removed. */
void critical_begin(critical *c)
{
    sigset_t block;
    sigemptyset(&block);
    for (int i = 0; i < 3; i++)
        sigaddset(&block, deferrable[i]);
    deferred_signal = 0;
    pthread_sigmask(SIG_BLOCK, &block, &c->mask);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_deferred;
    sa.sa_mask = block;
    for (int i = 0; i < 3; i++)
        sigaction(deferrable[i], &sa, &c->old[i]);
}

void critical_end(critical *c)
{
    for (int i = 0; i < 3; i++)
        sigaction(deferrable[i], &c->old[i], NULL);
    /* A signal still pending on this thread is delivered here, to the restored handler. */
    pthread_sigmask(SIG_SETMASK, &c->mask, NULL);
    if (deferred_signal)
        raise(deferred_signal);
}

/* Before the work: an output that cannot be written should fail now, not after an hour of
 * training. */
int check_output_path(const char *flag, const char *path)
{
    critical c;
    critical_begin(&c);
    bp_status st = bp_file_check_replaceable(path);
    if (st != BP_OK)
        print_error("%s: %s", flag, bp_last_error());
    critical_end(&c);
    return st == BP_OK ? 0 : -1;
}

/* Formatted in memory and handed to the library's atomic write in one piece, so no temporary
 * file exists during the work, and then only for as long as the write takes. */
int write_output_file(const char *flag, const char *path,
                      int (*format)(FILE *f, const void *arg), const void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        print_error("%s: %s", flag, strerror(errno));
        return -1;
    }
    if (format(f, arg) != 0) {
        fclose(f);
        free(buf);
        return -1;
    }
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        print_error("%s: cannot format the output in memory: %s", flag, strerror(ENOMEM));
        free(buf);
        return -1;
    }
    critical c;
    critical_begin(&c);
    bp_status st = bp_file_write_atomic(path, buf, len);
    if (st != BP_OK)
        print_error("%s: %s", flag, bp_last_error());
    free(buf);
    critical_end(&c);
    return st == BP_OK ? 0 : -1;
}

/* ---- models ------------------------------------------------------------------------------ */

int open_model(const char *path, int threads, int max_batch, bp_net **net, bp_model_meta *meta)
{
    char why[PATH_BUF + 256];
    /* The library's reader would say "cannot open" for all of these alike. */
    if (describe_node(path, 0, why, sizeof why) != 0) {
        print_error("--model: '%s'%s", path, why);
        return -1;
    }
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.threads = threads;
    cfg.max_batch = max_batch;
    bp_status st = bp_model_load(net, path, &cfg, meta);
    if (st != BP_OK) {
        print_lib_error(st); /* the library's message names the file and the field */
        return -1;
    }
    return 0;
}

int argmax(const float *a, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (a[i] > a[best])
            best = i;
    return best;
}

int forward_set(bp_net *net, const bp_dataset *ds, size_t limit, int per_pass,
                int (*each)(void *user, size_t first, int batch, const float *out, int n_out),
                void *user)
{
    size_t n = bp_dataset_count(ds);
    if (limit < n)
        n = limit;
    int dim = bp_dataset_dim(ds), n_out = bp_net_size(net, bp_net_layers(net));
    size_t chunk = n < (size_t)per_pass ? n : (size_t)per_pass;
    float *x = malloc(sizeof(float) * (chunk ? chunk : 1) * (size_t)dim);
    float *out = malloc(sizeof(float) * (chunk ? chunk : 1) * (size_t)n_out);
    size_t *idx = malloc(sizeof(size_t) * (chunk ? chunk : 1));
    int rc = 0;
    if (!x || !out || !idx) {
        print_error("%s", strerror(ENOMEM));
        rc = -1;
    }
    for (size_t first = 0; rc == 0 && first < n; first += chunk) {
        int batch = (int)(n - first < chunk ? n - first : chunk);
        for (int j = 0; j < batch; j++)
            idx[j] = first + (size_t)j;
        bp_status st;
        if ((st = bp_dataset_gather(ds, idx, batch, x, NULL, n_out)) != BP_OK ||
            (st = bp_net_forward(net, x, dim, batch, out, n_out)) != BP_OK) {
            print_lib_error(st);
            rc = -1;
        } else if (each(user, first, batch, out, n_out) != 0) {
            rc = -1;
        }
    }
    free(x);
    free(out);
    free(idx);
    return rc;
}

int load_set_for_model(const char *spec, const data_dir *dd, data_set set, const bp_net *net,
                       const bp_model_meta *meta, const char *model_path, data *d,
                       const bp_dataset **out)
{
    char path[DATA_FILES][PATH_BUF];
    unsigned files = set == SET_TEST ? DATA_TEST_FILES : DATA_TRAIN_FILES;
    int images = set == SET_TEST ? TEST_IMAGES : TRAIN_IMAGES;
    if (find_data(spec, dd, files, path) != 0)
        return -1;
    bp_idx_info info;
    bp_status st = bp_idx_info_read(path[images], &info);
    if (st != BP_OK) {
        print_lib_error(st);
        return -1;
    }
    int width = bp_net_size(net, 0);
    /* The shape, not just the pixel count: 784x1 images are not 28x28 ones. */
    if (meta->input_rows > 0 &&
        (info.rows != meta->input_rows || info.cols != meta->input_cols)) {
        print_error("'%s' holds %dx%d images but the model '%s' was trained on %dx%d images",
                    path[images], info.rows, info.cols, model_path, meta->input_rows,
                    meta->input_cols);
        return -1;
    }
    if ((long long)info.rows * info.cols != width) {
        print_error("'%s' has %d %s per sample (%dx%d images) but the model '%s' takes %d",
                    path[images], info.rows * info.cols,
                    plural((long)info.rows * info.cols, "input", "inputs"), info.rows,
                    info.cols, model_path, width);
        return -1;
    }
    const bp_idx_expect shape = {.rows = info.rows, .cols = info.cols};
    if (load_data(path, files, &shape, d) != 0 || check_labels(spec, d, path) != 0)
        return -1;
    const bp_dataset *ds = set == SET_TEST ? d->test : set == SET_TRAIN ? d->train : d->valid;
    if (!ds) {
        print_error("'%s' has too few images (%zu) to split a validation set off: --set "
                    "validation needs 6 or more", path[TRAIN_IMAGES], bp_dataset_count(d->all));
        return -1;
    }
    if (bp_dataset_count(ds) == 0) {
        print_error("'%s' holds no images", path[images]);
        return -1;
    }
    int classes = bp_dataset_classes(ds), outputs = bp_net_size(net, bp_net_layers(net));
    if (classes > outputs) {
        print_error("'%s' has %d classes but the model '%s' has %d %s",
                    path[set == SET_TEST ? TEST_LABELS : TRAIN_LABELS], classes, model_path,
                    outputs, plural(outputs, "output", "outputs"));
        return -1;
    }
    *out = ds;
    return 0;
}
