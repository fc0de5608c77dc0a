/*
 * test_idx.c - the IDX reader and the bp_dataset API: good raw and gzip files, every kind of bad
 * file (each must give its own status and a message naming the file), slices sharing storage,
 * and gather. With BACKPROP_MNIST_DIR set it also loads the real MNIST files from there.
 *
 * The tests write their own small IDX files into a fresh temporary directory.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "backprop.h"
#include "core/core.h"
#include "io/io.h"
#include "testutil.h"

Suite *bp_suite_idx(void);

/* ---- fixtures: a temporary directory and files in it ----------------------------------- */

static char tmp_dir[256];

static void make_tmp_dir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/bp-idx-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(tmp_dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void remove_tmp_dir(void)
{
    DIR *d = opendir(tmp_dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

/* A path in the temporary directory; a few live at once, so a small ring of buffers. */
static const char *tmp_path(const char *name)
{
    static char ring[8][512];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static void write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "fopen %s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb9");
    ck_assert_msg(g != NULL, "gzopen %s", path);
    ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

static unsigned char *read_whole(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A .gz file: `head` followed by `zeros` zero bytes, compressed hard. A run of zeros is the
 * cheapest way to make a small file that decompresses to a lot. */
static void write_gz_zeros(const char *path, const void *head, size_t head_n, size_t zeros)
{
    static const unsigned char zero[1 << 16];
    gzFile g = gzopen(path, "wb9");
    ck_assert_msg(g != NULL, "gzopen %s", path);
    ck_assert_int_eq(gzwrite(g, head, (unsigned)head_n), (int)head_n);
    for (size_t left = zeros; left > 0;) {
        unsigned k = left < sizeof zero ? (unsigned)left : (unsigned)sizeof zero;
        ck_assert_int_eq(gzwrite(g, zero, k), (int)k);
        left -= k;
    }
    ck_assert_int_eq(gzclose(g), Z_OK);
}

static void append_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "ab");
    ck_assert_msg(f != NULL, "fopen %s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* The process's peak resident set so far, in KiB. Memory a reader really fills (decompressed
 * data, grown buffers) shows here under every build, sanitizers included. Each test runs in
 * its own forked process, so the peak starts near the size at fork. */
static long peak_rss_kib(void)
{
    struct rusage ru;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* Cap the address space at what the process maps now plus `extra` bytes, so that allocating
 * much more fails with BP_ENOMEM instead of succeeding quietly. Not under ASan, which reserves
 * terabytes of shadow. Returns whether a cap was set; uncap_address_space undoes it. */
#if !defined(__SANITIZE_ADDRESS__)
static struct rlimit saved_as;
#endif
static int cap_address_space(size_t extra)
{
#if defined(__SANITIZE_ADDRESS__)
    (void)extra;
    return 0;
#else
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &saved_as), 0);
    long pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    int capped = 0;
    if (statm && fscanf(statm, "%ld", &pages) == 1) {
        struct rlimit cap = saved_as;
        cap.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)extra;
        if (saved_as.rlim_cur == RLIM_INFINITY || cap.rlim_cur < saved_as.rlim_cur)
            capped = setrlimit(RLIMIT_AS, &cap) == 0;
    }
    if (statm)
        fclose(statm);
    return capped;
#endif
}

static void uncap_address_space(int capped)
{
#if !defined(__SANITIZE_ADDRESS__)
    if (capped)
        ck_assert_int_eq(setrlimit(RLIMIT_AS, &saved_as), 0);
#else
    (void)capped;
#endif
}

/* ---- the small data set every test uses ------------------------------------------------ */

enum { N = 5, ROWS = 3, COLS = 2, DIM = ROWS * COLS };
static const int labels5[N] = {3, 0, 7, 1, 3}; /* classes = 8 */

static unsigned char pixel(int i, int k)
{
    if (i == 1 && k == 5)
        return 255;
    return (unsigned char)((i * 37 + k * 11) % 255);
}

/* An IDX image file image: header (magic, count, rows, cols) then count images. The header
 * fields may lie; the payload always holds `real` images. */
static unsigned char *image_bytes(uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                                  int real, size_t *n)
{
    *n = 16 + (size_t)real * DIM;
    unsigned char *b = malloc(*n);
    ck_assert_ptr_nonnull(b);
    put_be32(b, magic);
    put_be32(b + 4, count);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    for (int i = 0; i < real; i++)
        for (int k = 0; k < DIM; k++)
            b[16 + i * DIM + k] = pixel(i % N, k);
    return b;
}

static unsigned char *label_bytes(uint32_t magic, uint32_t count, int real, size_t *n)
{
    *n = 8 + (size_t)real;
    unsigned char *b = malloc(*n);
    ck_assert_ptr_nonnull(b);
    put_be32(b, magic);
    put_be32(b + 4, count);
    for (int i = 0; i < real; i++)
        b[8 + i] = (unsigned char)labels5[i % N];
    return b;
}

/* Good raw files "img" and "lbl" in the temporary directory. */
static void write_good_pair(const char *img, const char *lbl, int gz)
{
    size_t n;
    unsigned char *b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    (gz ? write_gz : write_raw)(img, b, n);
    free(b);
    b = label_bytes(0x801, N, N, &n);
    (gz ? write_gz : write_raw)(lbl, b, n);
    free(b);
}

/* Loading `img` (with a good label file) must fail with `want`, and the message must name the
 * file and contain `needle`. Nothing may stay allocated. */
static void expect_pair_fail(const char *img, uint32_t n_labels, bp_status want,
                             const char *needle)
{
    char lbl[512]; /* not tmp_path: its ring would come round to img in a loop */
    snprintf(lbl, sizeof lbl, "%s/good-labels", tmp_dir);
    size_t n;
    unsigned char *b = label_bytes(0x801, n_labels, (int)n_labels, &n);
    write_raw(lbl, b, n);
    free(b);
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    bp_dataset *ds = (bp_dataset *)&ds; /* must be reset to NULL */
    bp_status st = bp_dataset_load_idx(&ds, img, lbl);
    bp_alloc_stats_get(&after);
    ck_assert_msg(st == want, "%s: got %s (%s), want %s", img, bp_status_str(st),
                  bp_last_error(), bp_status_str(want));
    ck_assert_ptr_null(ds);
    ck_assert_msg(strstr(bp_last_error(), img) != NULL, "message does not name %s: %s", img,
                  bp_last_error());
    if (needle)
        ck_assert_msg(strstr(bp_last_error(), needle) != NULL, "message lacks \"%s\": %s",
                      needle, bp_last_error());
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);
}

static void expect_images_fail(const char *img, bp_status want, const char *needle)
{
    expect_pair_fail(img, N, want, needle);
}

static void check_small_set(const bp_dataset *ds)
{
    ck_assert_uint_eq(bp_dataset_count(ds), N);
    ck_assert_int_eq(bp_dataset_dim(ds), DIM);
    ck_assert_int_eq(bp_dataset_classes(ds), 8);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(bp_dataset_label(ds, (size_t)i), labels5[i]);
    float x[N * DIM], y[N * 8];
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, N, x, y, 8), BP_OK);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < DIM; k++) {
            float want = pixel(i, k) / 255.0f;
            ck_assert_float_eq_tol(x[i * DIM + k], want, 1e-7f);
            ck_assert(x[i * DIM + k] >= 0.0f && x[i * DIM + k] <= 1.0f);
        }
        for (int c = 0; c < 8; c++)
            ck_assert_float_eq(y[i * 8 + c], c == labels5[i] ? 1.0f : 0.0f);
    }
    ck_assert_float_eq(x[0], 0.0f);
    ck_assert_float_eq(x[1 * DIM + 5], 1.0f); /* 255 scales to exactly 1 */
}

