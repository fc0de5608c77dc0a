/*
 * plot.c - `backprop plot`: training curves from `train --log` files, or a model's first
 * layer of weights as a grid of images, drawn with cairo into a PNG.
 *
 * Why cairo rather than libgd: the curves are lines, dashes and text, which cairo draws
 * antialiased with sub-pixel coordinates, dash patterns and line joins, and measures text
 * (cairo_text_extents) so ticks and legends can be laid out; libgd draws aliased one-pixel
 * lines unless told otherwise, has no dashes beyond a style array, and needs FreeType and a
 * font file on disk for text scaled to the picture. cairo also encodes PNG itself, into memory
 * (cairo_surface_write_to_png_stream), which is what an atomic replace of the file needs. It
 * is optional (meson -Dplot=auto); without it plot_none.c stands in for this command.
 */
#include "cli.h"
#include "plot.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- the PNG -------------------------------------------------------------------------- */

static cairo_status_t to_stream(void *closure, const unsigned char *bytes, unsigned int length)
{
    return fwrite(bytes, 1, length, closure) == length ? CAIRO_STATUS_SUCCESS
                                                      : CAIRO_STATUS_WRITE_ERROR;
}

static int format_png(FILE *f, const void *arg)
{
    cairo_surface_t *s = (cairo_surface_t *)arg; /* encoding reads it only */
    cairo_status_t st = cairo_surface_write_to_png_stream(s, to_stream, f);
    if (st != CAIRO_STATUS_SUCCESS) {
        print_error("-o: cairo could not encode the PNG: %s", cairo_status_to_string(st));
        return -1;
    }
    return 0;
}

static char refusal[512];

int plot_refuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(refusal, sizeof refusal, fmt, ap);
    va_end(ap);
    return PLOT_REFUSED;
}

double plot_font_size(int width, int height)
{
    double side = width < height ? width : height;
    double size = side / 55.0;
    return size < 9 ? 9 : size > 48 ? 48 : size;
}

int cmd_plot(int argc, char **argv)
{
    plot_options o;
    parse_plot_args(argc, argv, &o);
    const char *out = o.output.out;
    int rc = check_output_path("-o", out);
    cairo_surface_t *s = NULL;
    if (rc == 0)
        rc = o.weights ? plot_weights(&o, &s) : plot_curves(&o, &s);
    if (rc == 0 && write_output_file("-o", out, format_png, s) != 0)
        rc = -1;
    if (rc == 0)
        printf("wrote %s (%dx%d)\n", out, o.width, o.height);
    if (s)
        cairo_surface_destroy(s);
    plot_options_free(&o);
    /* cairo keeps the fonts it looked up for the next picture; there is none, and a leak
     * checker should see only what this program failed to free. */
    cairo_debug_reset_static_data();
    if (rc == PLOT_REFUSED)
        usage_error("%s", refusal);
    return rc == 0 ? 0 : 1;
}
