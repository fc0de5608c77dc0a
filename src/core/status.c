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
    [BP_ESTOPPED] = "stopped by the caller",
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

bp_status bp_fail_context(bp_status status, const char *fmt, ...)
{
    char inner[sizeof last_error];
    snprintf(inner, sizeof inner, "%s", last_error);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    /* The callee's message is cut, not the context, when both do not fit. */
    size_t used = n < 0 ? 0 : (size_t)n < sizeof last_error ? (size_t)n : sizeof last_error - 1;
    for (const char *p = ": "; *p && used + 1 < sizeof last_error; p++)
        last_error[used++] = *p;
    for (const char *p = inner; *p && used + 1 < sizeof last_error; p++)
        last_error[used++] = *p;
    last_error[used] = '\0';
    return status;
}

bp_status bp_fail(bp_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}