/* ---- good files ------------------------------------------------------------------------ */

START_TEST(test_raw_loads)
{
    const char *img = tmp_path("img"), *lbl = tmp_path("lbl");
    write_good_pair(img, lbl, 0);
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    bp_dataset *ds = NULL;
    ck_assert_msg(bp_dataset_load_idx(&ds, img, lbl) == BP_OK, "%s", bp_last_error());
    check_small_set(ds);
    bp_dataset_free(ds);
    bp_alloc_stats_get(&after);
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);
}
END_TEST

START_TEST(test_gz_loads)
{
    const char *img = tmp_path("img.gz"), *lbl = tmp_path("lbl.gz");
    write_good_pair(img, lbl, 1);
    bp_dataset *ds = NULL;
    ck_assert_msg(bp_dataset_load_idx(&ds, img, lbl) == BP_OK, "%s", bp_last_error());
    check_small_set(ds);
    bp_dataset_free(ds);
}
END_TEST

/* A .gz payload bigger than the reader's first chunk, so the buffer has to grow. */
START_TEST(test_gz_large_grows)
{
    enum { COUNT = 40000 }; /* 40000 * 6 = 240000 bytes... */
    const uint32_t rows = 28, cols = 28; /* ...so make them MNIST-sized: 31 MB */
    size_t n = 16 + (size_t)COUNT * rows * cols;
    unsigned char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    put_be32(b, 0x803);
    put_be32(b + 4, COUNT);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    for (size_t i = 16; i < n; i++)
        b[i] = (unsigned char)(i * 2654435761u >> 24);
    const char *img = tmp_path("big.gz");
    gzFile g = gzopen(img, "wb1");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, b, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);

    uint8_t *pixels = NULL;
    size_t count = 0;
    int r = 0, c = 0;
    ck_assert_msg(bp_idx_read_images(img, &pixels, &count, &r, &c) == BP_OK, "%s",
                  bp_last_error());
    ck_assert_uint_eq(count, COUNT);
    ck_assert_int_eq(r, 28);
    ck_assert_int_eq(c, 28);
    ck_assert_int_eq(memcmp(pixels, b + 16, n - 16), 0);
    bp_free(pixels);
    free(b);
}
END_TEST

/* ---- bad files ------------------------------------------------------------------------- */

START_TEST(test_nonexistent)
{
    const char *img = tmp_path("no-such-file");
    expect_images_fail(img, BP_EIO, "No such file");
    /* A directory opens but has no length. */
    expect_images_fail(tmp_dir, BP_EIO, "is a directory");
}
END_TEST

START_TEST(test_truncated_raw)
{
    size_t n;
    unsigned char *b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    const char *img = tmp_path("img");
    /* Every cut: inside the magic, inside the header, inside the pixels. */
    for (size_t cut = 0; cut < n; cut++) {
        write_raw(img, b, cut);
        expect_images_fail(img, BP_EFORMAT, NULL);
    }
    write_raw(img, b, n - 1);
    expect_images_fail(img, BP_EFORMAT, "header says 5 images of 3x2 (16 + 30 bytes) but the "
                       "file holds 45 bytes");
    write_raw(img, b, 10);
    expect_images_fail(img, BP_EFORMAT, "16-byte header");
    free(b);
}
END_TEST

START_TEST(test_lying_header)
{
    size_t n;
    const char *img = tmp_path("img");
    /* Claims 1000 images, holds 5. */
    unsigned char *b = image_bytes(0x803, 1000, ROWS, COLS, N, &n);
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "header says 1000 images of 3x2");
    free(b);
    /* Claims 2^32 - 1 images of 4096x4096: some 72 PB. */
    b = image_bytes(0x803, 0xffffffffu, 4096, 4096, N, &n);
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "4294967295 images of 4096x4096");
    free(b);
    /* Rows and cols out of range. */
    b = image_bytes(0x803, N, 0, COLS, N, &n);
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "rows = 0");
    free(b);
    b = image_bytes(0x803, N, ROWS, 0x80000000u, N, &n);
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "cols = 2147483648");
    free(b);
    b = image_bytes(0x803, 0, ROWS, COLS, 0, &n);
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "count = 0");
    free(b);
}
END_TEST

/* A .gz header's lie cannot be checked against a length, so the limits and the grown buffer
 * must hold it: above the limits it is refused outright, below them it must fail without
 * allocating what it claims. */
START_TEST(test_lying_header_gz)
{
    size_t n;
    const char *img = tmp_path("img.gz");
    unsigned char *b = image_bytes(0x803, 0xffffffffu, 28, 28, N, &n);
    write_gz(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "count = 4294967295");
    free(b);
    b = image_bytes(0x803, 10000000, 28, 28, N, &n); /* 7.8 GB: over the byte limit */
    write_gz(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "limit");
    free(b);

    /* 1,000,000 images of 28x28 = 784 MB, within the limits; the file holds 5, in some 60
     * bytes of gzip, which cannot decompress to more than 62 KB: refused from the file's size,
     * before a byte is inflated. (test_gz_grows_with_data covers a claim the size allows.) */
    b = image_bytes(0x803, 1000000, 28, 28, N, &n);
    write_gz(img, b, n);
    free(b);
    expect_images_fail(img, BP_EFORMAT, "header says 1000000 images of 28x28");
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "bytes of gzip data can hold"));
}
END_TEST

START_TEST(test_trailing_garbage)
{
    size_t n;
    unsigned char *b = image_bytes(0x803, N, ROWS, COLS, N + 1, &n); /* one image too many */
    const char *img = tmp_path("img");
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "6 bytes of trailing data");
    write_raw(img, b, n - 5); /* a single stray byte */
    expect_images_fail(img, BP_EFORMAT, "1 byte of trailing data");
    const char *gz = tmp_path("img.gz");
    write_gz(gz, b, n);
    expect_images_fail(gz, BP_EFORMAT, "trailing data");
    free(b);

    /* Labels too. */
    b = label_bytes(0x801, N, N + 3, &n);
    const char *img_ok = tmp_path("img-ok"), *lbl = tmp_path("lbl");
    unsigned char *ib = image_bytes(0x803, N, ROWS, COLS, N, &n);
    write_raw(img_ok, ib, n);
    free(ib);
    write_raw(lbl, b, 8 + N + 3);
    free(b);
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, img_ok, lbl), BP_EFORMAT);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), lbl));
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "5 labels"));
}
END_TEST

