/*
 * test_safetensors.c - the safetensors container (src/io/safetensors.c): round trips through
 * bp_st_write and both readers; files made by hand, byte by byte, with each defect the strict
 * reader checks (each refused with BP_EFORMAT and a message naming the file and the field);
 * exhaustively every byte of a small valid file replaced by every other value, and every
 * truncation, refused; the writer's argument checks; files that are not regular; a save that
 * cannot be made leaving the old file intact.
 *
 * The header CRC is recomputed here from docs/FORMAT.md's definition of the canonical text,
 * independently of the library's code, so the document and the code cannot drift apart.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "backprop.h"
#include "core/core.h"
#include "io/safetensors.h"
#include "testutil.h"

Suite *bp_suite_safetensors(void);

/* ---- fixtures -------------------------------------------------------------------------- */

static char tmp_dir[256];

static void make_tmp_dir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/bp-st-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(tmp_dir) != NULL, "mkdtemp: %s", strerror(errno));
}

/* Clear the immutable flag a test may have left on a directory (it stops rmdir too). */
static void clear_immutable(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return;
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_IMMUTABLE_FL)) {
        flags &= ~FS_IMMUTABLE_FL;
        ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
}

static void remove_tree(const char *dir)
{
    clear_immutable(dir);
    chmod(dir, 0700);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[768];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void remove_tmp_dir(void) { remove_tree(tmp_dir); }

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

static unsigned char *read_whole(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "fopen %s: %s", path, strerror(errno));
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

#define ck_assert_error_has(needle)                                                          \
    ck_assert_msg(strstr(bp_last_error(), (needle)) != NULL, "message '%s' lacks '%s'",      \
                  bp_last_error(), (needle))

static uint64_t live_bytes(void)
{
    bp_alloc_stats s;
    bp_alloc_stats_get(&s);
    return s.bytes_live;
}

/* ---- the canonical text, as docs/FORMAT.md defines it ---------------------------------- */

/* CRC-32 of the fields, each followed by a NUL. */
static uint32_t canonical_crc(const char *const *fields, int n)
{
    uLong crc = crc32(0, Z_NULL, 0);
    for (int i = 0; i < n; i++)
        crc = crc32(crc, (const Bytef *)fields[i], (uInt)strlen(fields[i]) + 1);
    return (uint32_t)crc;
}

static void hex8(char out[9], uint32_t v) { snprintf(out, 9, "%08x", (unsigned)v); }

static uint32_t bytes_crc(const void *p, size_t n)
{
    return (uint32_t)crc32(crc32(0, Z_NULL, 0), p, (uInt)n);
}

/* A file made by hand: the 8-byte little-endian length of json, json, then data. */
static unsigned char *hand(const char *json, const void *data, size_t data_len, size_t *n)
{
    size_t h = strlen(json);
    *n = 8 + h + data_len;
    unsigned char *b = malloc(*n ? *n : 1);
    ck_assert_ptr_nonnull(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, json, h);
    if (data_len)
        memcpy(b + 8 + h, data, data_len);
    return b;
}

/* Read bytes from memory and expect a refusal whose message names the file and the field. */
static void expect_refused_bytes(const unsigned char *b, size_t n, const char *needle)
{
    uint64_t before = live_bytes();
    bp_st_file *f = (bp_st_file *)1;
    bp_status st = bp_st_read_memory(&f, b, n, "hand.safetensors");
    ck_assert_msg(st == BP_EFORMAT, "status %d (%s) for a file that should fail on '%s'", st,
                  bp_last_error(), needle);
    ck_assert_ptr_null(f);
    ck_assert_error_has("hand.safetensors");
    ck_assert_error_has(needle);
    ck_assert_uint_eq(live_bytes(), before);
}

static void expect_refused(const char *json, const void *data, size_t data_len,
                           const char *needle)
{
    size_t n;
    unsigned char *b = hand(json, data, data_len, &n);
    expect_refused_bytes(b, n, needle);
    free(b);
}

/* A small file the hand-made defects start from: "a", F32 [2], 8 bytes, with right CRCs.
 * Returns the JSON in buf; the data is two_floats. */
static const float two_floats[2] = {1.5f, -2.0f};

static const char *valid_hand_json(char *buf, size_t size)
{
    char crc_a[9], crc_h[9];
    hex8(crc_a, bytes_crc(two_floats, sizeof two_floats));
    const char *fields[] = {"tensor", "a", "F32", "1", "2", "0", "8",
                            "meta", "crc32.a", crc_a, "meta", "note", "x"};
    hex8(crc_h, canonical_crc(fields, 13));
    snprintf(buf, size,
             "{\"__metadata__\":{\"note\":\"x\",\"crc32.a\":\"%s\",\"crc32.header\":\"%s\"},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             crc_a, crc_h);
    return buf;
}

/* ---- round trips ----------------------------------------------------------------------- */

/* Tensors of both dtypes, a scalar, an empty tensor, UTF-8 names and metadata with characters
 * JSON must escape: written, read back from the file and from memory, byte for byte. */
START_TEST(test_round_trip)
{
    int64_t counters[3] = {7, -1, INT64_C(1) << 40};
    float w[6], b[3], scalar = 0.25f;
    uint64_t state = 99;
    bp_test_fill(w, 6, -1, 1, &state);
    bp_test_fill(b, 3, -1, 1, &state);
    const bp_st_tensor in[] = {
        {.name = "steps", .dtype = BP_ST_I64, .ndim = 1, .shape = {3}, .data = counters,
         .bytes = sizeof counters},
        {.name = "layers.0.weight", .dtype = BP_ST_F32, .ndim = 2, .shape = {2, 3}, .data = w,
         .bytes = sizeof w},
        {.name = "empty", .dtype = BP_ST_F32, .ndim = 2, .shape = {0, 5}, .data = NULL,
         .bytes = 0},
        {.name = "größe.bias", .dtype = BP_ST_F32, .ndim = 1, .shape = {3}, .data = b,
         .bytes = sizeof b},
        {.name = "scale", .dtype = BP_ST_F32, .ndim = 0, .data = &scalar, .bytes = 4},
    };
    const int n = 5;
    const bp_st_meta meta[] = {
        {"format", "backprop"},
        {"名前", "δοκιμή ✓ 😀"},
        {"quoted", "a \"b\"\n\tc\\d / \x01 end"},
        {"empty", ""},
    };
    const int n_meta = 4;
    const char *path = tmp_path("round.safetensors");
    ck_assert_int_eq(bp_st_write(path, in, n, meta, n_meta), BP_OK);

    /* The layout: length, header padded with spaces to a multiple of 8, the data. */
    size_t size;
    unsigned char *bytes = read_whole(path, &size);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | bytes[i];
    ck_assert_uint_eq(h % 8, 0);
    ck_assert_uint_eq(8 + h + sizeof counters + sizeof w + sizeof b + 4, size);
    ck_assert_int_eq(bytes[8], '{');
    size_t end = 8 + (size_t)h;
    while (bytes[end - 1] == ' ')
        end--;
    ck_assert_int_eq(bytes[end - 1], '}');
    ck_assert_uint_lt(8 + h - end, 8);
    ck_assert_mem_eq(bytes + 8 + h, counters, sizeof counters);

    uint64_t before = live_bytes();
    for (int pass = 0; pass < 2; pass++) {
        bp_st_file *f = NULL;
        if (pass == 0)
            ck_assert_int_eq(bp_st_read(&f, path), BP_OK);
        else
            ck_assert_int_eq(bp_st_read_memory(&f, bytes, size, "mem"), BP_OK);
        ck_assert_str_eq(bp_st_name(f), pass == 0 ? path : "mem");
        ck_assert_int_eq(bp_st_count(f), n);
        /* Data order is the writing order here: no two empty tensors share an offset. */
        for (int i = 0; i < n; i++) {
            const bp_st_tensor *t = bp_st_at(f, i);
            ck_assert_str_eq(t->name, in[i].name);
            ck_assert_ptr_eq(bp_st_find(f, in[i].name), t);
            ck_assert_int_eq(t->dtype, in[i].dtype);
            ck_assert_int_eq(t->ndim, in[i].ndim);
            for (int d = 0; d < t->ndim; d++)
                ck_assert_int_eq(t->shape[d], in[i].shape[d]);
            ck_assert_uint_eq(t->bytes, in[i].bytes);
            ck_assert_ptr_nonnull(t->data);
            ck_assert_uint_eq((uintptr_t)t->data % (t->dtype == BP_ST_I64 ? 8 : 4), 0);
            if (t->bytes)
                ck_assert_mem_eq(t->data, in[i].data, t->bytes);
        }
        ck_assert_int_eq(((const int64_t *)bp_st_find(f, "steps")->data)[2],
                         INT64_C(1) << 40);
        ck_assert_ptr_null(bp_st_at(f, n));
        ck_assert_ptr_null(bp_st_at(f, -1));
        ck_assert_ptr_null(bp_st_find(f, "Steps"));
        ck_assert_ptr_null(bp_st_find(f, "step"));
        /* The caller's keys in their order, then one CRC per tensor and the header's. */
        ck_assert_int_eq(bp_st_meta_count(f), n_meta + n + 1);
        for (int i = 0; i < n_meta; i++) {
            ck_assert_str_eq(bp_st_meta_at(f, i)->key, meta[i].key);
            ck_assert_str_eq(bp_st_meta_at(f, i)->value, meta[i].value);
            ck_assert_str_eq(bp_st_meta_get(f, meta[i].key), meta[i].value);
        }
        for (int i = 0; i < n; i++) {
            char key[64], want[9];
            snprintf(key, sizeof key, "crc32.%s", in[i].name);
            hex8(want, bytes_crc(in[i].data, in[i].bytes));
            ck_assert_str_eq(bp_st_meta_get(f, key), want);
        }
        ck_assert_uint_eq(strlen(bp_st_meta_get(f, "crc32.header")), 8);
        ck_assert_ptr_null(bp_st_meta_get(f, "Format"));
        ck_assert_ptr_null(bp_st_meta_at(f, n_meta + n + 1));
        bp_st_free(f);
        ck_assert_uint_eq(live_bytes(), before);
    }
    free(bytes);
}
END_TEST

/* The writer's header CRC is the CRC of the canonical text of docs/FORMAT.md, recomputed
 * here from the fields: tensors in data order, then the metadata sorted by key bytes. */
START_TEST(test_header_crc_is_documented_text)
{
    int64_t i64[2] = {1, 2};
    float f32[3] = {1, 2, 3};
    const bp_st_tensor in[] = {
        {.name = "z", .dtype = BP_ST_I64, .ndim = 1, .shape = {2}, .data = i64, .bytes = 16},
        {.name = "e", .dtype = BP_ST_F32, .ndim = 2, .shape = {3, 0}, .bytes = 0},
        {.name = "a", .dtype = BP_ST_F32, .ndim = 2, .shape = {1, 3}, .data = f32, .bytes = 12},
    };
    const bp_st_meta meta[] = {{"b", "2"}, {"A", "1"}, {"é", "3"}};
    const char *path = tmp_path("crc.safetensors");
    ck_assert_int_eq(bp_st_write(path, in, 3, meta, 3), BP_OK);
    char cz[9], ce[9], ca[9], want[9];
    hex8(cz, bytes_crc(i64, 16));
    hex8(ce, bytes_crc("", 0));
    hex8(ca, bytes_crc(f32, 12));
    ck_assert_str_eq(ce, "00000000");
    /* Keys sorted by bytes: "A" < "b" < "crc32.a" < "crc32.e" < "crc32.z" < "é". */
    const char *fields[] = {
        "tensor", "z", "I64", "1", "2", "0", "16",
        "tensor", "e", "F32", "2", "3", "0", "16", "16",
        "tensor", "a", "F32", "2", "1", "3", "16", "28",
        "meta", "A", "1", "meta", "b", "2",
        "meta", "crc32.a", ca, "meta", "crc32.e", ce, "meta", "crc32.z", cz,
        "meta", "é", "3",
    };
    hex8(want, canonical_crc(fields, (int)(sizeof fields / sizeof *fields)));
    bp_st_file *f;
    ck_assert_int_eq(bp_st_read(&f, path), BP_OK);
    ck_assert_str_eq(bp_st_meta_get(f, "crc32.header"), want);
    bp_st_free(f);
}
END_TEST

/* A file made by hand by the rules of docs/FORMAT.md is accepted: the document suffices to
 * write one, with the members in any order and without padding. */
START_TEST(test_hand_made_valid)
{
    char json[512];
    size_t n;
    unsigned char *b = hand(valid_hand_json(json, sizeof json), two_floats, 8, &n);
    bp_st_file *f = NULL;
    ck_assert_msg(bp_st_read_memory(&f, b, n, "hand") == BP_OK, "%s", bp_last_error());
    ck_assert_int_eq(bp_st_count(f), 1);
    ck_assert_mem_eq(bp_st_at(f, 0)->data, two_floats, 8);
    ck_assert_str_eq(bp_st_meta_get(f, "note"), "x");
    bp_st_free(f);
    free(b);

    /* JSON's own whitespace between tokens is fine; so is space padding after the object. */
    char spaced[600];
    char crc_a[9], crc_h[9];
    memcpy(crc_a, strstr(json, "crc32.a\":\"") + 10, 8);
    crc_a[8] = 0;
    memcpy(crc_h, strstr(json, "crc32.header\":\"") + 15, 8);
    crc_h[8] = 0;
    snprintf(spaced, sizeof spaced,
             "{\n\t\"a\" : {\"shape\": [ 2 ], \"data_offsets\": [0, 8], \"dtype\": \"F32\"},\r\n"
             " \"__metadata__\": {\"crc32.header\": \"%s\", \"note\": \"\\u0078\", "
             "\"crc32.a\": \"%s\"}}      ",
             crc_h, crc_a);
    b = hand(spaced, two_floats, 8, &n);
    ck_assert_msg(bp_st_read_memory(&f, b, n, "hand") == BP_OK, "%s", bp_last_error());
    ck_assert_str_eq(bp_st_meta_get(f, "note"), "x");
    bp_st_free(f);
    free(b);
}
END_TEST

/* No tensors at all, or no metadata from the caller: still a file with its header CRC. */
START_TEST(test_empty_files)
{
    const char *path = tmp_path("empty.safetensors");
    ck_assert_int_eq(bp_st_write(path, NULL, 0, NULL, 0), BP_OK);
    bp_st_file *f;
    ck_assert_int_eq(bp_st_read(&f, path), BP_OK);
    ck_assert_int_eq(bp_st_count(f), 0);
    ck_assert_int_eq(bp_st_meta_count(f), 1);
    const char *fields[] = {"dummy"};
    char want[9];
    hex8(want, canonical_crc(fields, 0));
    ck_assert_str_eq(bp_st_meta_get(f, "crc32.header"), want);
    bp_st_free(f);

    /* Two empty tensors at one offset come back by name (docs/FORMAT.md's data order). */
    const bp_st_tensor two[] = {
        {.name = "y", .dtype = BP_ST_F32, .ndim = 1, .shape = {0}},
        {.name = "x", .dtype = BP_ST_I64, .ndim = 1, .shape = {0}},
    };
    ck_assert_int_eq(bp_st_write(path, two, 2, NULL, 0), BP_OK);
    ck_assert_int_eq(bp_st_read(&f, path), BP_OK);
    ck_assert_int_eq(bp_st_count(f), 2);
    ck_assert_str_eq(bp_st_at(f, 0)->name, "x");
    ck_assert_str_eq(bp_st_at(f, 1)->name, "y");
    ck_assert_uint_eq(bp_st_at(f, 0)->bytes, 0);
    bp_st_free(f);
}
END_TEST

/* The format does not align offsets: an I64 tensor after an odd number of F32 elements sits at
 * 4 mod 8 in the file. Written in that order, it still reads back into a view aligned for
 * int64_t (dereferenced as one here, which UBSan would flag if it were not). */
START_TEST(test_misaligned_offsets)
{
    float f3[3] = {1, 2, 3};
    int64_t k[2] = {-5, INT64_C(1) << 50};
    float f1[1] = {4};
    const bp_st_tensor in[] = {
        {.name = "f3", .dtype = BP_ST_F32, .ndim = 1, .shape = {3}, .data = f3, .bytes = 12},
        {.name = "k", .dtype = BP_ST_I64, .ndim = 1, .shape = {2}, .data = k, .bytes = 16},
        {.name = "f1", .dtype = BP_ST_F32, .ndim = 0, .data = f1, .bytes = 4},
    };
    const char *path = tmp_path("misaligned.safetensors");
    ck_assert_int_eq(bp_st_write(path, in, 3, NULL, 0), BP_OK);
    size_t n;
    unsigned char *bytes = read_whole(path, &n);
    for (int pass = 0; pass < 2; pass++) {
        bp_st_file *f;
        if (pass == 0)
            ck_assert_int_eq(bp_st_read(&f, path), BP_OK);
        else
            ck_assert_int_eq(bp_st_read_memory(&f, bytes, n, "m"), BP_OK);
        const bp_st_tensor *t = bp_st_find(f, "k");
        ck_assert_ptr_eq(t, bp_st_at(f, 1));
        ck_assert_uint_eq((uintptr_t)t->data % 8, 0);
        const int64_t *v = t->data;
        ck_assert_int_eq(v[0], -5);
        ck_assert_int_eq(v[1], INT64_C(1) << 50);
        ck_assert_mem_eq(bp_st_find(f, "f3")->data, f3, 12);
        ck_assert_mem_eq(bp_st_find(f, "f1")->data, f1, 4);
        bp_st_free(f);
    }
    free(bytes);
}
END_TEST

/* ---- the writer's arguments ------------------------------------------------------------ */

START_TEST(test_write_arguments)
{
    float x[4] = {0};
    int64_t k[1] = {0};
    const char *path = tmp_path("args.safetensors");
    const bp_st_tensor ok = {.name = "x", .dtype = BP_ST_F32, .ndim = 1, .shape = {4},
                             .data = x, .bytes = 16};
    struct {
        bp_st_tensor t[2];
        int n;
        bp_st_meta m[2];
        int n_meta;
        const char *needle;
    } cases[] = {
        {{ok, ok}, 2, {{0}}, 0, "two tensors are named 'x'"},
        {{{.name = "", .dtype = BP_ST_F32, .ndim = 0, .data = x, .bytes = 4}}, 1, {{0}}, 0,
         "an empty name"},
        {{{.name = NULL, .dtype = BP_ST_F32, .ndim = 0, .data = x, .bytes = 4}}, 1, {{0}}, 0,
         "a NULL name"},
        {{{.name = "__metadata__", .dtype = BP_ST_F32, .ndim = 0, .data = x, .bytes = 4}}, 1,
         {{0}}, 0, "the metadata's key"},
        {{{.name = "header", .dtype = BP_ST_F32, .ndim = 0, .data = x, .bytes = 4}}, 1, {{0}}, 0,
         "crc32.header"},
        {{{.name = "x", .dtype = BP_ST_DTYPE_COUNT, .ndim = 0, .data = x, .bytes = 4}}, 1,
         {{0}}, 0, "unknown dtype"},
        {{{.name = "x", .dtype = BP_ST_F32, .ndim = 5, .shape = {1, 1, 1, 1}, .data = x,
           .bytes = 4}}, 1, {{0}}, 0, "ndim 5"},
        {{{.name = "x", .dtype = BP_ST_F32, .ndim = -1, .data = x, .bytes = 4}}, 1, {{0}}, 0,
         "ndim -1"},
        {{{.name = "x", .dtype = BP_ST_F32, .ndim = 1, .shape = {-4}, .data = x, .bytes = 16}},
         1, {{0}}, 0, "shape[0] = -4"},
        {{{.name = "x", .dtype = BP_ST_F32, .ndim = 1, .shape = {4}, .data = x, .bytes = 12}},
         1, {{0}}, 0, "needs 16 bytes, given 12"},
        {{{.name = "x", .dtype = BP_ST_F32, .ndim = 3,
           .shape = {INT64_C(1) << 32, INT64_C(1) << 32, 16}, .data = x, .bytes = 0}},
         1, {{0}}, 0, "overflows"},
        {{{.name = "x", .dtype = BP_ST_F32, .ndim = 1, .shape = {4}, .data = NULL,
           .bytes = 16}}, 1, {{0}}, 0, "data is NULL"},
        {{{.name = "x\xff", .dtype = BP_ST_F32, .ndim = 0, .data = x, .bytes = 4}}, 1, {{0}}, 0,
         "not UTF-8"},
        {{ok}, 1, {{"crc32.x", "00000000"}}, 1, "the writer's own"},
        {{ok}, 1, {{"k", "1"}, {"k", "2"}}, 2, "'k' is given twice"},
        {{ok}, 1, {{"k", NULL}}, 1, "NULL value"},
        {{ok}, 1, {{NULL, "v"}}, 1, "NULL key"},
        {{ok}, 1, {{"k", "\xc0\x80"}}, 1, "metadata value"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        ck_assert_msg(bp_st_write(path, cases[c].t, cases[c].n, cases[c].m, cases[c].n_meta) ==
                          BP_EINVAL, "case %zu (%s): %s", c, cases[c].needle, bp_last_error());
        ck_assert_error_has(cases[c].needle);
        ck_assert_error_has(path);
        ck_assert_int_eq(access(path, F_OK), -1);
    }
    ck_assert_int_eq(bp_st_write(NULL, &ok, 1, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(bp_st_write(path, NULL, 1, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(bp_st_write(path, &ok, -1, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(access(path, F_OK), -1);
    const bp_st_tensor good[] = {
        {.name = "k", .dtype = BP_ST_I64, .ndim = 1, .shape = {1}, .data = k, .bytes = 8},
        {.name = "f", .dtype = BP_ST_F32, .ndim = 1, .shape = {1}, .data = x, .bytes = 4},
    };
    ck_assert_int_eq(bp_st_write(path, good, 2, NULL, 0), BP_OK);
    bp_st_file *f = NULL;
    ck_assert_int_eq(bp_st_read_memory(NULL, "", 0, "x"), BP_EINVAL);
    ck_assert_int_eq(bp_st_read_memory(&f, NULL, 5, "x"), BP_EINVAL);
    ck_assert_int_eq(bp_st_read(&f, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_st_read(NULL, path), BP_EINVAL);
    /* The getters take NULL. */
    ck_assert_int_eq(bp_st_count(NULL), 0);
    ck_assert_ptr_null(bp_st_at(NULL, 0));
    ck_assert_ptr_null(bp_st_find(NULL, "k"));
    ck_assert_ptr_null(bp_st_meta_get(NULL, "k"));
    ck_assert_int_eq(bp_st_meta_count(NULL), 0);
    ck_assert_ptr_null(bp_st_meta_at(NULL, 0));
    ck_assert_ptr_null(bp_st_name(NULL));
    bp_st_free(NULL);
}
END_TEST

/* ---- files made by hand, each with one defect ------------------------------------------ */

/* The metadata the defects below carry so that they fail where meant, not for a missing key. */
#define MD "\"__metadata__\":{\"crc32.a\":\"00000000\",\"crc32.header\":\"00000000\"}"
#define MD2 "\"__metadata__\":{\"crc32.a\":\"00000000\",\"crc32.b\":\"00000000\"," \
            "\"crc32.header\":\"00000000\"}"
#define A8 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static const unsigned char zeros[64];

START_TEST(test_length_prefix)
{
    /* Shorter than the length itself. */
    for (size_t n = 0; n < 8; n++)
        expect_refused_bytes(zeros, n, "less than the 8-byte header length");
    /* A huge length is refused before anything is allocated for it. */
    unsigned char b[16] = {0};
    b[5] = 1; /* 2^40 */
    expect_refused_bytes(b, sizeof b, "header length 1099511627776 is above the cap");
    b[5] = 0;
    b[3] = 0x05; b[2] = 0xf5; b[1] = 0xe1; b[0] = 0x01; /* 100,000,001 */
    expect_refused_bytes(b, sizeof b, "header length 100000001 is above the cap");
    /* Within the cap but beyond the file. */
    memset(b, 0, sizeof b);
    b[0] = 9;
    expect_refused_bytes(b, sizeof b, "header length 9 runs past the end of the file (8 bytes");
    /* Zero: no JSON at all. */
    memset(b, 0, 8);
    expect_refused_bytes(b, 8, "does not begin with '{'");
}
END_TEST

START_TEST(test_not_one_object)
{
    expect_refused("[1,2]", NULL, 0, "does not begin with '{'");
    expect_refused("\"a\"", NULL, 0, "does not begin with '{'");
    expect_refused(" {}", NULL, 0, "does not begin with '{'");
    expect_refused("\xef\xbb\xbf{}", NULL, 0, "does not begin with '{'"); /* a BOM */
    expect_refused("{\"a\":", NULL, 0, "not valid JSON");
    expect_refused("{\"a\":1,}", NULL, 0, "not valid JSON");
    expect_refused("{\"a\":tru}", NULL, 0, "not valid JSON");
    /* Trailing garbage after the object: only spaces may follow it. */
    char needle[64];
    snprintf(needle, sizeof needle, "header byte %zu (0x78) follows the JSON",
             strlen("{" MD "," A8 "}"));
    expect_refused("{" MD "," A8 "}x", zeros, 8, needle);
    expect_refused("{" MD "," A8 "}{}", zeros, 8, "follows the JSON object");
    expect_refused("{" MD "," A8 "}  \n", zeros, 8, "(0x0a) follows the JSON object");
    expect_refused("{" MD "," A8 "} \t", zeros, 8, "(0x09) follows the JSON object");
    char nul_pad[200];
    size_t n;
    snprintf(nul_pad, sizeof nul_pad, "{" MD "," A8 "}  ");
    unsigned char *b = hand(nul_pad, zeros, 8, &n);
    b[8 + strlen(nul_pad) - 1] = 0;
    expect_refused_bytes(b, n, "(0x00) follows the JSON object");
    free(b);
}
END_TEST

/* What cJSON lets through and the byte-level pass refuses. */
START_TEST(test_lexical)
{
    /* A NUL in a name would cut it short in C. cJSON also reads a malformed \u as a NUL. */
    expect_refused("{" MD ",\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   zeros, 8, "\\u0000 (a NUL) in a string");
    expect_refused("{" MD ",\"a\\u00zzb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   zeros, 8, "a \\u escape without four hex digits");
    /* An unknown escape letter cJSON refuses itself. */
    expect_refused("{" MD ",\"a\\qb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   zeros, 8, "not valid JSON");
    /* Raw control bytes: JSON escapes them in strings and allows only four kinds of
     * whitespace between tokens (cJSON takes any byte up to 0x20). */
    expect_refused("{" MD ",\"a\x01\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   zeros, 8, "control byte 0x01 inside a string");
    expect_refused("{" MD ",\x01" A8 "}", zeros, 8, "control byte 0x01 outside a string");
    expect_refused("{" MD ",\x0b" A8 "}", zeros, 8, "control byte 0x0b outside a string");
    /* Invalid UTF-8: a lone continuation byte, an overlong form, a surrogate. */
    expect_refused("{\"__metadata__\":{\"n\":\"\x80\"}}", NULL, 0, "(0x80) is not UTF-8");
    expect_refused("{\"__metadata__\":{\"n\":\"\xc1\xbf\"}}", NULL, 0, "(0xc1) is not UTF-8");
    expect_refused("{\"__metadata__\":{\"n\":\"\xed\xa0\x80\"}}", NULL, 0,
                   "(0xed) is not UTF-8");
    expect_refused("{\"__metadata__\":{\"n\":\"\xf4\x90\x80\x80\"}}", NULL, 0,
                   "(0xf4) is not UTF-8");
    /* Integers spelled otherwise read as the same double, but are not the format's integers. */
    static const char *const spellings[] = {"2.0", "2e0", "02", "0.2e1", "2.00000000000000001"};
    for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++) {
        char json[300];
        snprintf(json, sizeof json,
                 "{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[0,8]}}",
                 spellings[i]);
        char needle[64];
        snprintf(needle, sizeof needle, "the number '%s' is not written as a plain integer",
                 spellings[i]);
        expect_refused(json, zeros, 8, needle);
    }
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-0,8]}}",
                   zeros, 8, "the number '-0'");
}
END_TEST

START_TEST(test_duplicate_keys)
{
    expect_refused("{" MD "," A8 "," A8 "}", zeros, 8, "header: duplicate key 'a'");
    expect_refused("{" MD "," MD "," A8 "}", zeros, 8, "header: duplicate key '__metadata__'");
    expect_refused("{\"__metadata__\":{\"k\":\"1\",\"crc32.a\":\"00000000\",\"k\":\"2\"}," A8 "}",
                   zeros, 8, "__metadata__: duplicate key 'k'");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
                   "\"data_offsets\":[0,8]}}", zeros, 8, "tensor 'a': duplicate key 'dtype'");
    /* cJSON's own lookup ignores case; the reader does not: "A" and "a" are two tensors. */
    expect_refused("{" MD "," A8 ",\"A\":{\"dtype\":\"F32\",\"shape\":[2],"
                   "\"data_offsets\":[0,8]}}", zeros, 8, "overlap");
}
END_TEST

START_TEST(test_metadata_shape)
{
    expect_refused("{\"__metadata__\":[]," A8 "}", zeros, 8, "__metadata__ is not an object");
    expect_refused("{\"__metadata__\":{\"k\":1}," A8 "}", zeros, 8,
                   "__metadata__: 'k' is not a string");
    expect_refused("{\"__metadata__\":{\"k\":null}," A8 "}", zeros, 8,
                   "__metadata__: 'k' is not a string");
    expect_refused("{\"__metadata__\":{\"k\":{}}," A8 "}", zeros, 8,
                   "__metadata__: 'k' is not a string");
}
END_TEST

START_TEST(test_tensor_fields)
{
    expect_refused("{" MD ",\"a\":[]}", NULL, 0, "tensor 'a' is not an object");
    expect_refused("{" MD ",\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8,
                   "tensor 'a' has no dtype");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", zeros, 8,
                   "tensor 'a' has no shape");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", zeros, 8,
                   "tensor 'a' has no data_offsets");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
                   "\"extra\":1}}", zeros, 8, "tensor 'a': unknown field 'extra'");
    expect_refused("{" MD ",\"a\":{\"Dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   zeros, 8, "tensor 'a': unknown field 'Dtype'");
    expect_refused("{" MD ",\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   zeros, 8, "a tensor has an empty name");
    expect_refused("{" MD ",\"header\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   zeros, 8, "a tensor is named 'header'");
    /* Dtypes: only the two we write, spelled exactly. */
    static const char *const wrong[] = {"F16", "f32", "F32 ", "I32", "BF16", "F64", ""};
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        char json[300], needle[80];
        snprintf(json, sizeof json,
                 "{" MD ",\"a\":{\"dtype\":\"%s\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                 wrong[i]);
        snprintf(needle, sizeof needle, "tensor 'a': dtype '%s' is not one this reader takes",
                 wrong[i]);
        expect_refused(json, zeros, 8, needle);
    }
    expect_refused("{" MD ",\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8,
                   "tensor 'a': dtype is not a string");
    /* Shapes. */
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}",
                   zeros, 8, "tensor 'a': shape is not an array");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],"
                   "\"data_offsets\":[0,8]}}", zeros, 8, "shape has 5 dimensions, more than 4");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}",
                   zeros, 8, "tensor 'a': shape[1] = -1 is negative");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}",
                   zeros, 8, "tensor 'a': shape[0] = 2.5 is not an integer");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}",
                   zeros, 8, "tensor 'a': shape[0] is not a number");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992],"
                   "\"data_offsets\":[0,8]}}", zeros, 8, "shape[0] = 9007199254740992 is above");
    /* 2^53 + 1 reads as the double 2^53: refused as well, not rounded to a wrong integer. */
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740993],"
                   "\"data_offsets\":[0,8]}}", zeros, 8, "is above 2^53-1");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[1e400],"
                   "\"data_offsets\":[0,8]}}", zeros, 8, "shape[0] = inf is above 2^53-1");
    /* Each entry fits, the product does not: 2^32 * 2^32 * 16 * 4 bytes. */
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                   "\"data_offsets\":[0,8]}}", zeros, 8,
                   "tensor 'a': shape [4294967296, 4294967296, 16] of F32 overflows");
    /* Just inside 64 bits of elements, outside of bytes. */
    expect_refused("{" MD ",\"a\":{\"dtype\":\"I64\",\"shape\":[4294967296,536870912],"
                   "\"data_offsets\":[0,8]}}", zeros, 8, "overflows 64 bits of bytes");
    /* Offsets. */
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}",
                   zeros, 8, "data_offsets is not an array of two numbers");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}",
                   zeros, 8, "data_offsets is not an array of two numbers");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}}",
                   zeros, 8, "data_offsets[1] = -8 is negative");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}",
                   zeros, 8, "data_offsets[1] is not a number");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}",
                   zeros, 8, "data_offsets [8, 0] end before they begin");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[10,784],"
                   "\"data_offsets\":[0,31356]}}", zeros, 8,
                   "tensor 'a': shape [10, 784] needs 31360 bytes but data_offsets span 31356");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   zeros, 8, "shape [2] needs 16 bytes but data_offsets span 8");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,8]}}",
                   zeros, 8, "shape [] needs 4 bytes but data_offsets span 8");
}
END_TEST

