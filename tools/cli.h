/*
 * cli.h - what the `backprop` commands share: the error and usage conventions, the strict
 * number parsers, output that must not be lost (standard output, files replaced atomically),
 * the data-set lookup and loading, and opening a model file. Each command lives in a file of
 * its own (train.c, eval.c, predict.c, inspect.c); backprop.c dispatches to them.
 *
 * Exit status, for every command: 0 success; 1 the library or the file system failed (bad or
 * corrupt data or model files, a model that does not fit the data or image, too little memory,
 * an unwritable output file or standard output); 2 the command line is wrong (a bad flag, a
 * configuration the library refuses, --layers that do not fit the data).
 */
#ifndef BP_TOOLS_CLI_H
#define BP_TOOLS_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backprop.h"

enum {
    EXIT_USAGE = 2,
    MAX_THREADS = 4096,
    PATH_BUF = 4096,
};

/* Set (to OpenBLAS's own choice) when this process re-executed itself with better kernels. */
#define FALLBACK_VAR "BACKPROP_OPENBLAS_FALLBACK"

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* ---- the commands ------------------------------------------------------------------------ */

/* Each takes its own argv (argv[0] is the command's name) and returns the exit status; each
 * usage documents every flag of its command with its default. */
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_plot(int argc, char **argv);
void train_usage(FILE *f);
void eval_usage(FILE *f);
void predict_usage(FILE *f);
void inspect_usage(FILE *f);
void export_usage(FILE *f);
void bench_usage(FILE *f);
void plot_usage(FILE *f);

/* ---- errors and usage -------------------------------------------------------------------- */

/* The usage a command-line mistake is followed by: the running command's (the dispatcher sets
 * it before a command parses its flags). */
void cli_set_usage(void (*usage)(FILE *f));

