/* status.c - status names and the per-thread message behind bp_last_error(). */
#include <stdarg.h>
#include <stdio.h>

#include "core.h"

static const char *const status_names[] = {
    [BP_OK] = "ok",
    [BP_ENOMEM] = "out of memory",
    [BP_EINVAL] = "invalid argument",
    [BP_EIO] = "input/output error",
    [BP_EFORMAT] = "bad file format",
    [BP_EDIVERGED] = "training diverged",
    [BP_ENOTSUP] = "not supported",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == BP_STATUS_COUNT,
               "every bp_status needs a name");

static _Thread_local char last_error[512];

const char *bp_status_str(bp_status status)
{
    if ((unsigned)status >= BP_STATUS_COUNT)
        return "unknown status";
    return status_names[status];
}

const char *bp_last_error(void) { return last_error; }

bp_status bp_fail(bp_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}
