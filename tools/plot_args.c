/*
 * plot_args.c - `backprop plot`'s flags, on the option tables every command uses
 * (options.h), and the rules between them: logs or --weights, never both; a label per log.
 */
#include "log.h"
#include "plot_args.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum {
    DEFAULT_WIDTH = 1200,
    DEFAULT_HEIGHT = 800,
    MIN_SIDE = 200,
    MAX_SIDE = 16384, /* cairo's image surfaces stop at 32767; 16384^2 RGB is 1 GiB already */
};

enum { PLOT_METRIC, PLOT_LABEL, PLOT_LOG_Y, PLOT_SIZE, PLOT_WEIGHTS };

static const opt_spec plot_opts[] = {
    {"metric", PLOT_METRIC, "NAME[,NAME...]",
     "a panel per NAME (repeatable, at most 8)\n"
     "of: cost (training solid, validation dashed),\n"
     "accuracy, train_cost, validation_cost,\n"
     "validation_accuracy, eta, seconds, samples_per_second,\n"
     "or a tensor's name as the log has it (layers.0.weight\n"
     "or grad_norm:layers.0.weight): its gradient norm, in\n"
     "logs trained with norms (the default of train --log)", 0, 0},
    {"label", PLOT_LABEL, "NAME", "the legend's name of each LOG in turn\n"
     "(repeated, one per LOG)", 0, 0},
    {"log-y", PLOT_LOG_Y, NULL, "values on a log scale, ticks at decades\n"
     "(a value <= 0 is left out, as a null is)", 0, 0},
    {"size", PLOT_SIZE, "WxH", "the picture in pixels, 200..16384 a side", 0, 0},
    {"weights", PLOT_WEIGHTS, "MODEL", "the first dense layer's weights of a model\n"
     "file instead of curves, a tile per unit in the image's shape", 0, 0},
    {0},
};

/* "1200x800" -> width, height. */
static void parse_size(const char *flag, const char *s, plot_options *o)
{
    const char *x = strchr(s, 'x');
    char w[24], h[24];
    size_t wl = x ? (size_t)(x - s) : 0;
    if (!x || wl == 0 || wl >= sizeof w || strlen(x + 1) >= sizeof h)
        usage_error("%s: '%s' is not WIDTHxHEIGHT in pixels (e.g. %dx%d)", flag, s,
                    DEFAULT_WIDTH, DEFAULT_HEIGHT);
    memcpy(w, s, wl);
    w[wl] = '\0';
    snprintf(h, sizeof h, "%s", x + 1);
    o->width = (int)parse_uint("--size (width)", w, MIN_SIDE, MAX_SIDE);
    o->height = (int)parse_uint("--size (height)", h, MIN_SIDE, MAX_SIDE);
}

/* --metric a,b: each entry kept (and owned) in turn. */
static void add_metrics(const char *flag, const char *s, plot_options *o)
{
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (len == 0)
            usage_error("%s: an empty name in '%s'", flag, s);
        if (o->n_metrics == PLOT_MAX_PANELS)
            usage_error("%s: more than %d panels", flag, PLOT_MAX_PANELS);
        char *m = strndup(p, len);
        if (!m) {
            print_error("%s", strerror(ENOMEM));
            exit(1);
        }
        o->metrics[o->n_metrics++] = m;
        if (!p[len])
            return;
        p += len + 1;
    }
}

static void add_label(const char *flag, const char *s, plot_options *o)
{
    if (!*s)
        usage_error("%s: an empty name", flag);
    if (strlen(s) >= PLOT_NAME)
        usage_error("%s: '%.40s...' is longer than %d bytes", flag, s, PLOT_NAME - 1);
    if (!is_utf8(s)) /* all cairo's text takes */
        usage_error("%s: '%s' is not UTF-8", flag, s);
    if (o->n_labels == PLOT_MAX_RUNS)
        usage_error("%s: more than %d runs", flag, PLOT_MAX_RUNS);
    o->labels[o->n_labels++] = s;
}

static void plot_parse(void *target, const opt_spec *spec, const char *flag, const char *value)
{
    plot_options *o = target;
    switch (spec->key) {
    case PLOT_METRIC: add_metrics(flag, value, o); break;
    case PLOT_LABEL: add_label(flag, value, o); break;
    case PLOT_LOG_Y: o->log_y = 1; break;
    case PLOT_SIZE: parse_size(flag, value, o); break;
    case PLOT_WEIGHTS: o->weights = parse_path(flag, value); break;
    }
}

