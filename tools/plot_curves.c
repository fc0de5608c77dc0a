/*
 * plot_curves.c - `backprop plot LOG ...`: one panel per metric stacked top to bottom under a
 * legend, each with its grid, ticks at round values, tick labels and axis labels, and a line
 * per run and series in the run's colour (validation dashed). Drawn with cairo: antialiased
 * strokes, dashes, clipping and the toy text API, which is enough for labels in one font.
 */
#include "cli.h"
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* matplotlib's tab10: ten colours told apart by most eyes, and known to people who plot. */
static const unsigned palette[] = {
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
    0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf,
};
_Static_assert(sizeof palette / sizeof *palette == PLOT_MAX_RUNS, "a colour for every run");

enum {
    BACKGROUND = 0xffffff,
    GRID = 0xe8e8e8,
    MINOR_GRID = 0xf3f3f3,
    AXES = 0x404040,
    TEXT = 0x202020,
    STYLE_KEY = 0x505050, /* the legend's training/validation swatches, in no run's colour */
};

typedef struct box {
    double x, y, w, h;
} box;

typedef struct axis {
    double lo, hi, step;
    int log; /* the values are log10 of what the ticks say */
} axis;

typedef struct curves {
    plot_run runs[PLOT_MAX_RUNS];
    int n_runs;
    plot_panel panels[PLOT_MAX_PANELS];
    int n_panels;
    plot_points points[PLOT_MAX_PANELS][PLOT_MAX_SERIES][PLOT_MAX_RUNS];
    int log_y;
} curves;

static void set_colour(cairo_t *cr, unsigned rgb)
{
    cairo_set_source_rgb(cr, (rgb >> 16 & 255) / 255.0, (rgb >> 8 & 255) / 255.0,
                         (rgb & 255) / 255.0);
}

/* ---- text and axes ---------------------------------------------------------------------- */

/* s placed so that the point (x, y) is at (ax, ay) of its box: its advance across and the
 * font's ascent plus descent down (0, 0 the top left; 0.5, 0.5 the middle). */
static void text_at(cairo_t *cr, const char *s, double x, double y, double ax, double ay)
{
    cairo_text_extents_t t;
    cairo_font_extents_t f;
    cairo_text_extents(cr, s, &t);
    cairo_font_extents(cr, &f);
    cairo_move_to(cr, x - ax * t.x_advance, y + f.ascent - ay * (f.ascent + f.descent));
    cairo_show_text(cr, s);
}

static double text_width(cairo_t *cr, const char *s)
{
    cairo_text_extents_t t;
    cairo_text_extents(cr, s, &t);
    return t.x_advance;
}

/* An axis over [lo, hi] with about `target` ticks a step of 1, 2 or 5 times a power of ten
 * apart, its ends on ticks. Epochs (integer) step by whole numbers. */
static axis nice_axis(double lo, double hi, int target, int integer)
{
    if (!(hi > lo)) {
        double pad = integer ? 1 : lo != 0 ? fabs(lo) * 0.1 : 1;
        lo = integer ? lo : lo - pad;
        hi += pad;
    }
    double rough = (hi - lo) / target;
    double mag = pow(10, floor(log10(rough)));
    double r = rough / mag;
    double step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
    if (integer && step < 1)
        step = 1;
    /* The slack keeps a bound that is a multiple already (0.3 / 0.1) from moving a step out. */
    return (axis){floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step, 0};
}

static int tick_count(const axis *a) { return (int)floor((a->hi - a->lo) / a->step + 0.5) + 1; }

static double tick_value(const axis *a, int k)
{
    double v = a->lo + k * a->step;
    return fabs(v) < a->step * 1e-6 ? 0 : v; /* 0, not 1e-17 or -0 */
}

static void tick_text(char *buf, size_t size, double v, const axis *a)
{
    double step = a->step;
    if (a->log) {
        snprintf(buf, size, "%g", pow(10, v));
        return;
    }
    if (step < 1e-4 || fabs(v) >= 1e7) {
        snprintf(buf, size, "%.3g", v);
        return;
    }
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, size, "%.*f", decimals, v);
}

static double widest_tick(cairo_t *cr, const axis *a)
{
    double widest = 0;
    char buf[64];
    for (int k = 0; k < tick_count(a); k++) {
        tick_text(buf, sizeof buf, tick_value(a, k), a);
        double w = text_width(cr, buf);
        widest = w > widest ? w : widest;
    }
    return widest;
}

static double to_x(const box *b, const axis *a, double v)
{
    return b->x + (v - a->lo) / (a->hi - a->lo) * b->w;
}

