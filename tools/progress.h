/*
 * progress.h - the live bar `backprop train` draws inside an epoch: samples done of the epoch,
 * samples per second, and the time left in the epoch and in the run, redrawn in place (\r) at
 * most PROGRESS_HZ times a second and wiped before anything else is printed on its line.
 *
 * The bar goes to standard output, the stream of the per-epoch lines it is drawn between, so
 * the two cannot interleave out of order; --progress auto shows it only when that stream is a
 * terminal, so a pipe or a file gets the lines alone.
 */
#ifndef BP_TOOLS_PROGRESS_H
#define BP_TOOLS_PROGRESS_H

#include <stdio.h>

#include "backprop.h"

enum { PROGRESS_HZ = 10 };

typedef enum progress_mode { PROGRESS_AUTO, PROGRESS_ALWAYS, PROGRESS_NEVER } progress_mode;

/* "auto", "always", "never": 0 and *out set, or -1. */
int progress_mode_parse(const char *text, progress_mode *out);
const char *progress_mode_name(progress_mode mode);

/* Whether a bar is drawn on stream: always; never; auto when stream is a terminal and the
 * run is not quiet. */
int progress_wanted(progress_mode mode, FILE *stream, int quiet);

typedef struct progress_bar {
    FILE *out;          /* NULL: no bar, and every call returns at once */
    int epochs;         /* the run's last epoch (--epochs) */
    double started;     /* bp_clock_seconds() then */
    double last_draw;   /* when the bar was last drawn (started before the first) */
    double last_epoch_end;
    int epochs_ended;   /* epochs this process has finished */
    int shown;          /* the bar is on the line now */
} progress_bar;

/* A bar on out (NULL: none) for a run to `epochs`, starting now. */
void progress_bar_start(progress_bar *b, FILE *out, int epochs);
/* After a mini-batch: redraws when 1/PROGRESS_HZ s has passed since the last drawing. */
void progress_bar_update(progress_bar *b, const bp_batch_report *r);
/* Wipe the bar off its line (if it is there), so the next output starts the line clean. */
void progress_bar_clear(progress_bar *b);
/* An epoch has ended (its line is out): the run's time left is estimated from these. */
void progress_bar_epoch_end(progress_bar *b);

#endif