START_TEST(test_wrong_magic)
{
    size_t n;
    const char *img = tmp_path("img");
    /* A label file given as the images. */
    unsigned char *b = label_bytes(0x801, N, N, &n);
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "magic 0x00000801 is not an image file (expected "
                       "0x00000803");
    free(b);
    b = image_bytes(0x12345678u, N, ROWS, COLS, N, &n);
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "magic 0x12345678 is not an IDX file");
    free(b);
    b = image_bytes(0x00000d03u, N, ROWS, COLS, N, &n); /* IDX floats */
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "element type 0x0d");
    free(b);
    b = image_bytes(0x00000802u, N, ROWS, COLS, N, &n);
    write_raw(img, b, n);
    expect_images_fail(img, BP_EFORMAT, "2 dimensions");
    free(b);

    /* An image file given as the labels. */
    const char *img_ok = tmp_path("img-ok"), *lbl = tmp_path("lbl");
    write_good_pair(img_ok, lbl, 0);
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, img_ok, img_ok), BP_EFORMAT);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "magic 0x00000803 is not a"));
    ck_assert_ptr_nonnull(strstr(bp_last_error(), img_ok));
}
END_TEST

START_TEST(test_count_mismatch)
{
    size_t n;
    const char *img = tmp_path("img"), *lbl = tmp_path("lbl");
    unsigned char *b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    write_raw(img, b, n);
    free(b);
    b = label_bytes(0x801, N - 1, N - 1, &n);
    write_raw(lbl, b, n);
    free(b);
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, img, lbl), BP_EFORMAT);
    bp_alloc_stats_get(&after);
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);
    ck_assert_ptr_null(ds);
    const char *msg = bp_last_error();
    ck_assert_msg(strstr(msg, img) && strstr(msg, lbl) && strstr(msg, "5 images") &&
                  strstr(msg, "4 labels"), "%s", msg);
}
END_TEST

START_TEST(test_truncated_gz)
{
    const char *img = tmp_path("img.gz"), *cut = tmp_path("cut.gz");
    size_t n;
    unsigned char *b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    write_gz(img, b, n);
    free(b);
    unsigned char *gz = read_whole(img, &n);
    /* Every cut of the compressed file: in the gzip header, the deflate data, the trailer. */
    for (size_t len = 1; len < n; len++) {
        write_raw(cut, gz, len);
        expect_images_fail(cut, BP_EFORMAT, NULL);
    }
    write_raw(cut, gz, n - 4); /* the length half of the trailer gone */
    expect_images_fail(cut, BP_EFORMAT, "truncated");
    /* A corrupted CRC. */
    gz[n - 6] ^= 0xff;
    write_raw(cut, gz, n);
    expect_images_fail(cut, BP_EFORMAT, "corrupt gzip data");
    free(gz);
}
END_TEST

/* Random damage to a good file, raw and gzip: never a crash, never a leak, always a status. */
START_TEST(test_mutations_never_crash)
{
    size_t n;
    unsigned char *b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    const char *img = tmp_path("m"), *gz = tmp_path("m.gz");
    unsigned char mutated[64];
    uint32_t seed = 12345;
    for (int round = 0; round < 400; round++) {
        memcpy(mutated, b, n);
        int flips = 1 + round % 3;
        for (int f = 0; f < flips; f++) {
            seed = seed * 1664525u + 1013904223u;
            size_t at = (seed >> 8) % (round % 2 ? 16 : n); /* half aim at the header */
            mutated[at] = (unsigned char)(seed >> 24);
        }
        const char *path = round % 4 == 3 ? gz : img;
        (round % 4 == 3 ? write_gz : write_raw)(path, mutated, n);
        uint8_t *pixels = NULL;
        size_t count = 0;
        int r = 0, c = 0;
        bp_alloc_stats before, after;
        bp_alloc_stats_get(&before);
        bp_status st = bp_idx_read_images(path, &pixels, &count, &r, &c);
        ck_assert(st == BP_OK || st == BP_EFORMAT);
        if (st == BP_OK) {
            ck_assert_uint_eq(16 + count * (size_t)r * (size_t)c, n);
            bp_free(pixels);
        } else {
            ck_assert_ptr_null(pixels);
            ck_assert_ptr_nonnull(strstr(bp_last_error(), path));
        }
        bp_alloc_stats_get(&after);
        ck_assert_uint_eq(after.bytes_live, before.bytes_live);
    }
    free(b);
}
END_TEST

/* A FIFO (or anything but a regular file) in place of a data file: open() of a FIFO blocks until
 * a writer appears, so without O_NONBLOCK this test hangs; the alarm turns a hang into a
 * failure. */
START_TEST(test_fifo_refused)
{
    const char *fifo = tmp_path("fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(10);
    expect_images_fail(fifo, BP_EIO, "is a FIFO, not a regular file");
    /* The label file too. */
    const char *img = tmp_path("img"), *lbl = tmp_path("lbl");
    write_good_pair(img, lbl, 0);
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, img, fifo), BP_EIO);
    ck_assert_ptr_null(ds);
    ck_assert_msg(strstr(bp_last_error(), fifo) && strstr(bp_last_error(), "is a FIFO"), "%s",
                  bp_last_error());
    alarm(0);
}
END_TEST

/* Links that lead nowhere say so, rather than "No such file". */
START_TEST(test_bad_symlinks)
{
    const char *dangling = tmp_path("dangling"), *loop_a = tmp_path("loop-a");
    const char *loop_b = tmp_path("loop-b");
    ck_assert_int_eq(symlink(tmp_path("nothing-here"), dangling), 0);
    expect_images_fail(dangling, BP_EIO, "dangling symbolic link");
    ck_assert_int_eq(symlink(loop_b, loop_a), 0);
    ck_assert_int_eq(symlink(loop_a, loop_b), 0);
    expect_images_fail(loop_a, BP_EIO, "symbolic link");
}
END_TEST

/* The gzip bomb of issue 8, scaled down: a header claiming 64 images of 4096x4096 (1 GiB) over
 * 64 MiB of zeros, which compress to some 64 KB. Deflate cannot expand a byte to more than 1032
 * (a 258-byte match in two bits), so the file's size alone refutes the header: it must be
 * refused before any payload is inflated or allocated, whichever label file comes with it. */
START_TEST(test_gz_bomb_refused)
{
    unsigned char head[16];
    put_be32(head, 0x803);
    put_be32(head + 4, 64);
    put_be32(head + 8, 4096);
    put_be32(head + 12, 4096);
    const char *img = tmp_path("bomb.gz");
    write_gz_zeros(img, head, sizeof head, ((size_t)64 << 20) - 16);

    const long rss0 = peak_rss_kib();
    int capped = cap_address_space((size_t)32 << 20);
    /* 64 labels: the counts agree, so only the size bound can refuse it early. */
    expect_pair_fail(img, 64, BP_EFORMAT, "bytes of gzip data can hold");
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "64 images of 4096x4096"));
    /* 5 labels: refused as early. */
    expect_pair_fail(img, N, BP_EFORMAT, "64 images of 4096x4096");
    uncap_address_space(capped);
    const long grown = peak_rss_kib() - rss0;
    ck_assert_msg(grown < 16 * 1024, "the refusal touched %ld KiB", grown);
}
END_TEST

/* The label file is read first and the image header held to its count before any image byte
 * is read: an image file whose payload is corrupt, with a count that does not match, reports
 * the mismatch (reading the payload would have reported the corruption). */
