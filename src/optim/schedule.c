/*
 * schedule.c - the learning-rate schedules' text form. The trainer (train/train.c) applies
 * them; here is only what "halve:10" or "step:5:0.5" means, parsed strictly: one spelling per
 * value, so a typo is an error rather than a different schedule.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* A whole number 1 .. INT_MAX written as decimal digits and nothing else (no sign, no blank). */
static int parse_count(const char *s, size_t len, int *out)
{
    if (len == 0 || len > 10)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

/* Digits with an optional fraction and exponent ("0.5", ".5", "1e-1"): what strtod reads minus
 * its signs, blanks, hex, "inf" and "nan", none of which is a factor anyone means. */
static int is_plain_decimal(const char *s)
{
    size_t whole = strspn(s, "0123456789");
    s += whole;
    size_t frac = 0;
    if (*s == '.') {
        frac = strspn(++s, "0123456789");
        s += frac;
    }
    if (whole + frac == 0)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        s += *s == '-' || *s == '+';
        size_t exp = strspn(s, "0123456789");
        if (exp == 0)
            return 0;
        s += exp;
    }
    return *s == '\0';
}

bp_status bp_schedule_parse(const char *text, bp_schedule *out)
{
    if (!text || !out)
        return bp_fail(BP_EINVAL, "bp_schedule_parse: %s is NULL", text ? "out" : "text");
    static const char known[] = "const, halve:N, step:E:F or cosine";
    if (strcmp(text, "const") == 0) {
        *out = (bp_schedule){BP_SCHEDULE_CONST, 0, 0.0f};
        return BP_OK;
    }
    if (strcmp(text, "cosine") == 0) {
        *out = (bp_schedule){BP_SCHEDULE_COSINE, 0, 0.0f};
        return BP_OK;
    }
    if (strncmp(text, "halve:", 6) == 0) {
        int n;
        if (parse_count(text + 6, strlen(text + 6), &n) != 0)
            return bp_fail(BP_EINVAL, "schedule '%s': the patience N of halve:N must be a whole "
                           "number from 1 to %d", text, INT_MAX);
        *out = (bp_schedule){BP_SCHEDULE_HALVE, n, 0.0f};
        return BP_OK;
    }
    if (strncmp(text, "step:", 5) == 0) {
        const char *e = text + 5, *colon = strchr(e, ':');
        int epochs;
        if (!colon || parse_count(e, (size_t)(colon - e), &epochs) != 0)
            return bp_fail(BP_EINVAL, "schedule '%s': step:E:F needs E, a whole number of "
                           "epochs from 1 to %d, then ':' and the factor F", text, INT_MAX);
        const char *f = colon + 1;
        errno = 0;
        float factor = is_plain_decimal(f) ? strtof(f, NULL) : NAN;
        if (errno == ERANGE || !isfinite(factor) || !(factor > 0.0f))
            return bp_fail(BP_EINVAL, "schedule '%s': the factor F of step:E:F must be a finite "
                           "decimal number > 0 (like 0.5)", text);
        *out = (bp_schedule){BP_SCHEDULE_STEP, epochs, factor};
        return BP_OK;
    }
    return bp_fail(BP_EINVAL, "unknown schedule '%s' (%s)", text, known);
}
