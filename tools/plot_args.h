/*
 * plot_args.h - `backprop plot`'s command line (plot_args.c), in every build: the option
 * tables that its usage and `backprop help --options plot` come from, and the checks of what
 * the flags cannot say one by one. With cairo, plot.c draws what they ask for; without it,
 * plot_none.c takes the same command line and says how to get plotting.
 */
#ifndef BP_TOOLS_PLOT_ARGS_H
#define BP_TOOLS_PLOT_ARGS_H

#include "options.h"

enum {
    PLOT_MAX_PANELS = 8,
    PLOT_MAX_RUNS = 10, /* one colour each (plot_curves.c's palette) */
    PLOT_MAX_SERIES = 2, /* a panel draws at most train and validation of one quantity */
    PLOT_NAME = 256,
};

typedef struct plot_options {
    output_args output;  /* -o/--out */
    const char **logs;   /* the operands */
    int n_logs;
    const char *labels[PLOT_MAX_RUNS]; /* --label, in order; n_labels 0 or n_logs */
    int n_labels;
    char *metrics[PLOT_MAX_PANELS]; /* --metric entries, split at commas; owned */
    int n_metrics;
    const char *weights; /* --weights MODEL */
    int width, height;   /* --size */
    int log_y;           /* --log-y */
} plot_options;

/* Parse argv into *o (usage errors exit 2, --help exits 0). plot_options_free frees it. */
void parse_plot_args(int argc, char **argv, plot_options *o);
void plot_options_free(plot_options *o);

#endif