START_TEST(test_labels_checked_first)
{
    size_t n;
    unsigned char *b = image_bytes(0x803, 64, ROWS, COLS, 64, &n);
    const char *img = tmp_path("img.gz");
    write_gz(img, b, n);
    free(b);
    unsigned char *gz = read_whole(img, &n);
    gz[n - 6] ^= 0xff; /* the CRC */
    write_raw(img, gz, n);
    free(gz);
    expect_images_fail(img, BP_EFORMAT, "holds 64 images of 3x2 but");
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "holds 5 labels"));
}
END_TEST

/* A stream that runs past its header is refused at its first extra byte: the 64 MiB of zeros
 * after a header claiming 30 bytes are never inflated. */
START_TEST(test_gz_overrun_stops)
{
    size_t n;
    unsigned char *b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    const char *img = tmp_path("over.gz");
    write_gz_zeros(img, b, n, (size_t)64 << 20);
    free(b);
    const long rss0 = peak_rss_kib();
    expect_images_fail(img, BP_EFORMAT, "runs past");
    const long grown = peak_rss_kib() - rss0;
    ck_assert_msg(grown < 16 * 1024, "the refusal touched %ld KiB", grown);
}
END_TEST

/* A header the file's size allows but its data does not fill: the buffer grows only with the
 * data that arrives, so with the address space capped well below the claim the result is the
 * true BP_EFORMAT, not BP_ENOMEM. Random bytes do not compress, so 128 KiB of them make a file
 * that may claim 128 MiB. */
START_TEST(test_gz_grows_with_data)
{
    enum { REAL = 128 << 10 };
    const uint32_t count = (128u << 20) / 784;
    unsigned char *b = malloc(16 + REAL);
    ck_assert_ptr_nonnull(b);
    put_be32(b, 0x803);
    put_be32(b + 4, count);
    put_be32(b + 8, 28);
    put_be32(b + 12, 28);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 16; i < 16 + REAL; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        b[i] = (unsigned char)(state >> 24);
    }
    const char *img = tmp_path("short.gz");
    write_gz(img, b, 16 + REAL);
    free(b);
    const long rss0 = peak_rss_kib();
    int capped = cap_address_space((size_t)64 << 20);
    char needle[64];
    snprintf(needle, sizeof needle, "header says %u images of 28x28", count);
    expect_pair_fail(img, count, BP_EFORMAT, needle);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "decompressed data holds"));
    uncap_address_space(capped);
    const long grown = peak_rss_kib() - rss0;
    ck_assert_msg(grown < 16 * 1024, "the refusal touched %ld KiB", grown);
}
END_TEST

/* zlib's gzread stops at the end of the gzip stream and ignores what follows; we do not. */
START_TEST(test_gz_trailing_garbage)
{
    const char *img = tmp_path("img.gz"), *lbl = tmp_path("lbl.gz");
    write_good_pair(img, lbl, 1);
    append_raw(img, "GARBAGE", 7);
    expect_images_fail(img, BP_EFORMAT, "7 bytes of trailing data");

    write_good_pair(img, lbl, 1);
    append_raw(img, "", 1); /* a single zero byte */
    expect_images_fail(img, BP_EFORMAT, "1 byte of trailing data");

    /* Something that starts like a second member but is not one. */
    write_good_pair(img, lbl, 1);
    append_raw(img, "\x1f\x8b\x08", 3);
    expect_images_fail(img, BP_EFORMAT, NULL);

    /* The label file too. */
    write_good_pair(img, lbl, 1);
    append_raw(lbl, "\n", 1);
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, img, lbl), BP_EFORMAT);
    ck_assert_ptr_null(ds);
    ck_assert_msg(strstr(bp_last_error(), lbl) && strstr(bp_last_error(), "1 byte of trailing"),
                  "%s", bp_last_error());
}
END_TEST

/* `gzip -c a b > c` makes one valid gzip file of two members (RFC 1952): it reads as a and b
 * joined, and an empty member changes nothing. */
START_TEST(test_gz_concatenated_members)
{
    size_t ni, nl;
    unsigned char *ib = image_bytes(0x803, N, ROWS, COLS, N, &ni);
    unsigned char *lb = label_bytes(0x801, N, N, &nl);
    const char *part = tmp_path("part.gz"), *img = tmp_path("img.gz"), *lbl = tmp_path("lbl.gz");
    const size_t isplit = 16 + 2 * DIM + 1, lsplit = 5; /* mid-image, mid-header */
    size_t n;
    unsigned char *gz;
    write_gz(img, ib, isplit);
    write_gz(part, ib + isplit, ni - isplit);
    gz = read_whole(part, &n);
    append_raw(img, gz, n);
    free(gz);
    write_gz(part, "", 0);
    gz = read_whole(part, &n);
    append_raw(img, gz, n);
    write_gz(lbl, lb, lsplit);
    append_raw(lbl, gz, n); /* an empty member in between */
    free(gz);
    write_gz(part, lb + lsplit, nl - lsplit);
    gz = read_whole(part, &n);
    append_raw(lbl, gz, n);
    free(gz);
    free(ib);
    free(lb);
    bp_dataset *ds = NULL;
    ck_assert_msg(bp_dataset_load_idx(&ds, img, lbl) == BP_OK, "%s", bp_last_error());
    check_small_set(ds);
    bp_dataset_free(ds);
}
END_TEST

/* Counts of one read as English. */
START_TEST(test_singular_messages)
{
    size_t n;
    const char *img = tmp_path("img");
    unsigned char *b = image_bytes(0x803, 1, ROWS, COLS, N, &n);
    write_raw(img, b, n);
    free(b);
    expect_images_fail(img, BP_EFORMAT, "header says 1 image of 3x2 (16 + 6 bytes)");

    const char *lbl = tmp_path("lbl");
    b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    write_raw(img, b, n);
    free(b);
    b = label_bytes(0x801, 1, 1, &n);
    write_raw(lbl, b, n);
    free(b);
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, img, lbl), BP_EFORMAT);
    const char *msg = bp_last_error();
    ck_assert_msg(strstr(msg, "holds 1 label") && !strstr(msg, "1 labels"), "%s", msg);
}
END_TEST

