/*
 * plot_none.c - `backprop plot` in a build without cairo (meson found no pkg-config `cairo`,
 * or was configured with -Dplot=disabled): the same command line as with it (plot_args.c), so
 * that scripts get its usage errors and then a reason instead of "unknown command", and what
 * to install.
 */
#include "cli.h"
#include "plot_args.h"

int cmd_plot(int argc, char **argv)
{
    plot_options o;
    parse_plot_args(argc, argv, &o);
    plot_options_free(&o);
    print_error("plot: backprop was built without plotting: install libcairo2-dev and "
                "reconfigure (meson setup --reconfigure BUILD -Dplot=enabled)");
    return 1;
}