START_TEST(test_layout)
{
    /* Overlap, gap, a first tensor not at 0, an empty tensor inside another. */
    expect_refused("{" MD2 "," A8 ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
                   "\"data_offsets\":[4,12]}}", zeros, 12,
                   "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]");
    expect_refused("{" MD2 "," A8 ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
                   "\"data_offsets\":[12,20]}}", zeros, 20,
                   "tensor 'b': data_offsets begin at 12, leaving a gap of 4 bytes after tensor "
                   "'a'");
    expect_refused("{" MD ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                   zeros, 16, "tensor 'a': data_offsets begin at 8, leaving a gap");
    expect_refused("{" MD2 "," A8 ",\"b\":{\"dtype\":\"F32\",\"shape\":[0],"
                   "\"data_offsets\":[4,4]}}", zeros, 8, "tensor 'b': data_offsets [4, 4] "
                   "overlap tensor 'a'");
    /* The same range twice. */
    expect_refused("{" MD2 "," A8 ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
                   "\"data_offsets\":[0,8]}}", zeros, 8, "overlap");
    /* Bytes after the last tensor, and a data section shorter than the offsets. */
    expect_refused("{" MD "," A8 "}", zeros, 9, "1 bytes of trailing data");
    expect_refused("{" MD "," A8 "}", zeros, 16, "8 bytes of trailing data");
    expect_refused("{" MD "," A8 "}", zeros, 7, "truncated: the tensors' data_offsets end at 8 "
                   "but the data section holds 7 bytes");
    expect_refused("{" MD "," A8 "}", zeros, 0, "truncated");
    expect_refused("{}", zeros, 1, "1 bytes of trailing data");
}
END_TEST

