/*
 * backprop.c - the `backprop` command-line tool's entry: picks the command and hands it its
 * arguments. Each command is a file of its own (train.c, eval.c, predict.c, inspect.c) on what
 * cli.c shares; everything numeric happens in libbackprop through the public header only, and
 * the tool owns what the library must never do: print, read the environment and exit.
 *
 * Exit status: 0 success; 1 the library or the file system failed (bad or corrupt data, model
 * or image files, a model that does not fit the data or an image, too little memory, an
 * unwritable summary, model, CSV or standard output); 2 the command line is wrong (the user
 * must change it: a bad flag, a configuration the library refuses, --layers that do not fit
 * the data).
 */
#include "cli.h"
#include "ranks.h"
#include "options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *f);
    const char *what;
    const command_line *line; /* its option tables, for help --options */
} command;

static const command commands[] = {
    {"train", cmd_train, train_usage, "train a network on IDX data (its options are below)",
     &train_line},
    {"eval", cmd_eval, eval_usage, "a model's accuracy, cost and confusion matrix on a data set",
     &eval_line},
    {"predict", cmd_predict, predict_usage, "a model's outputs for a data set or PGM images",
     &predict_line},
    {"inspect", cmd_inspect, inspect_usage,
     "a model's architecture, parameters, metadata and weight spectra", &inspect_line},
    {"export", cmd_export, export_usage, "a model as an ONNX model, for other runtimes",
     &export_line},
    {"bench", cmd_bench, bench_usage, "the benchmark harness: training and kernel speed here",
     &bench_line},
    {"plot", cmd_plot, plot_usage,
     "training curves from train --log files, or a model's first layer, as a PNG", &plot_line},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static const command *find_command(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

/* The tool's own usage: the commands, then train's options, train being what most runs are. */
static void main_usage(FILE *f)
{
    fputs("usage: backprop COMMAND [options]\n\ncommands:\n", f);
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].what);
    fputs("  help COMMAND    a command's options and their defaults (or: backprop COMMAND "
          "--help)\n"
          "  openblas-core   the OPENBLAS_CORETYPE this CPU needs, if any\n"
          "  --version       the version; --help: this text\n"
          "\n", f);
    train_usage(f);
}

/* OpenBLAS picks its kernels when it loads, and an OpenBLAS older than the CPU falls back to
 * its slowest ones (see bp_blas_core_fitting). The variable that overrides the choice is read
 * only at load time, so computing with the right kernels means starting again with it set:
 * once, and never over the user's own OPENBLAS_CORETYPE. If the exec fails, go on with what
 * there is. Every command that computes does this, not only train: eval on other kernels than
 * train's could round differently and disagree with the accuracy train printed. */
static void use_fitting_blas_kernels(char **argv)
{
    const char *fits = bp_blas_core_fitting();
    if (!fits || getenv("OPENBLAS_CORETYPE"))
        return;
    if (setenv(FALLBACK_VAR, bp_blas_core(), 1) == 0 && setenv("OPENBLAS_CORETYPE", fits, 1) == 0)
        execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(FALLBACK_VAR);
}

/* backprop help [COMMAND]; and backprop help --options COMMAND, the long options COMMAND
 * accepts, one a line, from the table its parser uses: what a test holds to the usage and to
 * docs/CLI.md, so a flag cannot be added undocumented. */
static int help(int argc, char **argv)
{
    int list = argc > 2 && strcmp(argv[2], "--options") == 0;
    int at = 2 + list;
    if (argc > at + 1)
        usage_error("help: one command at a time, got '%s' after '%s'", argv[at + 1], argv[at]);
    if (list && argc == at)
        usage_error("help --options: which command?");
    const command *about = argc == at + 1 ? find_command(argv[at]) : NULL;
    if (argc == at + 1 && !about)
        usage_error("help: unknown command '%s'", argv[at]);
    if (!list) {
        (about ? about->usage : main_usage)(stdout);
        return 0;
    }
    if (!about->line) {
        print_error("help --options: %s does not describe its flags in option tables",
                    about->name);
        return 1;
    }
    print_option_names(stdout, about->line);
    return 0;
}

int main(int argc, char **argv)
{
    cli_set_usage(main_usage);
    if (argc < 2)
        usage_error("missing command");
    const char *name = argv[1];
    const command *cmd = find_command(name);
    int rc;
    if (cmd) {
        cli_set_usage(cmd->usage);
        use_fitting_blas_kernels(argv);
        rc = cmd->run(argc - 1, argv + 1);
    } else if (strcmp(name, "help") == 0) {
        rc = help(argc, argv);
    } else if (strcmp(name, "openblas-core") == 0) {
        /* For scripts that run other programs on the library (tests, benchmarks): the
         * OPENBLAS_CORETYPE they should export, or nothing. */
        const char *fits = getenv("OPENBLAS_CORETYPE") ? NULL : bp_blas_core_fitting();
        if (fits)
            printf("%s\n", fits);
        rc = 0;
    } else if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        main_usage(stdout);
        rc = 0;
    } else if (strcmp(name, "--version") == 0) {
        printf("backprop %s\nmpi %s\n", bp_version(), ranks_transport());
        rc = 0;
    } else if (name[0] == '-') {
        usage_error("unknown option '%s' (the command comes first: backprop train ...)", name);
    } else {
        usage_error("unknown command '%s'", name);
    }
    if (stdout_failed())
        return 1;
    return rc;
}