static double to_y(const box *b, const axis *a, double v)
{
    return b->y + b->h - (v - a->lo) / (a->hi - a->lo) * b->h;
}

/* The quantity's name up the left side, made smaller if it is longer than the panel is high. */
static void draw_y_label(cairo_t *cr, const box *b, const char *label, double x, double font)
{
    double w = text_width(cr, label);
    cairo_save(cr);
    if (w > b->h)
        cairo_set_font_size(cr, font * b->h / w);
    cairo_translate(cr, x, b->y + b->h / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, label, 0, 0, 0.5, 1);
    cairo_restore(cr);
}

/* A log axis's 2..9 times each decade, fainter than the decades, so values can be read. */
static void draw_minor_grid(cairo_t *cr, const box *b, const axis *ay)
{
    cairo_save(cr);
    set_colour(cr, MINOR_GRID);
    for (int k = 0; k + 1 < tick_count(ay); k++)
        for (int m = 2; m <= 9; m++) {
            double y = round(to_y(b, ay, tick_value(ay, k) + log10(m))) + 0.5;
            cairo_move_to(cr, b->x, y);
            cairo_line_to(cr, b->x + b->w, y);
        }
    cairo_stroke(cr);
    cairo_restore(cr);
}

static void draw_axes(cairo_t *cr, const box *b, const axis *ax, const axis *ay,
                      const char *ylabel, double tick_w, double font)
{
    char buf[64];
    cairo_set_line_width(cr, 1);
    for (int pass = 0; pass < 2; pass++) { /* the grid first, under the frame and ticks */
        set_colour(cr, pass == 0 ? GRID : AXES);
        for (int k = 0; k < tick_count(ax); k++) {
            double x = round(to_x(b, ax, tick_value(ax, k))) + 0.5;
            cairo_move_to(cr, x, pass == 0 ? b->y : b->y + b->h);
            cairo_line_to(cr, x, b->y + b->h + (pass == 0 ? 0 : font * 0.3));
        }
        for (int k = 0; k < tick_count(ay); k++) {
            double y = round(to_y(b, ay, tick_value(ay, k))) + 0.5;
            cairo_move_to(cr, pass == 0 ? b->x + b->w : b->x, y);
            cairo_line_to(cr, b->x - (pass == 0 ? 0 : font * 0.3), y);
        }
        cairo_stroke(cr);
        if (pass == 0 && ay->log)
            draw_minor_grid(cr, b, ay);
    }
    cairo_rectangle(cr, round(b->x) + 0.5, round(b->y) + 0.5, round(b->w), round(b->h));
    cairo_stroke(cr);
    set_colour(cr, TEXT);
    for (int k = 0; k < tick_count(ax); k++) {
        tick_text(buf, sizeof buf, tick_value(ax, k), ax);
        text_at(cr, buf, to_x(b, ax, tick_value(ax, k)), b->y + b->h + font * 0.4, 0.5, 0);
    }
    for (int k = 0; k < tick_count(ay); k++) {
        tick_text(buf, sizeof buf, tick_value(ay, k), ay);
        text_at(cr, buf, b->x - font * 0.5, to_y(b, ay, tick_value(ay, k)), 1, 0.5);
    }
    text_at(cr, "epoch", b->x + b->w / 2, b->y + b->h + font * 1.7, 0.5, 0);
    draw_y_label(cr, b, ylabel, b->x - font * 0.8 - tick_w, font);
}

/* ---- curves ----------------------------------------------------------------------------- */

/* The points as lines, broken where a value is null; a point alone between gaps is a dot. */
static void draw_series(cairo_t *cr, const box *b, const axis *ax, const axis *ay,
                        const plot_points *p, unsigned colour, int dashed, double lw)
{
    cairo_save(cr);
    cairo_rectangle(cr, b->x, b->y, b->w, b->h);
    cairo_clip(cr);
    set_colour(cr, colour);
    cairo_set_line_width(cr, lw);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, dashed ? CAIRO_LINE_CAP_BUTT : CAIRO_LINE_CAP_ROUND);
    const double dash[] = {lw * 4, lw * 2.5};
    cairo_set_dash(cr, dash, dashed ? 2 : 0, 0);
    int run = 0;
    double px = 0, py = 0;
    for (int i = 0; i <= p->n; i++) {
        if (i < p->n && !isnan(p->y[i])) {
            px = to_x(b, ax, p->x[i]);
            py = to_y(b, ay, p->y[i]);
            if (run++)
                cairo_line_to(cr, px, py);
            else
                cairo_move_to(cr, px, py);
            continue;
        }
        if (run == 1) {
            cairo_new_path(cr);
            cairo_arc(cr, px, py, lw * 1.3, 0, 2 * M_PI);
            cairo_fill(cr);
        } else if (run > 1) {
            cairo_stroke(cr);
        }
        run = 0;
    }
    cairo_restore(cr);
}