START_TEST(test_crcs)
{
    char json[512], bad[600];
    valid_hand_json(json, sizeof json);
    /* Each change below is the only one to an otherwise valid file (test_hand_made_valid). */
    struct {
        const char *from, *to, *needle;
    } cases[] = {
        /* The data's CRC: a wrong value, missing, upper case, too short. */
        {"\"crc32.a\":\"", "\"crc32.a\":\"1", "'crc32.a' is '1"},
        {"\"crc32.a\":", "\"crc32.b\":", "'crc32.b' names no tensor"},
        {"\"crc32.a\":", "\"crc32_a\":", "tensor 'a' has no crc32.a in __metadata__"},
        {"\"crc32.header\":", "\"crc32.Header\":", "'crc32.Header' names no tensor"},
        {"\"crc32.header\":", "\"crc32-header\":", "__metadata__ has no crc32.header"},
        /* The header's contents changed under its CRC. */
        {"\"note\":\"x\"", "\"note\":\"y\"", "crc32.header is"},
        {"\"note\":\"x\"", "\"note2\":\"x\"", "(a damaged header)"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *at = strstr(json, cases[c].from);
        ck_assert_ptr_nonnull(at);
        snprintf(bad, sizeof bad, "%.*s%s%s", (int)(at - json), json, cases[c].to,
                 at + strlen(cases[c].from));
        expect_refused(bad, two_floats, 8, cases[c].needle);
    }
    /* Upper-case hex and a CRC of the wrong data. */
    char upper[600];
    snprintf(upper, sizeof upper, "%s", json);
    char *crc = strstr(upper, "crc32.a\":\"") + 10;
    int changed = 0;
    for (int i = 0; i < 8; i++)
        if (crc[i] >= 'a' && crc[i] <= 'f') {
            crc[i] = (char)(crc[i] - 'a' + 'A');
            changed = 1;
        }
    if (!changed) /* all digits: make it wrong another way */
        crc[0] = 'G';
    expect_refused(upper, two_floats, 8, "not 8 lower-case hex digits");
    const float other[2] = {1.5f, -2.5f};
    expect_refused(json, other, 8, "tensor 'a': its bytes have CRC-32");
    /* A file without any CRC keys, as another writer would make it. */
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   two_floats, 8, "tensor 'a' has no crc32.a");
    expect_refused("{}", NULL, 0, "__metadata__ has no crc32.header");
}
END_TEST