/* The header alone, validated as the loader validates it. */
START_TEST(test_info_read)
{
    const char *img = tmp_path("img"), *lbl = tmp_path("lbl.gz");
    size_t n;
    unsigned char *b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    write_raw(img, b, n);
    free(b);
    b = label_bytes(0x801, N, N, &n);
    write_gz(lbl, b, n);
    free(b);

    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    bp_idx_info info;
    ck_assert_msg(bp_idx_info_read(img, &info) == BP_OK, "%s", bp_last_error());
    ck_assert_uint_eq(info.magic, 0x803);
    ck_assert_uint_eq(info.count, N);
    ck_assert_int_eq(info.rows, ROWS);
    ck_assert_int_eq(info.cols, COLS);
    ck_assert_msg(bp_idx_info_read(lbl, &info) == BP_OK, "%s", bp_last_error());
    ck_assert_uint_eq(info.magic, 0x801);
    ck_assert_uint_eq(info.count, N);
    ck_assert_int_eq(info.rows, 0);
    ck_assert_int_eq(info.cols, 0);
    bp_alloc_stats_get(&after);
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);

    /* A raw file's exact length, as the loader checks it; out is cleared. */
    b = image_bytes(0x803, N, ROWS, COLS, N, &n);
    write_raw(img, b, n - 1);
    ck_assert_int_eq(bp_idx_info_read(img, &info), BP_EFORMAT);
    ck_assert_msg(strstr(bp_last_error(), img) && strstr(bp_last_error(), "header says 5 images "
                  "of 3x2 (16 + 30 bytes) but the file holds 45 bytes"), "%s", bp_last_error());
    ck_assert_uint_eq(info.magic, 0);
    ck_assert_uint_eq(info.count, 0);

    /* Only the header is inflated: a corrupt payload goes unnoticed here... */
    const char *gz = tmp_path("img.gz");
    write_gz(gz, b, n);
    free(b);
    unsigned char *z = read_whole(gz, &n);
    z[n - 6] ^= 0xff;
    write_raw(gz, z, n);
    free(z);
    ck_assert_msg(bp_idx_info_read(gz, &info) == BP_OK, "%s", bp_last_error());
    ck_assert_uint_eq(info.count, N);
    /* ...but a header its file's size refutes does not. */
    unsigned char head[16];
    put_be32(head, 0x803);
    put_be32(head + 4, 64);
    put_be32(head + 8, 4096);
    put_be32(head + 12, 4096);
    write_gz_zeros(gz, head, sizeof head, 1 << 20);
    ck_assert_int_eq(bp_idx_info_read(gz, &info), BP_EFORMAT);
    ck_assert_msg(strstr(bp_last_error(), gz) && strstr(bp_last_error(), "bytes of gzip data "
                  "can hold"), "%s", bp_last_error());

    /* Magics of neither kind, short files, a FIFO, NULLs. */
    put_be32(head, 0x12345678u);
    write_raw(img, head, 16);
    ck_assert_int_eq(bp_idx_info_read(img, &info), BP_EFORMAT);
    ck_assert_msg(strstr(bp_last_error(), "0x12345678 is not an IDX file"), "%s",
                  bp_last_error());
    put_be32(head, 0x802u);
    write_raw(img, head, 16);
    ck_assert_int_eq(bp_idx_info_read(img, &info), BP_EFORMAT);
    ck_assert_msg(strstr(bp_last_error(), "2 dimensions is neither"), "%s", bp_last_error());
    write_raw(img, head, 3);
    ck_assert_int_eq(bp_idx_info_read(img, &info), BP_EFORMAT);
    ck_assert_msg(strstr(bp_last_error(), "holds 3 bytes, less than the 8-byte header"), "%s",
                  bp_last_error());
    put_be32(head, 0x801u);
    write_raw(img, head, 7);
    ck_assert_int_eq(bp_idx_info_read(img, &info), BP_EFORMAT);
    ck_assert_msg(strstr(bp_last_error(), "holds 7 bytes, less than the 8-byte header of an "
                  "IDX label file"), "%s", bp_last_error());
    const char *fifo = tmp_path("fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(10);
    ck_assert_int_eq(bp_idx_info_read(fifo, &info), BP_EIO);
    alarm(0);
    ck_assert_msg(strstr(bp_last_error(), "is a FIFO, not a regular file"), "%s",
                  bp_last_error());
    ck_assert_int_eq(bp_idx_info_read(tmp_dir, &info), BP_EIO);
    ck_assert_msg(strstr(bp_last_error(), "is a directory"), "%s", bp_last_error());
    ck_assert_int_eq(bp_idx_info_read(NULL, &info), BP_EINVAL);
    ck_assert_int_eq(bp_idx_info_read(img, NULL), BP_EINVAL);
}
END_TEST

/* bp_dataset_load_idx_ex(images, labels, expect) must fail with `want` and `needle`, leaving
 * nothing allocated. */
static void expect_ex_fail(const char *img, const char *lbl, const bp_idx_expect *e,
                           bp_status want, const char *needle)
{
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    bp_dataset *ds = (bp_dataset *)&ds;
    bp_status st = bp_dataset_load_idx_ex(&ds, img, lbl, e);
    bp_alloc_stats_get(&after);
    ck_assert_msg(st == want, "%s: got %s (%s), want %s", img, bp_status_str(st),
                  bp_last_error(), bp_status_str(want));
    ck_assert_ptr_null(ds);
    ck_assert_msg(strstr(bp_last_error(), needle), "message lacks \"%s\": %s", needle,
                  bp_last_error());
    if (want == BP_EFORMAT)
        ck_assert_msg(strstr(bp_last_error(), img), "message does not name %s: %s", img,
                      bp_last_error());
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);
}

/* The shape of the images is kept, and a test set whose images are 6x1 where the training set's
 * are 3x2 (as 784x1 against 28x28) is refused when the training shape is asked for. */
START_TEST(test_image_shape)
{
    const char *img = tmp_path("img"), *lbl = tmp_path("lbl");
    write_good_pair(img, lbl, 0);
    bp_dataset *train = NULL, *view = NULL, *flat = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&train, img, lbl), BP_OK);
    int rows = -1, cols = -1;
    bp_dataset_image_shape(train, &rows, &cols);
    ck_assert_int_eq(rows, ROWS);
    ck_assert_int_eq(cols, COLS);
    ck_assert_int_eq(bp_dataset_slice(train, 1, 2, &view), BP_OK);
    rows = cols = -1;
    bp_dataset_image_shape(view, &rows, &cols);
    ck_assert_int_eq(rows, ROWS);
    ck_assert_int_eq(cols, COLS);
    bp_dataset_image_shape(view, NULL, &cols); /* either output may be NULL */
    bp_dataset_image_shape(NULL, &rows, &cols);
    ck_assert_int_eq(rows, 0);
    ck_assert_int_eq(cols, 0);
    const float x[4] = {1, 2, 3, 4};
    const int lab[2] = {0, 1};
    ck_assert_int_eq(bp_dataset_from_floats(&flat, x, lab, 2, 2, 2), BP_OK);
    bp_dataset_image_shape(flat, &rows, &cols);
    ck_assert_int_eq(rows, 2);
    ck_assert_int_eq(cols, 1);
    bp_dataset_free(flat);

    /* The test set: same count and pixel count, other shape. */
    size_t n;
    const char *flat_img = tmp_path("flat-img");
    unsigned char *b = image_bytes(0x803, N, DIM, 1, N, &n);
    write_raw(flat_img, b, n);
    bp_idx_expect e = {0};
    bp_dataset_image_shape(train, &e.rows, &e.cols);
    expect_ex_fail(flat_img, lbl, &e, BP_EFORMAT, "header says images of 6x1, expected 3x2");
    /* Without expectations it loads, and says what it is. */
    bp_dataset *test = NULL;
    ck_assert_int_eq(bp_dataset_load_idx_ex(&test, flat_img, lbl, NULL), BP_OK);
    bp_dataset_image_shape(test, &rows, &cols);
    ck_assert_int_eq(rows, DIM);
    ck_assert_int_eq(cols, 1);
    bp_dataset_free(test);
    ck_assert_int_eq(bp_dataset_load_idx_ex(&test, img, lbl, &e), BP_OK);
    bp_dataset_free(test);

    /* One field at a time; dim alone, as the net's input width. */
    expect_ex_fail(flat_img, lbl, &(bp_idx_expect){.rows = 3}, BP_EFORMAT, "expected 3 rows");
    expect_ex_fail(flat_img, lbl, &(bp_idx_expect){.cols = 2}, BP_EFORMAT,
                   "expected 2 columns");
    expect_ex_fail(img, lbl, &(bp_idx_expect){.dim = 784}, BP_EFORMAT,
                   "header says images of 3x2 (6 inputs each), expected 784 inputs");
    expect_ex_fail(img, lbl, &(bp_idx_expect){.dim = 1}, BP_EFORMAT, "expected 1 input");
    ck_assert_int_eq(bp_dataset_load_idx_ex(&test, flat_img, lbl, &(bp_idx_expect){.dim = 6}),
                     BP_OK);
    bp_dataset_free(test);

    /* Checked from the header: a payload that is corrupt is never reached. */
    const char *gz = tmp_path("flat.gz");
    write_gz(gz, b, n);
    free(b);
    unsigned char *z = read_whole(gz, &n);
    z[n - 6] ^= 0xff;
    write_raw(gz, z, n);
    free(z);
    expect_ex_fail(gz, lbl, &e, BP_EFORMAT, "header says images of 6x1, expected 3x2");

    /* A caller's contradictions are its own. */
    expect_ex_fail(img, lbl, &(bp_idx_expect){.rows = -1}, BP_EINVAL, "negative");
    expect_ex_fail(img, lbl, &(bp_idx_expect){3, 2, 7}, BP_EINVAL, "3x2 images and dim = 7");
    ck_assert_int_eq(bp_dataset_load_idx_ex(NULL, img, lbl, &e), BP_EINVAL);
    bp_dataset_free(view);
    bp_dataset_free(train);
}
END_TEST