static void panel_range(const curves *c, int p, double *xlo, double *xhi, double *ylo,
                        double *yhi)
{
    *xlo = *ylo = INFINITY;
    *xhi = *yhi = -INFINITY;
    for (int s = 0; s < c->panels[p].n_series; s++)
        for (int r = 0; r < c->n_runs; r++) {
            const plot_points *pts = &c->points[p][s][r];
            for (int i = 0; i < pts->n; i++) {
                if (isnan(pts->y[i]))
                    continue;
                *xlo = fmin(*xlo, pts->x[i]);
                *xhi = fmax(*xhi, pts->x[i]);
                *ylo = fmin(*ylo, pts->y[i]);
                *yhi = fmax(*yhi, pts->y[i]);
            }
        }
}

static int ticks_for(double length, double spacing)
{
    int n = (int)(length / spacing);
    return n < 2 ? 2 : n > 10 ? 10 : n;
}

/* The vertical room a panel's frame leaves for its plot: above it, and below it for the tick
 * labels and "epoch". */
static double panel_top(double font) { return font * 0.5; }
static double panel_bottom(double font) { return font * 3.4; }

/* Where a panel's plot goes in its area, and its axes. The left edge is the same for every
 * panel (room for the widest tick label of any), so their epochs line up. */
typedef struct panel_layout {
    box b;
    axis ax, ay;
    double tick_w;
} panel_layout;

static void layout_panels(cairo_t *cr, const curves *c, const box *areas, double font,
                          panel_layout *l)
{
    double tick_w = 0;
    for (int p = 0; p < c->n_panels; p++) {
        double xlo, xhi, ylo, yhi;
        panel_range(c, p, &xlo, &xhi, &ylo, &yhi);
        l[p].b.y = areas[p].y + panel_top(font);
        l[p].b.h = areas[p].h - panel_top(font) - panel_bottom(font);
        /* On a log scale the ticks are whole decades. */
        l[p].ay = nice_axis(ylo, yhi, ticks_for(l[p].b.h, font * 2.5), c->log_y);
        l[p].ay.log = c->log_y;
        l[p].ax = (axis){xlo, xhi, 0, 0}; /* made nice below, once the width is known */
        l[p].tick_w = widest_tick(cr, &l[p].ay);
        tick_w = fmax(tick_w, l[p].tick_w);
    }
    for (int p = 0; p < c->n_panels; p++) {
        l[p].b.x = areas[p].x + font * 1.7 + tick_w;
        l[p].b.w = areas[p].x + areas[p].w - l[p].b.x;
        l[p].ax = nice_axis(l[p].ax.lo, l[p].ax.hi, ticks_for(l[p].b.w, font * 6), 1);
        l[p].tick_w = tick_w;
    }
}

static void draw_panel(cairo_t *cr, const curves *c, int p, const panel_layout *l, double font)
{
    draw_axes(cr, &l->b, &l->ax, &l->ay, c->panels[p].title, l->tick_w, font);
    double lw = font / 6 < 1.5 ? 1.5 : font / 6;
    const plot_panel *panel = &c->panels[p];
    for (int s = 0; s < panel->n_series; s++)
        for (int r = 0; r < c->n_runs; r++)
            draw_series(cr, &l->b, &l->ax, &l->ay, &c->points[p][s][r], palette[r],
                        panel->series[s].dashed, lw);
}

/* ---- legend ----------------------------------------------------------------------------- */

typedef struct legend_entry {
    const char *text;
    unsigned colour;
    int dashed;
} legend_entry;

/* The runs, then (when a panel has both) which line is training and which validation, in
 * rows across the top. Only measured unless draw is set. The y below the legend. */
static double legend(cairo_t *cr, const curves *c, double width, double font, int draw)
{
    legend_entry e[PLOT_MAX_RUNS + 2];
    int n = 0;
    for (int r = 0; r < c->n_runs; r++)
        e[n++] = (legend_entry){c->runs[r].label, palette[r], 0};
    for (int p = 0; p < c->n_panels; p++)
        if (c->panels[p].n_series == 2) {
            e[n++] = (legend_entry){c->panels[p].series[0].role, STYLE_KEY, 0};
            e[n++] = (legend_entry){c->panels[p].series[1].role, STYLE_KEY, 1};
            break;
        }
    double margin = font, row = font * 1.6, swatch = font * 2.4, lw = fmax(1.5, font / 6);
    double x = margin, y = margin;
    for (int i = 0; i < n; i++) {
        double w = swatch + font * 0.4 + text_width(cr, e[i].text);
        if (x > margin && x + w > width - margin) {
            x = margin;
            y += row;
        }
        if (draw) {
            set_colour(cr, e[i].colour);
            cairo_set_line_width(cr, lw);
            const double dash[] = {lw * 4, lw * 2.5};
            cairo_set_dash(cr, dash, e[i].dashed ? 2 : 0, 0);
            cairo_move_to(cr, x, y + row / 2);
            cairo_line_to(cr, x + swatch, y + row / 2);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
            set_colour(cr, TEXT);
            text_at(cr, e[i].text, x + swatch + font * 0.4, y + row / 2, 0, 0.5);
        }
        x += w + font * 1.2;
    }
    return y + row + font * 0.5;
}