/* ---- exhaustive damage of a small valid file ------------------------------------------- */

static unsigned char *small_file(size_t *n)
{
    int64_t steps[1] = {12345};
    float w[3] = {0.5f, -1.25f, 3.0f};
    const bp_st_tensor t[] = {
        {.name = "steps", .dtype = BP_ST_I64, .ndim = 1, .shape = {1}, .data = steps,
         .bytes = 8},
        {.name = "w", .dtype = BP_ST_F32, .ndim = 2, .shape = {1, 3}, .data = w, .bytes = 12},
        {.name = "e", .dtype = BP_ST_F32, .ndim = 1, .shape = {0}},
    };
    const bp_st_meta m[] = {{"k", "é\n\"q\"\x01"}};
    const char *path = tmp_path("small.safetensors");
    ck_assert_int_eq(bp_st_write(path, t, 3, m, 1), BP_OK);
    return read_whole(path, n);
}

/* Every byte replaced by each of the 255 other values: each such file is refused. The CRCs
 * catch changes in the data and in the header's strings and numbers; the rest breaks the JSON,
 * a lexical rule, a field check or the exact length. */
START_TEST(test_every_byte_change_refused)
{
    size_t n;
    unsigned char *good = small_file(&n);
    bp_st_file *f = NULL;
    ck_assert_int_eq(bp_st_read_memory(&f, good, n, "small"), BP_OK);
    bp_st_free(f);
    unsigned char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    uint64_t before = live_bytes();
    long accepted = 0, other_status = 0, tried = 0;
    char first[200] = "";
    for (size_t i = 0; i < n; i++)
        for (int v = 0; v < 256; v++) {
            if (v == good[i])
                continue;
            memcpy(b, good, n);
            b[i] = (unsigned char)v;
            f = NULL;
            bp_status st = bp_st_read_memory(&f, b, n, "small");
            tried++;
            if (st == BP_OK) {
                if (!accepted++)
                    snprintf(first, sizeof first, "byte %zu set to 0x%02x accepted", i, v);
                bp_st_free(f);
            } else if (st != BP_EFORMAT) {
                if (!other_status++)
                    snprintf(first, sizeof first, "byte %zu set to 0x%02x: status %d: %s", i, v,
                             st, bp_last_error());
            }
        }
    ck_assert_msg(accepted == 0 && other_status == 0, "%ld of %ld changes accepted, %ld gave "
                  "another status; first: %s", accepted, tried, other_status, first);
    ck_assert_int_eq(tried, (long)n * 255);
    ck_assert_uint_eq(live_bytes(), before);
    free(b);
    free(good);
}
END_TEST