/* ---- the data set API ------------------------------------------------------------------ */

START_TEST(test_null_arguments)
{
    bp_dataset *ds = NULL;
    const char *p = tmp_path("x");
    ck_assert_int_eq(bp_dataset_load_idx(NULL, p, p), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_load_idx(&ds, NULL, p), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_load_idx(&ds, p, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_slice(NULL, 0, 1, &ds), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_gather(NULL, NULL, 1, (float[1]){0}, NULL, 0), BP_EINVAL);
    ck_assert_uint_eq(bp_dataset_count(NULL), 0);
    ck_assert_int_eq(bp_dataset_dim(NULL), 0);
    ck_assert_int_eq(bp_dataset_classes(NULL), 0);
    ck_assert_int_eq(bp_dataset_label(NULL, 0), -1);
    bp_dataset_free(NULL);
    ck_assert_int_eq(bp_idx_read_labels(p, NULL, NULL), BP_EINVAL);
}
END_TEST

START_TEST(test_slices_share_storage)
{
    const char *img = tmp_path("img"), *lbl = tmp_path("lbl");
    write_good_pair(img, lbl, 0);
    bp_alloc_stats base, mid, end;
    bp_alloc_stats_get(&base);
    bp_dataset *all = NULL, *tail = NULL, *one = NULL, *bad = (bp_dataset *)&bad;
    ck_assert_int_eq(bp_dataset_load_idx(&all, img, lbl), BP_OK);
    bp_alloc_stats_get(&mid);
    ck_assert_int_eq(bp_dataset_slice(all, 2, 3, &tail), BP_OK);
    bp_alloc_stats after_slice;
    bp_alloc_stats_get(&after_slice);
    /* A view costs a handle, not a copy of the pixels. */
    ck_assert_uint_lt(after_slice.bytes_live - mid.bytes_live, 256);

    ck_assert_int_eq(bp_dataset_slice(all, 4, 2, &bad), BP_EINVAL);
    ck_assert_ptr_null(bad);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "outside"));
    ck_assert_int_eq(bp_dataset_slice(all, 6, 0, &bad), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_slice(all, SIZE_MAX, 2, &bad), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_slice(all, 2, SIZE_MAX, &bad), BP_EINVAL);

    bp_dataset_free(all); /* the view keeps the storage */
    ck_assert_uint_eq(bp_dataset_count(tail), 3);
    ck_assert_int_eq(bp_dataset_dim(tail), DIM);
    ck_assert_int_eq(bp_dataset_classes(tail), 8);
    ck_assert_int_eq(bp_dataset_label(tail, 0), labels5[2]);
    ck_assert_int_eq(bp_dataset_label(tail, 2), labels5[4]);
    ck_assert_int_eq(bp_dataset_label(tail, 3), -1);

    /* A slice of a slice counts from its own start. */
    ck_assert_int_eq(bp_dataset_slice(tail, 1, 1, &one), BP_OK);
    bp_dataset_free(tail);
    ck_assert_int_eq(bp_dataset_label(one, 0), labels5[3]);
    float x[DIM], y[8];
    ck_assert_int_eq(bp_dataset_gather(one, NULL, 1, x, y, 8), BP_OK);
    for (int k = 0; k < DIM; k++)
        ck_assert_float_eq_tol(x[k], pixel(3, k) / 255.0f, 1e-7f);
    ck_assert_int_eq(bp_dataset_gather(one, NULL, 2, x, y, 8), BP_EINVAL);
    bp_dataset_free(one);
    bp_alloc_stats_get(&end);
    ck_assert_uint_eq(end.bytes_live, base.bytes_live);
}
END_TEST

START_TEST(test_gather)
{
    const char *img = tmp_path("img"), *lbl = tmp_path("lbl");
    write_good_pair(img, lbl, 0);
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, img, lbl), BP_OK);

    const size_t idx[4] = {4, 1, 1, 0};
    float x[4 * DIM], y[4 * 8];
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    ck_assert_int_eq(bp_dataset_gather(ds, idx, 4, x, y, 8), BP_OK);
    bp_alloc_stats_get(&after);
    ck_assert_uint_eq(after.allocations, before.allocations); /* the hot path allocates nothing */
    for (int j = 0; j < 4; j++) {
        for (int k = 0; k < DIM; k++)
            ck_assert_float_eq_tol(x[j * DIM + k], pixel((int)idx[j], k) / 255.0f, 1e-7f);
        for (int c = 0; c < 8; c++)
            ck_assert_float_eq(y[j * 8 + c], c == labels5[idx[j]] ? 1.0f : 0.0f);
    }
    /* Wider targets than classes are fine; y NULL skips targets. */
    float y10[4 * 10];
    ck_assert_int_eq(bp_dataset_gather(ds, idx, 4, x, y10, 10), BP_OK);
    ck_assert_float_eq(y10[0 * 10 + 3], 1.0f);
    ck_assert_float_eq(y10[0 * 10 + 9], 0.0f);
    ck_assert_int_eq(bp_dataset_gather(ds, idx, 4, x, NULL, 0), BP_OK);
    ck_assert_int_eq(bp_dataset_gather(ds, idx, 0, x, y, 8), BP_OK);

    /* Label 7 does not fit 7 outputs; nothing is written on failure. */
    float xs[4 * DIM], ys[4 * 7];
    for (int i = 0; i < 4 * DIM; i++)
        xs[i] = -1.0f;
    const size_t has7[2] = {0, 2};
    ck_assert_int_eq(bp_dataset_gather(ds, has7, 2, xs, ys, 7), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "label 7"));
    ck_assert_float_eq(xs[0], -1.0f);
    /* Indices out of range, and a bad batch. */
    const size_t far[2] = {0, 5};
    ck_assert_int_eq(bp_dataset_gather(ds, far, 2, x, y, 8), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "idx[1] = 5"));
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, N + 1, x, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_gather(ds, idx, -1, x, y, 8), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_gather(ds, idx, 4, NULL, y, 8), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_gather(ds, idx, 4, x, y, 0), BP_EINVAL);
    bp_dataset_free(ds);
}
END_TEST