/* ---- the picture ------------------------------------------------------------------------ */

static int render_curves(const plot_options *o, const curves *c, cairo_surface_t **out)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, o->width, o->height);
    cairo_t *cr = cairo_create(s);
    double font = plot_font_size(o->width, o->height);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, font);
    double top = legend(cr, c, o->width, font, 0);
    double panel_h = (o->height - top - font) / c->n_panels;
    if (panel_h - panel_top(font) - panel_bottom(font) < font * 2) {
        cairo_destroy(cr);
        cairo_surface_destroy(s);
        return plot_refuse("--size %dx%d: too small for %d %s and the legend", o->width,
                           o->height, c->n_panels, plural(c->n_panels, "panel", "panels"));
    }
    set_colour(cr, BACKGROUND);
    cairo_paint(cr);
    legend(cr, c, o->width, font, 1);
    box areas[PLOT_MAX_PANELS];
    panel_layout layout[PLOT_MAX_PANELS];
    for (int p = 0; p < c->n_panels; p++)
        areas[p] = (box){font, top + p * panel_h, o->width - 2 * font, panel_h};
    layout_panels(cr, c, areas, font, layout);
    for (int p = 0; p < c->n_panels; p++)
        draw_panel(cr, c, p, &layout[p], font);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_status(s);
    if (st != CAIRO_STATUS_SUCCESS) {
        print_error("cairo: %s", cairo_status_to_string(st));
        cairo_surface_destroy(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* --log-y: the values as their log10; those <= 0, which have none, become gaps. */
static int to_log(const plot_run *run, const plot_series *s, plot_points *p)
{
    int left = 0;
    for (int i = 0; i < p->n; i++) {
        p->y[i] = p->y[i] > 0 ? log10(p->y[i]) : NAN;
        left += !isnan(p->y[i]);
    }
    if (left == 0)
        print_error("%s: --log-y: no value of %s is above 0", run->path, s->key);
    return left ? 0 : -1;
}

static int load_curves(const plot_options *o, curves *c)
{
    for (int r = 0; r < o->n_logs; r++) {
        if (plot_run_load(o->logs[r], &c->runs[r]) != 0)
            return -1;
        c->n_runs++;
        if (o->n_labels)
            snprintf(c->runs[r].label, sizeof c->runs[r].label, "%s", o->labels[r]);
    }
    c->n_panels = plot_panels(o, c->runs, c->n_runs, c->panels);
    c->log_y = o->log_y;
    for (int p = 0; p < c->n_panels; p++) {
        if (c->log_y) {
            size_t len = strlen(c->panels[p].title);
            snprintf(c->panels[p].title + len, sizeof c->panels[p].title - len, " (log)");
        }
        for (int s = 0; s < c->panels[p].n_series; s++)
            for (int r = 0; r < c->n_runs; r++)
                if (plot_points_get(&c->runs[r], &c->panels[p].series[s], &c->points[p][s][r]) ||
                    (c->log_y && to_log(&c->runs[r], &c->panels[p].series[s],
                                        &c->points[p][s][r])))
                    return -1;
    }
    return 0;
}

static void curves_free(curves *c)
{
    for (int p = 0; p < PLOT_MAX_PANELS; p++)
        for (int s = 0; s < PLOT_MAX_SERIES; s++)
            for (int r = 0; r < PLOT_MAX_RUNS; r++)
                plot_points_free(&c->points[p][s][r]);
    for (int r = 0; r < c->n_runs; r++)
        plot_run_free(&c->runs[r]);
    free(c);
}

int plot_curves(const plot_options *o, cairo_surface_t **out)
{
    curves *c = calloc(1, sizeof *c);
    if (!c) {
        print_error("%s", strerror(ENOMEM));
        return -1;
    }
    int rc = load_curves(o, c);
    if (rc == 0)
        rc = render_curves(o, c, out);
    curves_free(c);
    return rc;
}