static void plot_describe(const void *target, const opt_spec *spec, opt_text *t)
{
    const plot_options *o = target;
    switch (spec->key) {
    case PLOT_METRIC: snprintf(t->dflt, sizeof t->dflt, "cost,accuracy"); break;
    case PLOT_LABEL: snprintf(t->dflt, sizeof t->dflt, "the file names"); break;
    case PLOT_LOG_Y: snprintf(t->dflt, sizeof t->dflt, "linear"); break;
    case PLOT_SIZE: snprintf(t->dflt, sizeof t->dflt, "%dx%d", o->width, o->height); break;
    }
}

static const opt_group plot_group = {"plot", plot_opts, plot_parse, plot_describe};

static void plot_init(void *opts)
{
    *(plot_options *)opts = (plot_options){.output.out_default = "required",
                                           .width = DEFAULT_WIDTH, .height = DEFAULT_HEIGHT};
}

const command_line plot_line = {
    .name = "plot",
    .synopsis = "usage: backprop plot LOG [LOG ...] -o FILE.png [--metric NAME[,NAME...]]\n"
                "                     [--label NAME ...] [--log-y] [--size WxH]\n"
                "       backprop plot --weights MODEL -o FILE.png [--size WxH]\n",
    .about = "Curves of training runs against the epoch, from the logs `backprop train --log`\n"
             "wrote (FILE.jsonl, or FILE.csv), one colour per run and a legend naming the\n"
             "runs; or a model's first dense layer as a grid of images, one per unit, in the\n"
             "image shape the model was trained on (blue negative, white 0, red positive, one\n"
             "scale for the layer). Drawn with cairo into a PNG that replaces FILE whole.\n",
    .notes = "Runs take the colours of matplotlib's tab10 in order (#1f77b4, #ff7f0e, #2ca02c,\n"
             "#d62728, #9467bd, #8c564b, #e377c2, #7f7f7f, #bcbd22, #17becf): at most 10 runs.\n"
             "A null value (epoch 0 has no training cost) leaves a gap; an epoch logged twice\n"
             "(a rolled-back run) is drawn as its later record.\n"
             "A build without cairo (meson option plot) has the command but refuses to draw,\n"
             "saying what to install.\n"
             "exit status: 0 ok, 1 runtime failure (a log or model that cannot be read or lacks\n"
             "the metric, the output, no cairo), 2 bad command line\n",
    .size = sizeof(plot_options),
    .init = plot_init,
    .uses = {{&output_group, offsetof(plot_options, output), 1u << OUTPUT_OUT},
             {&plot_group, 0, 0}},
    .operands = 1,
};

void plot_usage(FILE *f) { print_usage(f, &plot_line); }

/* What the flags cannot say one by one: which picture, and that its inputs fit it. */
static void check_plot_args(const plot_options *o)
{
    if (!o->output.out)
        usage_error("-o: where should the PNG go? (backprop plot ... -o FILE.png)");
    if (o->weights) {
        if (o->n_logs)
            usage_error("--weights draws a model, not logs: drop '%s' or --weights", o->logs[0]);
        if (o->n_metrics || o->n_labels || o->log_y)
            usage_error("--%s is for curves, not --weights",
                        o->n_metrics ? "metric" : o->n_labels ? "label" : "log-y");
        return;
    }
    if (o->n_logs == 0)
        usage_error("which logs? (backprop plot LOG.jsonl [LOG ...] -o FILE.png, or --weights "
                    "MODEL)");
    if (o->n_logs > PLOT_MAX_RUNS)
        usage_error("%d logs: at most %d runs in one picture (one colour each)", o->n_logs,
                    PLOT_MAX_RUNS);
    if (o->n_labels && o->n_labels != o->n_logs)
        usage_error("--label: %d %s for %d %s (one per log, in order)", o->n_labels,
                    plural(o->n_labels, "label", "labels"), o->n_logs,
                    plural(o->n_logs, "log", "logs"));
}

void parse_plot_args(int argc, char **argv, plot_options *o)
{
    parsed_args p = parse_command_line(&plot_line, o, argc, argv);
    o->logs = (const char **)argv + p.operand;
    o->n_logs = argc - p.operand;
    for (int i = 0; i < o->n_logs; i++)
        if (!*o->logs[i])
            usage_error("log %d: an empty file name", i + 1);
    check_plot_args(o);
}

void plot_options_free(plot_options *o)
{
    for (int i = 0; i < o->n_metrics; i++)
        free(o->metrics[i]);
    o->n_metrics = 0;
}