/* What sample 5 i + k of an expanded view must hold at (r, c): image i moved one pixel up,
 * down, left or right for k = 1..4 (so read from the neighbour below, above, right, left),
 * 0 where that neighbour is off the image. */
static float shifted_pixel(int i, int k, int r, int c)
{
    static const int dr[5] = {0, 1, -1, 0, 0}, dc[5] = {0, 0, 0, 1, -1};
    int rr = r + dr[k], cc = c + dc[k];
    if (rr < 0 || rr >= ROWS || cc < 0 || cc >= COLS)
        return 0.0f;
    return (float)pixel(i, rr * COLS + cc) * (1.0f / 255.0f); /* the gather's scaling */
}

static void check_expanded_column(const float *x, int i, int k)
{
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++)
            ck_assert_msg(x[r * COLS + c] == shifted_pixel(i, k, r, c),
                          "image %d shift %d pixel (%d, %d): %g, want %g", i, k, r, c,
                          (double)x[r * COLS + c], (double)shifted_pixel(i, k, r, c));
}

START_TEST(test_expand_shifts)
{
    const char *img = tmp_path("img"), *lbl = tmp_path("lbl");
    write_good_pair(img, lbl, 0);
    bp_dataset *ds = NULL, *big = NULL, *again = NULL, *part = NULL, *tail = NULL, *big2 = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, img, lbl), BP_OK);
    ck_assert_int_eq(bp_dataset_expand_shifts(ds, &big), BP_OK);
    ck_assert_uint_eq(bp_dataset_count(big), 5 * N);
    ck_assert_int_eq(bp_dataset_dim(big), DIM);
    ck_assert_int_eq(bp_dataset_classes(big), 8);
    int rows, cols;
    bp_dataset_image_shape(big, &rows, &cols);
    ck_assert_int_eq(rows, ROWS);
    ck_assert_int_eq(cols, COLS);
    for (int s = 0; s < 5 * N; s++)
        ck_assert_int_eq(bp_dataset_label(big, (size_t)s), labels5[s / 5]);
    ck_assert_int_eq(bp_dataset_label(big, 5 * N), -1);

    /* In order, then in an order that visits every shift of several images out of turn. */
    float x[5 * N * DIM], y[5 * N * 8];
    ck_assert_int_eq(bp_dataset_gather(big, NULL, 5 * N, x, y, 8), BP_OK);
    for (int s = 0; s < 5 * N; s++) {
        check_expanded_column(x + s * DIM, s / 5, s % 5);
        for (int c = 0; c < 8; c++)
            ck_assert_float_eq(y[s * 8 + c], c == labels5[s / 5] ? 1.0f : 0.0f);
    }
    const size_t idx[7] = {24, 3, 9, 12, 0, 21, 8};
    ck_assert_int_eq(bp_dataset_gather(big, idx, 7, x, y, 8), BP_OK);
    for (int j = 0; j < 7; j++) {
        check_expanded_column(x + j * DIM, (int)idx[j] / 5, (int)idx[j] % 5);
        ck_assert_float_eq(y[j * 8 + labels5[idx[j] / 5]], 1.0f);
    }
    /* Image 2 has label 7: 7 outputs do not hold it, in any of its shifts. */
    const size_t has7[1] = {13};
    ck_assert_int_eq(bp_dataset_gather(big, has7, 1, x, y, 7), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_gather(big, idx, 1, x, y, 7), BP_OK); /* sample 24: label 3 */

    /* Nothing expands twice; a slice of the view is of expanded samples; the view of a slice
     * starts at the slice's first image. */
    ck_assert_int_eq(bp_dataset_expand_shifts(big, &again), BP_EINVAL);
    ck_assert_ptr_null(again);
    ck_assert_int_eq(bp_dataset_slice(big, 7, 9, &part), BP_OK);
    ck_assert_int_eq(bp_dataset_gather(part, NULL, 9, x, NULL, 0), BP_OK);
    for (int j = 0; j < 9; j++)
        check_expanded_column(x + j * DIM, (7 + j) / 5, (7 + j) % 5);
    ck_assert_int_eq(bp_dataset_label(part, 0), labels5[1]);
    ck_assert_int_eq(bp_dataset_slice(ds, 2, 3, &tail), BP_OK);
    ck_assert_int_eq(bp_dataset_expand_shifts(tail, &big2), BP_OK);
    ck_assert_uint_eq(bp_dataset_count(big2), 15);
    ck_assert_int_eq(bp_dataset_gather(big2, NULL, 15, x, NULL, 0), BP_OK);
    for (int j = 0; j < 15; j++)
        check_expanded_column(x + j * DIM, 2 + j / 5, j % 5);
    ck_assert_int_eq(bp_dataset_expand_shifts(NULL, &again), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_expand_shifts(ds, NULL), BP_EINVAL);
    /* The views keep the store alive after the set they came from is freed. */
    bp_dataset_free(ds);
    bp_dataset_free(tail);
    ck_assert_int_eq(bp_dataset_gather(big2, NULL, 1, x, NULL, 0), BP_OK);
    check_expanded_column(x, 2, 0);
    bp_dataset_free(big2);
    bp_dataset_free(part);
    bp_dataset_free(big);
}
END_TEST

START_TEST(test_from_floats)
{
    enum { D = 3, M = 4 };
    const float x[D * M] = {0.5f, -1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    const int lab[M] = {0, 11, 2, 1};
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, lab, M, D, 12), BP_OK);
    ck_assert_uint_eq(bp_dataset_count(ds), M);
    ck_assert_int_eq(bp_dataset_dim(ds), D);
    ck_assert_int_eq(bp_dataset_classes(ds), 12);
    bp_dataset *view = NULL;
    ck_assert_int_eq(bp_dataset_slice(ds, 1, 3, &view), BP_OK);
    bp_dataset_free(ds);
    const size_t idx[2] = {2, 0};
    float xb[D * 2], yb[12 * 2];
    ck_assert_int_eq(bp_dataset_gather(view, idx, 2, xb, yb, 12), BP_OK);
    const float want[D * 2] = {9, 10, 11, 3, 4, 5}; /* samples 3 and 1 of the original */
    for (int i = 0; i < D * 2; i++)
        ck_assert_float_eq(xb[i], want[i]);
    ck_assert_float_eq(yb[0 * 12 + 1], 1.0f);
    ck_assert_float_eq(yb[1 * 12 + 11], 1.0f);
    ck_assert_int_eq(bp_dataset_gather(view, idx, 2, xb, yb, 11), BP_EINVAL);
    bp_dataset_free(view);

    const int bad[M] = {0, 12, 2, -1};
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, bad, M, D, 12), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "labels[1] = 12"));
    ck_assert_ptr_null(ds);
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, lab, 0, D, 12), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, lab, M, 0, 12), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, lab, M, D, 0), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_from_floats(&ds, NULL, lab, M, D, 12), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, NULL, M, D, 12), BP_EINVAL);
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, lab, SIZE_MAX / 2, D, 12), BP_EINVAL);
}
END_TEST