/* Every truncation, through memory and through a file. */
START_TEST(test_every_truncation_refused)
{
    size_t n;
    unsigned char *good = small_file(&n);
    const char *path = tmp_path("cut.safetensors");
    uint64_t before = live_bytes();
    for (size_t len = 0; len < n; len++) {
        bp_st_file *f = NULL;
        ck_assert_msg(bp_st_read_memory(&f, good, len, "small") == BP_EFORMAT,
                      "length %zu of %zu: %s", len, n, bp_last_error());
        ck_assert_ptr_null(f);
        write_raw(path, good, len);
        ck_assert_msg(bp_st_read(&f, path) == BP_EFORMAT, "length %zu of %zu: %s", len, n,
                      bp_last_error());
        ck_assert_error_has(path);
    }
    ck_assert_uint_eq(live_bytes(), before);
    free(good);
}
END_TEST

/* ---- files that are not regular, and saves that cannot be made ------------------------- */

START_TEST(test_not_regular_files)
{
    bp_st_file *f = NULL;
    const char *missing = tmp_path("missing.safetensors");
    ck_assert_int_eq(bp_st_read(&f, missing), BP_EIO);
    ck_assert_error_has(missing);
    ck_assert_error_has("cannot open");
    const char *fifo = tmp_path("fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(10); /* opening a FIFO must not wait for a writer */
    ck_assert_int_eq(bp_st_read(&f, fifo), BP_EIO);
    alarm(0);
    ck_assert_error_has("is a FIFO, not a regular file");
    ck_assert_int_eq(bp_st_read(&f, tmp_dir), BP_EIO);
    ck_assert_error_has("is a directory");
    ck_assert_int_eq(bp_st_read(&f, "/dev/null"), BP_EIO);
    ck_assert_error_has("is a character device");
    const char *link = tmp_path("dangling");
    ck_assert_int_eq(symlink(tmp_path("nowhere"), link), 0);
    ck_assert_int_eq(bp_st_read(&f, link), BP_EIO);
    ck_assert_error_has("dangling symbolic link");
    ck_assert_ptr_null(f);
}
END_TEST

static void write_one(const char *path, float value, bp_status want)
{
    float x[2] = {value, value};
    const bp_st_tensor t = {.name = "x", .dtype = BP_ST_F32, .ndim = 1, .shape = {2},
                            .data = x, .bytes = 8};
    const bp_st_meta m = {"v", "1"};
    ck_assert_msg(bp_st_write(path, &t, 1, &m, 1) == want, "%s", bp_last_error());
}

static float read_one(const char *path)
{
    bp_st_file *f;
    ck_assert_msg(bp_st_read(&f, path) == BP_OK, "%s", bp_last_error());
    float v;
    memcpy(&v, bp_st_find(f, "x")->data, sizeof v);
    bp_st_free(f);
    return v;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A directory that takes no new file: chmod 0555 for an ordinary user; root ignores modes, so
 * as root the directory is made immutable (FS_IMMUTABLE_FL, what chattr +i sets). The old file
 * in it is untouched and the error names the path. */
START_TEST(test_unwritable_directory)
{
    const char *dir = tmp_path("ro");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_one(path, 1.0f, BP_OK);
    int denied;
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(dir, 0555), 0);
        denied = 1;
    } else {
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        ck_assert_int_ge(fd, 0);
        int flags = 0;
        denied = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
                 (flags |= FS_IMMUTABLE_FL, ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0);
        close(fd);
    }
    if (!denied) {
        /* No way to deny root this directory here (a file system without the flag, or no
         * CAP_LINUX_IMMUTABLE): the full-disk test below still covers the old file. */
        return;
    }
    write_one(path, 2.0f, BP_EIO);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", bp_last_error());
    clear_immutable(dir);
    chmod(dir, 0755);
    ck_assert_msg(strstr(msg, path) != NULL, "message '%s' lacks the path", msg);
    ck_assert_float_eq(read_one(path), 1.0f);
    ck_assert_int_eq(count_entries(dir), 1);
}
END_TEST

