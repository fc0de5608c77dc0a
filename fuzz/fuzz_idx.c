/*
 * fuzz_idx.c - libFuzzer target for the IDX reader (raw and gzip): any bytes, read as an image
 * file, a label file and by bp_idx_info_read, must end in a status (never a crash, a leak or
 * undefined behaviour), and what is accepted must be as long as its header says.
 *
 * The reader takes a path and looks at the file itself (fstat for the length, pread to sniff
 * gzip), which is part of what is under test, so each input is written to one temporary file,
 * on /dev/shm when there is one (a file write per run costs microseconds there), rather than
 * given a from-memory entry that would bypass that code. Built and run by scripts/fuzz.sh.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backprop.h"
#include "core/core.h"
#include "io/io.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[256];
static int fd = -1;

static void remove_file(void)
{
    if (path[0])
        unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    struct stat st;
    const char *dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : NULL;
    if (!dir)
        dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/bp-fuzz-idx-XXXXXX", dir);
    fd = mkstemp(path);
    if (fd < 0)
        abort();
    atexit(remove_file);
    return 0;
}

static int known(bp_status st)
{
    return st == BP_OK || st == BP_EFORMAT || st == BP_EIO || st == BP_ENOMEM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);

    uint8_t *pixels = NULL, *labels = NULL;
    size_t count = 0;
    int rows = 0, cols = 0;
    bp_status st = bp_idx_read_images(path, &pixels, &count, &rows, &cols);
    if (!known(st) || (st == BP_OK) != (pixels != NULL))
        abort();
    if (st == BP_OK) {
        volatile uint8_t sink = 0;
        size_t n = count * (size_t)rows * (size_t)cols;
        for (size_t i = 0; i < n; i++) /* all of it is there, as the header says */
            sink ^= pixels[i];
        (void)sink;
    }
    bp_free(pixels);

    st = bp_idx_read_labels(path, &labels, &count);
    if (!known(st) || (st == BP_OK) != (labels != NULL))
        abort();
    if (st == BP_OK) {
        volatile uint8_t sink = labels[count - 1]; /* the last one the header promises */
        (void)sink;
    }
    bp_free(labels);

    bp_idx_info info;
    st = bp_idx_info_read(path, &info);
    if (!known(st))
        abort();

    bp_alloc_stats_get(&after);
    if (after.bytes_live != before.bytes_live)
        abort();
    return 0;
}
