/*
 * plot.h - what the parts of `backprop plot` share: the command's options, the training logs
 * as read (plot_log.c), the curves (plot_curves.c), the weight grid (plot_weights.c) and the
 * PNG output (plot.c), on the command line plot_args.h holds. Only built when cairo is found
 * (meson option `plot`); plot_none.c is the command without it.
 */
#ifndef BP_TOOLS_PLOT_H
#define BP_TOOLS_PLOT_H

#include "cli.h"
#include "plot_args.h"

#include <cairo.h>
#include <cjson/cJSON.h>
#include <stddef.h>

/* ---- logs (plot_log.c) ---------------------------------------------------------------- */

/* One epoch's record: its JSON object (a CSV row is made into the object the JSON Lines log
 * has for it, norms under "grad_norms"), where it came from, its epoch. */
typedef struct plot_record {
    cJSON *obj;
    long line;
    long epoch;
} plot_record;

typedef struct plot_run {
    const char *path;
    char label[PLOT_NAME];
    plot_record *records; /* sorted by epoch, one an epoch (the last the file gave it) */
    int n_records;
} plot_run;

/* Read path (".csv" a CSV log, anything else JSON Lines) into *run. -1 (said, naming the file
 * and the line) for a file that cannot be read, a line that is not a record, no records. */
int plot_run_load(const char *path, plot_run *run);
/* A file's name without its folders, bytes that are not UTF-8 (all cairo's text takes) as '?':
 * what a legend or a caption calls it. */
void plot_file_label(const char *path, char *label, size_t size);
void plot_run_free(plot_run *run);

/* ---- what the curves show (plot_log.c) ------------------------------------------------- */

typedef struct plot_series {
    char key[PLOT_NAME]; /* a field of the record, or a tensor's name under "grad_norms" */
    int is_norm;
    int dashed;          /* validation as against training */
    const char *role;    /* "train", "validation", or NULL when the panel has one series */
} plot_series;

typedef struct plot_panel {
    char title[PLOT_NAME + 32];
    plot_series series[PLOT_MAX_SERIES];
    int n_series;
} plot_panel;

/* The panels for the --metric names (cost and accuracy when there are none); a name that is
 * neither a field nor a tensor any of the runs has a norm of is a usage error (exit 2). */
int plot_panels(const plot_options *o, const plot_run *runs, int n_runs,
                plot_panel panels[PLOT_MAX_PANELS]);

/* The points of one series in one run, in epoch order; y is NaN where the record holds null
 * (a gap in the line). -1 (said) when a record lacks the field or no value is a number. */
typedef struct plot_points {
    double *x, *y;
    int n;
} plot_points;
int plot_points_get(const plot_run *run, const plot_series *s, plot_points *p);
void plot_points_free(plot_points *p);

/* ---- drawing (plot_curves.c, plot_weights.c) -------------------------------------------- */

/* Each draws into a new RGB surface of the options' size, *out (the caller destroys it);
 * -1 (said) on failure, PLOT_REFUSED (plot_refuse) for a usage error. */
int plot_curves(const plot_options *o, cairo_surface_t **out);
int plot_weights(const plot_options *o, cairo_surface_t **out);

/* A mistake on the command line found while drawing (a picture too small for what it is to
 * hold): the message kept for cmd_plot to say as a usage error once everything is freed.
 * Returns PLOT_REFUSED. */
enum { PLOT_REFUSED = -2 };
int plot_refuse(const char *fmt, ...) CLI_PRINTF(1, 2);

/* The font size every text of a picture of that size is drawn in. */
double plot_font_size(int width, int height);

#endif
