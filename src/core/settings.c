/* settings.c - process-wide settings (the memory limit), the version, the clock. The thread
 * count lives with the threads it counts, in kernels/threads.c. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

#include "core.h"

static atomic_uint_least64_t memory_limit;

bp_status bp_set_memory_limit(uint64_t bytes)
{
    atomic_store(&memory_limit, bytes);
    return BP_OK;
}

uint64_t bp_get_memory_limit(void) { return atomic_load(&memory_limit); }

/* The first number after `key` in a small text file, or UINT64_MAX when there is none (a
 * missing file, or cgroup's "max"). */
static uint64_t read_number(const char *path, const char *key)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return UINT64_MAX;
    char line[256];
    uint64_t value = UINT64_MAX;
    size_t key_len = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, key_len) != 0)
            continue;
        unsigned long long v;
        if (sscanf(line + key_len, " %llu", &v) == 1)
            value = v;
        break;
    }
    fclose(f);
    return value;
}

/* What a new allocation can get without the OOM killer: the kernel's MemAvailable, and inside a
 * cgroup v2 with a memory.max (a container, a systemd slice) what is left below that limit.
 * UINT64_MAX when neither can be read (then only the allocator can say no). */
static uint64_t available_memory(void)
{
    uint64_t avail = read_number("/proc/meminfo", "MemAvailable:");
    if (avail != UINT64_MAX)
        avail *= 1024; /* the file counts kB */
    uint64_t max = read_number("/sys/fs/cgroup/memory.max", "");
    uint64_t used = read_number("/sys/fs/cgroup/memory.current", "");
    if (max != UINT64_MAX && used != UINT64_MAX) {
        uint64_t left = max > used ? max - used : 0;
        if (left < avail)
            avail = left;
    }
    return avail;
}

/* "7.4 GB" for a message. */
static void human_bytes(char *buf, size_t size, uint64_t bytes)
{
    static const char *const units[] = {"bytes", "kB", "MB", "GB", "TB", "PB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000.0 && u < 5) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%" PRIu64 " %s", bytes, bytes == 1 ? "byte" : "bytes");
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
}

bp_status bp_memory_check(uint64_t bytes, const char *what)
{
    uint64_t limit = atomic_load(&memory_limit);
    const char *source = "the memory limit set with bp_set_memory_limit";
    if (limit == 0) {
        limit = available_memory();
        source = "the memory available on this machine";
    }
    if (bytes <= limit)
        return BP_OK;
    char need[32], have[32];
    human_bytes(need, sizeof need, bytes);
    human_bytes(have, sizeof have, limit);
    return bp_fail(BP_ENOMEM, "%s needs %" PRIu64 " bytes (%s), more than %s (%s)", what, bytes,
                   need, source, have);
}

const char *bp_version(void) { return BP_VERSION_STRING; }

double bp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bp_clock_seconds(void) { return bp_now(); }
