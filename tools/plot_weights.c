/*
 * plot_weights.c - `backprop plot --weights MODEL`: the first dense layer's weights, each
 * unit's incoming weights shown as an image of the input's shape (what the unit looks for in
 * a digit), the tiles in the grid that makes them largest, under a caption and a colour bar.
 *
 * One colour scale for the whole layer, symmetric around 0 (blue negative, white 0, red
 * positive, full colour at the layer's largest |w|): units can then be compared with each
 * other, and a unit with small weights shows as pale rather than being stretched to look like
 * the rest.
 */
#include "cli.h"
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    NEGATIVE = 0x2166ac,
    ZERO = 0xf7f7f7,
    POSITIVE = 0xb2182b,
    BACKGROUND = 0xffffff,
    OUTLINE = 0x909090,
    TEXT = 0x202020,
    MIN_TILE = 4, /* pixels on a tile's shorter side below which it shows nothing */
};

typedef struct layer_view {
    const float *w;
    int64_t unit_stride, input_stride; /* element (unit, input) at w[unit * us + input * is] */
    int n_out, n_in, rows, cols;
    const char *name;
    float max_abs;
} layer_view;

typedef struct grid {
    int cols, rows;
    double scale, x, y, gap;
} grid;

static void set_colour(cairo_t *cr, unsigned rgb)
{
    cairo_set_source_rgb(cr, (rgb >> 16 & 255) / 255.0, (rgb >> 8 & 255) / 255.0,
                         (rgb & 255) / 255.0);
}

/* t in [-1, 1] -> the colour, linear from ZERO to NEGATIVE or POSITIVE. */
static uint32_t diverging(float t)
{
    unsigned end = t < 0 ? NEGATIVE : POSITIVE;
    float a = fminf(fabsf(t), 1.0f);
    uint32_t px = 0;
    for (int shift = 16; shift >= 0; shift -= 8) {
        float from = (float)(ZERO >> shift & 255), to = (float)(end >> shift & 255);
        px |= (uint32_t)lroundf(from + a * (to - from)) << shift;
    }
    return px;
}

/* The first weight over the inputs (a layer without weights, such as dropout, may come before
 * it), and the image shape its rows are read in. */
static int first_layer(bp_net *net, const bp_model_meta *meta, const char *path, layer_view *v)
{
    int n_in = bp_net_size(net, 0);
    for (int i = 0; i < bp_net_tensor_count(net); i++) {
        bp_tensor_info t;
        if (bp_net_tensor(net, i, &t) != BP_OK || t.role != BP_ROLE_WEIGHT || t.ndim != 2 ||
            t.shape[1] != n_in)
            continue;
        *v = (layer_view){bp_net_params(net, NULL) + t.offset, t.stride[0], t.stride[1],
                          (int)t.shape[0], n_in, 0, 0, t.name, 0};
        break;
    }
    if (!v->w) {
        print_error("--weights: '%s' has no dense layer over its %d inputs", path, n_in);
        return -1;
    }
    int side = (int)lround(sqrt((double)n_in));
    if (meta->input_rows > 0 && (int64_t)meta->input_rows * meta->input_cols == n_in) {
        v->rows = meta->input_rows;
        v->cols = meta->input_cols;
    } else if ((int64_t)side * side == n_in) {
        v->rows = v->cols = side;
    } else {
        print_error("--weights: '%s' does not say its image shape, and its %d inputs are not "
                    "a square", path, n_in);
        return -1;
    }
    for (int j = 0; j < v->n_out; j++)
        for (int i = 0; i < n_in; i++)
            v->max_abs = fmaxf(v->max_abs, fabsf(v->w[j * v->unit_stride + i * v->input_stride]));
    return 0;
}

/* The grid of n tiles of tw x th that fits area with the largest tiles, at a whole number of
 * pixels a weight when that is at least one (no weight drawn wider than its neighbour). */
static grid fit_grid(int n, int tw, int th, double ax, double ay, double aw, double ah,
                     double gap)
{
    grid best = {1, n, 0, 0, 0, gap};
    for (int gc = 1; gc <= n; gc++) {
        int gr = (n + gc - 1) / gc;
        double sx = (aw - (gc - 1) * gap) / ((double)gc * tw);
        double sy = (ah - (gr - 1) * gap) / ((double)gr * th);
        double s = fmin(sx, sy);
        if (s > best.scale)
            best = (grid){gc, gr, s, 0, 0, gap};
    }
    if (best.scale >= 1)
        best.scale = floor(best.scale);
    best.x = ax + (aw - (best.cols * tw * best.scale + (best.cols - 1) * gap)) / 2;
    best.y = ay + (ah - (best.rows * th * best.scale + (best.rows - 1) * gap)) / 2;
    return best;
}

/* Unit j's weights as an image of the input's shape: pixel (r, c) is input r * cols + c, the
 * order the IDX images are flattened in. */
static cairo_surface_t *tile_image(const layer_view *v, int j)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, v->cols, v->rows);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS)
        return s;
    cairo_surface_flush(s);
    unsigned char *pixels = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    float inv = v->max_abs > 0 ? 1.0f / v->max_abs : 0.0f;
    for (int r = 0; r < v->rows; r++) {
        uint32_t *row = (uint32_t *)(void *)(pixels + (size_t)r * (size_t)stride);
        for (int c = 0; c < v->cols; c++) {
            int64_t i = (int64_t)r * v->cols + c;
            row[c] = diverging(v->w[j * v->unit_stride + i * v->input_stride] * inv);
        }
    }
    cairo_surface_mark_dirty(s);
    return s;
}