/* A write that fails half way (the file size limit standing in for a full disk). */
START_TEST(test_full_disk_keeps_old_file)
{
    const char *path = tmp_path("full.safetensors");
    write_one(path, 1.0f, BP_OK);
    enum { BIG = 1 << 16 };
    float *x = calloc(BIG, sizeof *x);
    ck_assert_ptr_nonnull(x);
    const bp_st_tensor t = {.name = "x", .dtype = BP_ST_F32, .ndim = 1, .shape = {BIG},
                            .data = x, .bytes = BIG * sizeof *x};
    struct rlimit saved, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 4096;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    bp_status st = bp_st_write(path, &t, 1, NULL, 0);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", bp_last_error());
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, SIG_DFL);
    free(x);
    ck_assert_int_eq(st, BP_EIO);
    ck_assert_msg(strstr(msg, path) != NULL, "message '%s' lacks the path", msg);
    ck_assert_float_eq(read_one(path), 1.0f);
    ck_assert_int_eq(count_entries(tmp_dir), 1);
}
END_TEST

/* A file replaced by a good save is the new one, read back whole. */
START_TEST(test_replace)
{
    const char *path = tmp_path("r.safetensors");
    write_one(path, 1.0f, BP_OK);
    write_one(path, 3.0f, BP_OK);
    ck_assert_float_eq(read_one(path), 3.0f);
    ck_assert_int_eq(count_entries(tmp_dir), 1);
}
END_TEST