/* A command-line mistake: "backprop: " and one line naming it, a blank line, the usage, exit 2. */
_Noreturn void usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* A runtime failure outside the library (environment, file system, a file's contents). */
void print_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* The library's last failure: its status and message. */
void print_lib_error(bp_status st);
/* The text of the last print_error (without "backprop: "), "" before any: what a rank of an
 * MPI job hands rank 0 to say (ranks.c). */
const char *last_error_text(void);
/* Keep print_error's messages (last_error_text) without printing them: the ranks after the
 * first of an MPI job, whose failures rank 0 reports. */
void silence_errors(int silent);

/* What getopt_long's '?' meant (an unknown option, an ambiguous prefix, a value given to a flag
 * that takes none), told apart with the command's option table; exits 2. */
_Noreturn void bad_option(const struct option *table, const char *arg, int opt);
/* --help: the usage on standard output, exit 0 (1 if it could not be written). */
_Noreturn void help_exit(void (*usage)(FILE *f));

/* ---- strict value parsing ---------------------------------------------------------------- */

/* Decimal digits and nothing else: 0, -1 for anything else, -2 above UINT64_MAX. */
int parse_digits(const char *s, uint64_t *out);
/* The parsers below exit with a usage error naming flag when the value does not do. */
uint64_t parse_uint(const char *flag, const char *s, uint64_t min, uint64_t max);
uint64_t parse_bytes(const char *flag, const char *s);        /* 512M, 4G */
int is_decimal(const char *s);
float parse_eta(const char *flag, const char *s);             /* a decimal number > 0 */
float parse_strength(const char *flag, const char *s);        /* >= 0 */
float parse_probability(const char *flag, const char *s);     /* in [0, 1) */
float parse_fraction(const char *flag, const char *s);        /* in [0, 1), no sign */
/* A file name: anything but empty. */
const char *parse_path(const char *flag, const char *s);

/* The names name(0 .. count-1) but skip, joined by sep, into buf. */
void list_names(char *buf, size_t size, const char *sep, int count, int skip,
                const char *(*name)(int));

const char *plural(long n, const char *one, const char *many);

/* ---- output ------------------------------------------------------------------------------ */

/* Whether standard output has failed (a full disk, a closed pipe); said once, on stderr. */
int stdout_failed(void);

/* A span in which no termination signal may end the process (a temporary file exists in it);
 * one that arrives is delivered at critical_end. */
typedef struct critical {
    sigset_t mask;
    struct sigaction old[3];
} critical;
void critical_begin(critical *c);
void critical_end(critical *c);

/* Before the long work: whether path could be replaced now (bp_file_check_replaceable), with
 * "flag: why" on stderr when not. 0 or -1. */
int check_output_path(const char *flag, const char *path);

/* Format into memory with format(f, arg) and replace path with it atomically, signals held off
 * for the write. format returns 0, or -1 when it failed and has said why (path is then left
 * as it was). Other failures are said as "flag: why". 0 or -1. */
int write_output_file(const char *flag, const char *path,
                      int (*format)(FILE *f, const void *arg), const void *arg);

/* ---- data sets --------------------------------------------------------------------------- */

/* Where --data points, and the environment variable that said so: a path the user never typed
 * must be traced back to where it came from. */
typedef struct data_dir {
    char path[PATH_BUF];
    const char *var;   /* "BACKPROP_MNIST_DIR", ...; NULL for --data DIR and the HOME default */
    const char *value; /* the variable's value */
} data_dir;

/* mnist, fashion or a directory -> dd; -1 (said) only if the environment leaves no answer. */
int resolve_data_dir(const char *data, data_dir *dd);

/* What is wrong with path as a directory (want_dir) or a regular file, as the rest of a
 * sentence that starts with its name (" is a directory, not a regular file", ": no such
 * file"): 0 if nothing, 1 if it does not exist at all, -1 for anything else. */
int describe_node(const char *path, int want_dir, char *why, size_t size);

enum { TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS, DATA_FILES };
#define DATA_TRAIN_FILES (1u << TRAIN_IMAGES | 1u << TRAIN_LABELS)
#define DATA_TEST_FILES (1u << TEST_IMAGES | 1u << TEST_LABELS)
#define DATA_ALL_FILES (DATA_TRAIN_FILES | DATA_TEST_FILES)

/* The files `files` selects (bits of the enum above), raw or .gz; -1 (said) if one is not
 * there. */
int find_data(const char *spec, const data_dir *dd, unsigned files,
              char path[DATA_FILES][PATH_BUF]);

/* The training file, split as Nielsen splits MNIST's 60,000 (the first 50,000 train, the last
 * 10,000 validate: the last 1/6), and the test file. Only the pairs loaded are set. */
typedef struct data {
    bp_dataset *all, *train, *valid, *test;
} data;
void data_free(data *d);

/* Load the pairs `files` selects (whole pairs: DATA_TRAIN_FILES, DATA_TEST_FILES or both),
 * images held to *shape; the training pair is split. -1 (said) on failure. */
int load_data(char path[DATA_FILES][PATH_BUF], unsigned files, const bp_idx_expect *shape,
              data *d);

/* Labels that cannot be right (above MNIST's 9, or a lone value far above the others): -1
 * (said, naming the file and the sample). Checks the sets that are loaded. */
int check_labels(const char *spec, const data *d, char path[DATA_FILES][PATH_BUF]);

/* The class names of a known data set ("0,1,...,9" for mnist, Fashion-MNIST's ten for fashion),
 * comma-separated; NULL for a directory of unknown contents. */
const char *data_class_names(const char *spec);

/* The sets a model can be judged on. */
typedef enum data_set { SET_TEST = 0, SET_VALIDATION, SET_TRAIN, SET_COUNT } data_set;
data_set parse_set(const char *flag, const char *s);
const char *set_name(data_set s);

/* ---- models ------------------------------------------------------------------------------ */

/* Open a model file for eval, predict and inspect: path checked as a regular file first (so a
 * missing file, a directory or a dangling link is said as for a data file), then read by
 * bp_model_load with threads (0: the library's default) and buffers planned for max_batch
 * columns. -1 (said, naming the file) on failure. */
int open_model(const char *path, int threads, int max_batch, bp_net **net, bp_model_meta *meta);

/* The set `set` of the data set spec (resolved to dd), for the model in model_path: the image
 * files' shape held to the model's (its metadata's, else its input width) before any payload
 * is read, the labels checked and within the model's outputs. *out is a view into d (which the
 * caller frees with data_free). -1 (said) on failure, all status 1: the files do not fit each
 * other. */
int load_set_for_model(const char *spec, const data_dir *dd, data_set set, const bp_net *net,
                       const bp_model_meta *meta, const char *model_path, data *d,
                       const bp_dataset **out);

/* The index of the largest of a[0 .. n), the first one on a tie: how bp_evaluate counts a
 * sample as right. */
int argmax(const float *a, int n);

/* Forward passes over the first `limit` samples of ds (all when limit is larger), `per_pass`
 * samples a pass (1 .. FORWARD_CHUNK), calling each(user, first, batch, out, n_out) with the
 * outputs of samples first .. first+batch-1 (column-major, n_out a column). A non-zero return
 * from each stops it. 0, or -1 (said or, for each's failure, its own).
 *
 * The outputs of a sample can differ in their last bits with the batch it is computed in (the
 * matrix products block and round differently for different widths; one column goes through a
 * matrix-vector product). FORWARD_CHUNK is bp_evaluate's own batch: in chunks of it the outputs,
 * and the accuracy counted from them, are the ones bp_evaluate gave train. In chunks of 1 they
 * depend on the sample and the model alone. */
enum { FORWARD_CHUNK = 256 };
int forward_set(bp_net *net, const bp_dataset *ds, size_t limit, int per_pass,
                int (*each)(void *user, size_t first, int batch, const float *out, int n_out),
                void *user);

#endif