static int draw_tiles(cairo_t *cr, const layer_view *v, const grid *g)
{
    double tw = v->cols * g->scale, th = v->rows * g->scale;
    for (int j = 0; j < v->n_out; j++) {
        double x = g->x + (j % g->cols) * (tw + g->gap), y = g->y + (j / g->cols) * (th + g->gap);
        cairo_surface_t *tile = tile_image(v, j);
        cairo_status_t st = cairo_surface_status(tile);
        if (st == CAIRO_STATUS_SUCCESS) {
            cairo_save(cr);
            cairo_translate(cr, x, y);
            cairo_scale(cr, g->scale, g->scale);
            cairo_set_source_surface(cr, tile, 0, 0);
            /* Each weight a block of pixels, not blurred into its neighbours. */
            cairo_pattern_set_filter(cairo_get_source(cr), g->scale >= 1 ? CAIRO_FILTER_NEAREST
                                                                         : CAIRO_FILTER_GOOD);
            cairo_paint(cr);
            cairo_restore(cr);
        }
        cairo_surface_destroy(tile);
        if (st != CAIRO_STATUS_SUCCESS) {
            print_error("cairo: %s", cairo_status_to_string(st));
            return -1;
        }
        if (g->gap >= 2) {
            set_colour(cr, OUTLINE);
            cairo_set_line_width(cr, 1);
            cairo_rectangle(cr, x - 0.5, y - 0.5, tw + 1, th + 1);
            cairo_stroke(cr);
        }
    }
    return 0;
}

/* What the picture shows, and the colour bar from -max through 0 to +max at the right. */
static void draw_caption(cairo_t *cr, const layer_view *v, const char *path, double width,
                         double font)
{
    char name[PLOT_NAME], text[PLOT_NAME * 2], lo[32], hi[32];
    plot_file_label(path, name, sizeof name);
    snprintf(text, sizeof text, "%s of %s: %d units, each %dx%d", v->name, name, v->n_out,
             v->rows, v->cols);
    snprintf(lo, sizeof lo, "%.3g", -(double)v->max_abs);
    snprintf(hi, sizeof hi, "%.3g", (double)v->max_abs);
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    double bar_w = font * 12, bar_x = width - font - bar_w, base = font + fe.ascent;
    cairo_text_extents_t te;
    cairo_text_extents(cr, hi, &te);
    bar_x -= te.x_advance + font * 0.4;
    set_colour(cr, TEXT);
    cairo_move_to(cr, font, base);
    cairo_show_text(cr, text);
    cairo_text_extents(cr, lo, &te);
    cairo_move_to(cr, bar_x - font * 0.4 - te.x_advance, base);
    cairo_show_text(cr, lo);
    cairo_move_to(cr, bar_x + bar_w + font * 0.4, base);
    cairo_show_text(cr, hi);
    cairo_pattern_t *bar = cairo_pattern_create_linear(bar_x, 0, bar_x + bar_w, 0);
    const unsigned stops[] = {NEGATIVE, ZERO, POSITIVE};
    for (int k = 0; k < 3; k++)
        cairo_pattern_add_color_stop_rgb(bar, k / 2.0, (stops[k] >> 16 & 255) / 255.0,
                                         (stops[k] >> 8 & 255) / 255.0, (stops[k] & 255) / 255.0);
    cairo_rectangle(cr, bar_x, font, bar_w, fe.ascent + fe.descent);
    cairo_set_source(cr, bar);
    cairo_fill(cr);
    cairo_pattern_destroy(bar);
}

static int render_weights(const plot_options *o, const layer_view *v, cairo_surface_t **out)
{
    double font = plot_font_size(o->width, o->height), top = font * 3.2;
    grid g = fit_grid(v->n_out, v->cols, v->rows, font, top, o->width - 2 * font,
                      o->height - top - font, fmax(1, round(font / 3)));
    if (g.scale * (v->rows < v->cols ? v->rows : v->cols) < MIN_TILE)
        return plot_refuse("--size %dx%d: too small for %d tiles of %dx%d", o->width,
                           o->height, v->n_out, v->rows, v->cols);
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, o->width, o->height);
    cairo_t *cr = cairo_create(s);
    set_colour(cr, BACKGROUND);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, font);
    draw_caption(cr, v, o->weights, o->width, font);
    int rc = draw_tiles(cr, v, &g);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_status(s);
    if (rc == 0 && st != CAIRO_STATUS_SUCCESS) {
        print_error("cairo: %s", cairo_status_to_string(st));
        rc = -1;
    }
    if (rc != 0) {
        cairo_surface_destroy(s);
        return -1;
    }
    *out = s;
    return 0;
}

int plot_weights(const plot_options *o, cairo_surface_t **out)
{
    char why[PATH_BUF + 256];
    /* Said as --weights's, before open_model would say it as --model's. */
    if (describe_node(o->weights, 0, why, sizeof why) != 0) {
        print_error("--weights: '%s'%s", o->weights, why);
        return -1;
    }
    bp_net *net = NULL;
    bp_model_meta meta;
    if (open_model(o->weights, 1, 1, &net, &meta) != 0)
        return -1;
    layer_view v = {0};
    int rc = first_layer(net, &meta, o->weights, &v);
    if (rc == 0)
        rc = render_weights(o, &v, out);
    bp_net_free(net);
    return rc;
}