Suite *bp_suite_safetensors(void)
{
    Suite *s = suite_create("safetensors");
    TCase *rt = tcase_create("round-trip");
    tcase_add_checked_fixture(rt, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(rt, 60);
    tcase_add_test(rt, test_round_trip);
    tcase_add_test(rt, test_header_crc_is_documented_text);
    tcase_add_test(rt, test_hand_made_valid);
    tcase_add_test(rt, test_empty_files);
    tcase_add_test(rt, test_misaligned_offsets);
    tcase_add_test(rt, test_write_arguments);
    tcase_add_test(rt, test_replace);
    suite_add_tcase(s, rt);

    TCase *bad = tcase_create("defects");
    tcase_add_checked_fixture(bad, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(bad, 60);
    tcase_add_test(bad, test_length_prefix);
    tcase_add_test(bad, test_not_one_object);
    tcase_add_test(bad, test_lexical);
    tcase_add_test(bad, test_duplicate_keys);
    tcase_add_test(bad, test_metadata_shape);
    tcase_add_test(bad, test_tensor_fields);
    tcase_add_test(bad, test_layout);
    tcase_add_test(bad, test_crcs);
    suite_add_tcase(s, bad);

    /* Many thousands of reads: minutes under the sanitizers on a slow machine. */
    TCase *all = tcase_create("exhaustive");
    tcase_add_checked_fixture(all, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(all, 600);
    tcase_add_test(all, test_every_byte_change_refused);
    tcase_add_test(all, test_every_truncation_refused);
    suite_add_tcase(s, all);

    TCase *files = tcase_create("files");
    tcase_add_checked_fixture(files, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(files, 60);
    tcase_add_test(files, test_not_regular_files);
    tcase_add_test(files, test_unwritable_directory);
    tcase_add_test(files, test_full_disk_keeps_old_file);
    suite_add_tcase(s, files);
    return s;
}

int main(void) { return bp_test_main(bp_suite_safetensors()); }
