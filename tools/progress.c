/*
 * progress.c - the live bar of `backprop train` (progress.h): one line, rewritten in place,
 *
 *     epoch 3/30 [########............] 23450/50000  152301 samples/s  ETA 0:02, run 1:23
 *
 * fitted to the terminal's width (a line that wrapped could no longer be rewritten by \r).
 */
#include "progress.h"

#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

enum {
    DEFAULT_COLUMNS = 80, /* when the stream is not a terminal (--progress always) */
    MAX_LINE = 512,
    MAX_BAR = 40,         /* wider says nothing more */
    MIN_BAR = 5,          /* narrower is left out */
};

/* ANSI "erase to the end of the line": what is left of a longer drawing goes. */
#define ERASE_LINE "\033[K"

int progress_mode_parse(const char *text, progress_mode *out)
{
    static const progress_mode modes[] = {PROGRESS_AUTO, PROGRESS_ALWAYS, PROGRESS_NEVER};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(text, progress_mode_name(modes[i])) == 0) {
            *out = modes[i];
            return 0;
        }
    return -1;
}

const char *progress_mode_name(progress_mode mode)
{
    switch (mode) {
    case PROGRESS_ALWAYS: return "always";
    case PROGRESS_NEVER: return "never";
    default: return "auto";
    }
}

int progress_wanted(progress_mode mode, FILE *stream, int quiet)
{
    if (mode == PROGRESS_ALWAYS)
        return 1;
    return mode == PROGRESS_AUTO && !quiet && isatty(fileno(stream));
}

void progress_bar_start(progress_bar *b, FILE *out, int epochs)
{
    double now = out ? bp_clock_seconds() : 0.0;
    *b = (progress_bar){.out = out, .epochs = epochs, .started = now, .last_draw = now,
                        .last_epoch_end = now};
}

static int columns(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return DEFAULT_COLUMNS;
}

/* "1:23", "2:05:09"; "?" before there is a speed to go by. */
static void duration_text(char *buf, size_t size, double seconds)
{
    if (!isfinite(seconds) || seconds < 0 || seconds > 1e8) {
        snprintf(buf, size, "?");
        return;
    }
    long s = lround(seconds);
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

/* The run's time left after this epoch: the epochs after it at the pace of those this process
 * finished (their evaluations included), or before the first ends at this epoch's training
 * speed. */
static double run_left(const progress_bar *b, const bp_batch_report *r, double rate)
{
    int after = b->epochs - r->epoch;
    if (after <= 0)
        return 0.0;
    double per_epoch = b->epochs_ended > 0
                           ? (b->last_epoch_end - b->started) / b->epochs_ended
                           : (double)r->samples / rate;
    return after * per_epoch;
}

static void draw(progress_bar *b, const bp_batch_report *r)
{
    double rate = r->seconds > 0 ? (double)r->samples_timed / r->seconds : NAN;
    double epoch_left = (double)(r->samples - r->samples_done) / rate;
    char eta_epoch[32], eta_run[32], head[64], tail[192], line[MAX_LINE];
    duration_text(eta_epoch, sizeof eta_epoch, epoch_left);
    duration_text(eta_run, sizeof eta_run, epoch_left + run_left(b, r, rate));
    snprintf(head, sizeof head, "epoch %d/%d ", r->epoch, b->epochs);
    /* Fixed widths, so the bar does not jump as the numbers grow. */
    int digits = snprintf(NULL, 0, "%zu", r->samples);
    snprintf(tail, sizeof tail, " %*zu/%zu  %7.0f samples/s  ETA %s, run %s", digits,
             r->samples_done, r->samples, isfinite(rate) ? rate : 0.0, eta_epoch, eta_run);

    int width = columns(b->out) - 1; /* the last column would wrap on some terminals */
    if (width > MAX_LINE - 1)
        width = MAX_LINE - 1;
    int bar = width - (int)strlen(head) - (int)strlen(tail) - 2;
    if (bar > MAX_BAR)
        bar = MAX_BAR;
    int len;
    if (bar >= MIN_BAR) {
        int filled = (int)((double)r->samples_done / (double)r->samples * bar);
        char cells[MAX_BAR + 1];
        memset(cells, '#', (size_t)filled);
        memset(cells + filled, '.', (size_t)(bar - filled));
        cells[bar] = '\0';
        len = snprintf(line, sizeof line, "%s[%s]%s", head, cells, tail);
    } else {
        len = snprintf(line, sizeof line, "%s%s", head, tail + 1);
    }
    if (len > width)
        len = width;
    fputc('\r', b->out);
    fwrite(line, 1, (size_t)len, b->out);
    fputs(ERASE_LINE, b->out);
    fflush(b->out);
    b->shown = 1;
}

void progress_bar_update(progress_bar *b, const bp_batch_report *r)
{
    if (!b->out || r->samples_done >= r->samples)
        return; /* the epoch's line replaces a full bar at once */
    double now = bp_clock_seconds();
    if (now - b->last_draw < 1.0 / PROGRESS_HZ)
        return;
    b->last_draw = now;
    draw(b, r);
}

void progress_bar_clear(progress_bar *b)
{
    if (!b->out || !b->shown)
        return;
    fputs("\r" ERASE_LINE, b->out);
    fflush(b->out);
    b->shown = 0;
}

void progress_bar_epoch_end(progress_bar *b)
{
    if (!b->out)
        return;
    b->last_epoch_end = bp_clock_seconds();
    b->epochs_ended++;
}