/* A NaN or an infinity in the input would reach the net's first GEMM and train "ok" into a
 * NaN net: refused when the set is made, naming the sample and the element. */
START_TEST(test_from_floats_nonfinite)
{
    enum { D = 3, M = 4 };
    const int lab[M] = {0, 1, 2, 1};
    static const struct {
        int at;
        float v;
        const char *needle;
    } cases[] = {
        {1 + 2 * D, NAN, "x[1] of sample 2 is nan"},
        {0, INFINITY, "x[0] of sample 0 is inf"},
        {2 + 3 * D, -INFINITY, "x[2] of sample 3 is -inf"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float x[D * M];
        for (int i = 0; i < D * M; i++)
            x[i] = 0.25f * (float)i;
        x[cases[c].at] = cases[c].v;
        bp_alloc_stats before, after;
        bp_alloc_stats_get(&before);
        bp_dataset *ds = (bp_dataset *)&ds;
        ck_assert_int_eq(bp_dataset_from_floats(&ds, x, lab, M, D, 3), BP_EINVAL);
        bp_alloc_stats_get(&after);
        ck_assert_ptr_null(ds);
        ck_assert_msg(strstr(bp_last_error(), cases[c].needle), "%s", bp_last_error());
        ck_assert_uint_eq(after.bytes_live, before.bytes_live);
    }
}
END_TEST

/* ---- real MNIST (only with BACKPROP_MNIST_DIR) ----------------------------------------- */

/* dir/name, or dir/name.gz when only the compressed file is there. */
static const char *mnist_path(const char *dir, const char *name)
{
    static char ring[4][1024];
    static int next;
    char *p = ring[next++ % 4];
    snprintf(p, sizeof ring[0], "%s/%s", dir, name);
    if (access(p, R_OK) != 0)
        snprintf(p, sizeof ring[0], "%s/%s.gz", dir, name);
    return p;
}

START_TEST(test_real_mnist)
{
    const char *dir = getenv("BACKPROP_MNIST_DIR");
    ck_assert_ptr_nonnull(dir);
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    bp_dataset *train = NULL, *test = NULL;
    ck_assert_msg(bp_dataset_load_idx(&train, mnist_path(dir, "train-images-idx3-ubyte"),
                                      mnist_path(dir, "train-labels-idx1-ubyte")) == BP_OK,
                  "%s", bp_last_error());
    bp_alloc_stats_get(&after);
    /* Bytes, not floats: 47,040,000 pixels plus 240,000 of labels. */
    ck_assert_uint_lt(after.bytes_live - before.bytes_live, 48u * 1000 * 1000);
    ck_assert_msg(bp_dataset_load_idx(&test, mnist_path(dir, "t10k-images-idx3-ubyte"),
                                      mnist_path(dir, "t10k-labels-idx1-ubyte")) == BP_OK,
                  "%s", bp_last_error());
    ck_assert_uint_eq(bp_dataset_count(train), 60000);
    ck_assert_uint_eq(bp_dataset_count(test), 10000);
    ck_assert_int_eq(bp_dataset_dim(train), 784);
    ck_assert_int_eq(bp_dataset_dim(test), 784);
    ck_assert_int_eq(bp_dataset_classes(train), 10);
    ck_assert_int_eq(bp_dataset_classes(test), 10);
    ck_assert_int_eq(bp_dataset_label(train, 0), 5); /* the well-known first labels */
    ck_assert_int_eq(bp_dataset_label(test, 0), 7);

    /* Every training sample gathers into [0,1], each class appears, and digits have ink. */
    /* Counted, then asserted once: every ck_assert is a write to Check's pipe. */
    static float x[784 * 100], y[10 * 100];
    size_t per_class[10] = {0}, out_of_range = 0, blank = 0, bad_targets = 0;
    for (size_t first = 0; first < 60000; first += 100) {
        size_t idx[100];
        for (int j = 0; j < 100; j++)
            idx[j] = first + (size_t)j;
        ck_assert_int_eq(bp_dataset_gather(train, idx, 100, x, y, 10), BP_OK);
        for (int j = 0; j < 100; j++) {
            float ink = 0;
            for (int k = 0; k < 784; k++) {
                float v = x[j * 784 + k];
                out_of_range += !(v >= 0.0f && v <= 1.0f);
                ink += v;
            }
            blank += !(ink > 1.0f);
            int label = bp_dataset_label(train, idx[j]);
            float hot = 0;
            for (int c = 0; c < 10; c++)
                hot += y[j * 10 + c];
            bad_targets += hot != 1.0f || y[j * 10 + label] != 1.0f;
            per_class[label]++;
        }
    }
    ck_assert_uint_eq(out_of_range, 0);
    ck_assert_uint_eq(blank, 0);
    ck_assert_uint_eq(bad_targets, 0);
    for (int c = 0; c < 10; c++)
        ck_assert_uint_gt(per_class[c], 5000);
    bp_dataset_free(train);
    bp_dataset_free(test);
}
END_TEST

Suite *bp_suite_idx(void)
{
    Suite *s = suite_create("idx");
    TCase *files = tcase_create("files");
    tcase_add_checked_fixture(files, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(files, 60);
    tcase_add_test(files, test_raw_loads);
    tcase_add_test(files, test_gz_loads);
    tcase_add_test(files, test_gz_large_grows);
    tcase_add_test(files, test_nonexistent);
    tcase_add_test(files, test_truncated_raw);
    tcase_add_test(files, test_lying_header);
    tcase_add_test(files, test_lying_header_gz);
    tcase_add_test(files, test_trailing_garbage);
    tcase_add_test(files, test_wrong_magic);
    tcase_add_test(files, test_count_mismatch);
    tcase_add_test(files, test_truncated_gz);
    tcase_add_test(files, test_mutations_never_crash);
    tcase_add_test(files, test_fifo_refused);
    tcase_add_test(files, test_bad_symlinks);
    tcase_add_test(files, test_gz_bomb_refused);
    tcase_add_test(files, test_labels_checked_first);
    tcase_add_test(files, test_gz_overrun_stops);
    tcase_add_test(files, test_gz_grows_with_data);
    tcase_add_test(files, test_gz_trailing_garbage);
    tcase_add_test(files, test_gz_concatenated_members);
    tcase_add_test(files, test_singular_messages);
    tcase_add_test(files, test_info_read);
    suite_add_tcase(s, files);

    TCase *api = tcase_create("dataset");
    tcase_add_checked_fixture(api, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(api, 60);
    tcase_add_test(api, test_null_arguments);
    tcase_add_test(api, test_slices_share_storage);
    tcase_add_test(api, test_gather);
    tcase_add_test(api, test_expand_shifts);
    tcase_add_test(api, test_from_floats);
    tcase_add_test(api, test_from_floats_nonfinite);
    tcase_add_test(api, test_image_shape);
    suite_add_tcase(s, api);

    /* Slow and needs data that is not in the repository: only when asked for. */
    if (getenv("BACKPROP_MNIST_DIR")) {
        TCase *mnist = tcase_create("mnist");
        tcase_set_timeout(mnist, 300);
        tcase_add_test(mnist, test_real_mnist);
        suite_add_tcase(s, mnist);
    }
    return s;
}

int main(void) { return bp_test_main(bp_suite_idx()); }
