/*
 * safetensors.c - the safetensors container (docs/FORMAT.md, "Container"): a writer that goes
 * through the library's atomic file writer, and a strict reader.
 *
 * JSON is cJSON's: the writer builds the header as a cJSON tree and prints it, the reader
 * parses it with cJSON and then walks the tree. cJSON is lenient where our files must not be,
 * so the reader closes those gaps itself before trusting the tree:
 * - it keeps duplicate keys (and its key lookup ignores case): we compare every object's
 *   member names ourselves, exactly;
 * - it turns "\u0000" and a malformed "\uXXXX" into a NUL, which silently cuts a name short;
 *   it copies raw control bytes and invalid UTF-8 into strings; it takes any byte up to 0x20
 *   for whitespace between tokens; and it reads numbers with strtod, so "1.0", "1e1", "01"
 *   and "-0" all arrive as integers. A byte-level pass over the header (check_text) refuses
 *   each of these. It builds nothing and decides nothing about structure: it only holds the
 *   text to the lexical rules of RFC 8259, which cJSON has already parsed.
 * cJSON's allocation hooks are process-wide (cJSON_InitHooks), and an application that uses
 * cJSON itself owns them: the library leaves them alone, so the tree cJSON builds comes from
 * its malloc, not bp_alloc, and lives only inside one call. Everything the library keeps is
 * bp_alloc'd.
 *
 * The reader checks the header fully before it reads a byte of the data section, so a bogus
 * multi-gigabyte file costs the reading of its header, and the only sizes taken from the
 * header (the data section's) have by then been proven equal to the file's.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "core/core.h"
#include "io/io.h"
#include "io/safetensors.h"

#define META_KEY "__metadata__"
#define CRC_PREFIX "crc32."
#define CRC_PREFIX_LEN 6
#define CRC_HEADER_KEY "crc32.header"
/* The tensor whose CRC key would be the header's. */
#define CRC_HEADER_NAME "header"
/* read() may return less than asked above 2 GiB: never ask for more at once. */
#define IO_CHUNK ((size_t)1 << 30)
/* cJSON's tree costs at most about 40 bytes per byte of text ("[0,0,...": a 64-byte node and
 * malloc's overhead per two bytes). Above this header size the tree's worst case is checked
 * against the memory limit first, so a 100 MB header of zeros is refused rather than
 * OOM-killed; below it the check's cost (reading /proc/meminfo) is not worth paying. */
#define TREE_BYTES_PER_BYTE 48
#define CHECK_MEMORY_ABOVE ((size_t)1 << 20)
/* Names in messages are cut here, so the field that follows them still fits. */
#define NAME_IN_MESSAGE 120

static const struct {
    const char *name;
    size_t size;
} dtypes[BP_ST_DTYPE_COUNT] = {
    [BP_ST_F32] = {"F32", 4},
    [BP_ST_I64] = {"I64", 8},
};

struct bp_st_file {
    char *name;              /* for messages */
    int n_tensors, n_meta;
    bp_st_tensor *tensors;   /* data-offset order */
    int *by_name;            /* indices into tensors, sorted by name, for bp_st_find */
    bp_st_meta *meta;        /* header order */
    int *meta_by_key;        /* indices into meta, sorted by key */
    char *strings;           /* every name, key and value, NUL-terminated */
    unsigned char *data;     /* the data section, in one 64-byte aligned block */
};

/* ---- shared by the writer and the reader ------------------------------------------------ */

/* The length of the UTF-8 sequence at s (at most n bytes), 0 if it is not one: shortest
 * forms only, no surrogates, nothing above U+10FFFF (RFC 3629). */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* else an overlong form */
        if (c == 0xed)
            hi = 0x9f; /* else a surrogate */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f; /* else above U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* The byte offset of the first invalid UTF-8 in the string, or -1. */
static long utf8_invalid_at(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence(s + i, n - i);
        if (!len)
            return (long)i;
        i += len;
    }
    return -1;
}

/* qsort, which must not be given a NULL array even for no elements. */
static void sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}

/* What the canonical text (docs/FORMAT.md) and the sorts need of a tensor. */
typedef struct entry {
    const char *name;
    bp_st_dtype dtype;
    int ndim;
    int64_t shape[BP_TENSOR_MAX_DIMS];
    uint64_t begin, end;
    uint64_t slot;     /* reader: where its bytes go in the data block */
    uint32_t crc;      /* reader: the value of its crc32 key */
    int has_crc;
} entry;

/* Data order: by begin, then end (an empty tensor before the one that starts where it sits),
 * then name, which is unique. */
static int entry_data_order(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int entry_name_order(const void *a, const void *b)
{
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}

static int meta_key_order(const void *a, const void *b)
{
    return strcmp((*(const bp_st_meta *const *)a)->key, (*(const bp_st_meta *const *)b)->key);
}

/* One field of the canonical text: its bytes and the NUL that ends it. No name, key or value
 * holds a NUL (C strings; the reader refuses "\u0000"), so the fields cannot run together. */
static uint32_t crc_field(uint32_t crc, const char *s)
{
    return (uint32_t)crc32_z(crc, (const unsigned char *)s, strlen(s) + 1);
}

static uint32_t crc_number(uint32_t crc, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return crc_field(crc, buf);
}

/* The header CRC: over the tensors in data order and the metadata sorted by key, without
 * crc32.header itself (docs/FORMAT.md gives the text byte by byte). */
static uint32_t header_crc(entry *const *data_order, int n, const bp_st_meta *const *by_key,
                           int n_meta)
{
    uint32_t crc = (uint32_t)crc32_z(0, Z_NULL, 0);
    for (int i = 0; i < n; i++) {
        const entry *e = data_order[i];
        crc = crc_field(crc, "tensor");
        crc = crc_field(crc, e->name);
        crc = crc_field(crc, dtypes[e->dtype].name);
        crc = crc_number(crc, (uint64_t)e->ndim);
        for (int d = 0; d < e->ndim; d++)
            crc = crc_number(crc, (uint64_t)e->shape[d]);
        crc = crc_number(crc, e->begin);
        crc = crc_number(crc, e->end);
    }
    for (int i = 0; i < n_meta; i++) {
        if (strcmp(by_key[i]->key, CRC_HEADER_KEY) == 0)
            continue;
        crc = crc_field(crc, "meta");
        crc = crc_field(crc, by_key[i]->key);
        crc = crc_field(crc, by_key[i]->value);
    }
    return crc;
}

static void crc_hex(char out[9], uint32_t crc)
{
    snprintf(out, 9, "%08x", (unsigned)crc);
}

static uint32_t data_crc(const void *data, size_t bytes)
{
    uint32_t crc = (uint32_t)crc32_z(0, Z_NULL, 0);
    return bytes ? (uint32_t)crc32_z(crc, data, bytes) : crc;
}

/* "[10, 784]" for messages. */
static void format_shape(char *buf, size_t size, const int64_t *shape, int ndim)
{
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", d ? ", " : "",
                                 (long long)shape[d]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* elements * size in *bytes, or 0 if it overflows 64 bits. */
static int shape_bytes(const int64_t *shape, int ndim, size_t elem, uint64_t *bytes)
{
    uint64_t b = elem;
    for (int d = 0; d < ndim; d++)
        if (__builtin_mul_overflow(b, (uint64_t)shape[d], &b))
            return 0;
    *bytes = b;
    return 1;
}

/* ---- writer ------------------------------------------------------------------------------ */

/* A number of the header as cJSON will print it. cJSON holds numbers as doubles and picks
 * their spelling (%1.15g: 10^15 comes out as "1e+15", which the reference implementation's
 * integer fields refuse); a raw item of our own digits is an integer in every reader. */
static cJSON *json_integer(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

static bp_status check_string(const char *path, const char *what, const char *s)
{
    long bad = utf8_invalid_at(s);
    if (bad >= 0)
        return bp_fail(BP_EINVAL, "%s: %s '%.*s': byte %ld is not UTF-8", path, what,
                       NAME_IN_MESSAGE, s, bad);
    return BP_OK;
}

/* Every argument rule of bp_st_write, before anything is built. Fills e[] (offsets in the
 * order given) and *total. */
static bp_status check_write_args(const char *path, const bp_st_tensor *t, int n,
                                  const bp_st_meta *meta, int n_meta, entry *e, uint64_t *total)
{
    bp_status st;
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const char *name = t[i].name;
        if (!name || !*name)
            return bp_fail(BP_EINVAL, "%s: tensor %d has %s name", path, i,
                           name ? "an empty" : "a NULL");
        if (strcmp(name, META_KEY) == 0 || strcmp(name, CRC_HEADER_NAME) == 0)
            return bp_fail(BP_EINVAL, "%s: tensor %d is named '%s', %s", path, i, name,
                           *name == '_' ? "the metadata's key"
                                        : "whose CRC key would be the header's (" CRC_HEADER_KEY
                                          ")");
        if ((st = check_string(path, "tensor name", name)) != BP_OK)
            return st;
        if ((unsigned)t[i].dtype >= BP_ST_DTYPE_COUNT)
            return bp_fail(BP_EINVAL, "%s: tensor '%.*s': unknown dtype %d", path,
                           NAME_IN_MESSAGE, name, (int)t[i].dtype);
        if (t[i].ndim < 0 || t[i].ndim > BP_TENSOR_MAX_DIMS)
            return bp_fail(BP_EINVAL, "%s: tensor '%.*s': ndim %d is outside 0..%d", path,
                           NAME_IN_MESSAGE, name, t[i].ndim, BP_TENSOR_MAX_DIMS);
        for (int d = 0; d < t[i].ndim; d++)
            if (t[i].shape[d] < 0 || t[i].shape[d] > BP_ST_MAX_INT)
                return bp_fail(BP_EINVAL, "%s: tensor '%.*s': shape[%d] = %lld is outside "
                               "0..2^53-1", path, NAME_IN_MESSAGE, name, d,
                               (long long)t[i].shape[d]);
        size_t size = dtypes[t[i].dtype].size;
        uint64_t need;
        char shape[160];
        format_shape(shape, sizeof shape, t[i].shape, t[i].ndim);
        if (!shape_bytes(t[i].shape, t[i].ndim, size, &need))
            return bp_fail(BP_EINVAL, "%s: tensor '%.*s': shape %s of %s overflows 64 bits",
                           path, NAME_IN_MESSAGE, name, shape, dtypes[t[i].dtype].name);
        if (need != (uint64_t)t[i].bytes)
            return bp_fail(BP_EINVAL, "%s: tensor '%.*s': shape %s of %s needs %llu bytes, "
                           "given %zu", path, NAME_IN_MESSAGE, name, shape,
                           dtypes[t[i].dtype].name, (unsigned long long)need, t[i].bytes);
        if (need && !t[i].data)
            return bp_fail(BP_EINVAL, "%s: tensor '%.*s': data is NULL", path,
                           NAME_IN_MESSAGE, name);
        if (need > (uint64_t)BP_ST_MAX_INT - offset)
            return bp_fail(BP_EINVAL, "%s: the tensors hold more than 2^53-1 bytes", path);
        e[i] = (entry){.name = name, .dtype = t[i].dtype, .ndim = t[i].ndim,
                       .begin = offset, .end = offset + need};
        memcpy(e[i].shape, t[i].shape, sizeof e[i].shape);
        for (int d = t[i].ndim; d < BP_TENSOR_MAX_DIMS; d++)
            e[i].shape[d] = 0;
        offset += need;
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return bp_fail(BP_EINVAL, "%s: metadata entry %d has a NULL %s", path, i,
                           meta[i].key ? "value" : "key");
        if (strncmp(meta[i].key, CRC_PREFIX, CRC_PREFIX_LEN) == 0)
            return bp_fail(BP_EINVAL, "%s: metadata key '%.*s': keys beginning '%s' are the "
                           "writer's own", path, NAME_IN_MESSAGE, meta[i].key, CRC_PREFIX);
        if ((st = check_string(path, "metadata key", meta[i].key)) != BP_OK ||
            (st = check_string(path, "metadata value", meta[i].value)) != BP_OK)
            return st;
    }
    *total = offset;
    return BP_OK;
}

/* Adjacent equal strings in a sorted array of pointers to entries or metadata. */
static bp_status check_unique(const char *path, entry **by_name, int n, bp_st_meta **by_key,
                              int n_meta)
{
    for (int i = 1; i < n; i++)
        if (strcmp(by_name[i - 1]->name, by_name[i]->name) == 0)
            return bp_fail(BP_EINVAL, "%s: two tensors are named '%.*s'", path,
                           NAME_IN_MESSAGE, by_name[i]->name);
    for (int i = 1; i < n_meta; i++)
        if (strcmp(by_key[i - 1]->key, by_key[i]->key) == 0)
            return bp_fail(BP_EINVAL, "%s: metadata key '%.*s' is given twice", path,
                           NAME_IN_MESSAGE, by_key[i]->key);
    return BP_OK;
}

/* The header as cJSON prints it: __metadata__ first (the caller's keys in their order, then
 * one crc32.<tensor> per tensor and crc32.header), then the tensors in the order given. */
static char *build_header(const entry *e, int n, const bp_st_meta *meta, int n_meta,
                          char *const *crc_keys, const char (*crcs)[9],
                          const char *header_crc_hex)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *md = cJSON_CreateObject();
    if (!root || !md || !cJSON_AddItemToObject(root, META_KEY, md)) {
        cJSON_Delete(md);
        cJSON_Delete(root);
        return NULL;
    }
    int ok = 1;
    for (int i = 0; i < n_meta && ok; i++)
        ok = cJSON_AddStringToObject(md, meta[i].key, meta[i].value) != NULL;
    for (int i = 0; i < n && ok; i++)
        ok = cJSON_AddStringToObject(md, crc_keys[i], crcs[i]) != NULL;
    ok = ok && cJSON_AddStringToObject(md, CRC_HEADER_KEY, header_crc_hex) != NULL;
    for (int i = 0; i < n && ok; i++) {
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray();
        cJSON *offsets = cJSON_CreateArray();
        ok = t && shape && offsets && cJSON_AddItemToObject(root, e[i].name, t);
        if (!ok) {
            cJSON_Delete(t);
            cJSON_Delete(shape);
            cJSON_Delete(offsets);
            break;
        }
        ok = cJSON_AddStringToObject(t, "dtype", dtypes[e[i].dtype].name) != NULL &&
             cJSON_AddItemToObject(t, "shape", shape);
        if (!ok) {
            cJSON_Delete(shape);
            cJSON_Delete(offsets);
            break;
        }
        for (int d = 0; d < e[i].ndim && ok; d++)
            ok = cJSON_AddItemToArray(shape, json_integer((uint64_t)e[i].shape[d]));
        ok = ok && cJSON_AddItemToArray(offsets, json_integer(e[i].begin)) &&
             cJSON_AddItemToArray(offsets, json_integer(e[i].end));
        if (!cJSON_AddItemToObject(t, "data_offsets", offsets)) {
            cJSON_Delete(offsets);
            ok = 0;
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

bp_status bp_st_write(const char *path, const bp_st_tensor *tensors, int n_tensors,
                      const bp_st_meta *meta, int n_meta)
{
    if (!path)
        return bp_fail(BP_EINVAL, "bp_st_write: path is NULL");
    if (n_tensors < 0 || n_meta < 0 || (n_tensors && !tensors) || (n_meta && !meta))
        return bp_fail(BP_EINVAL, "%s: bp_st_write: %d tensors at %p, %d metadata entries at "
                       "%p", path, n_tensors, (const void *)tensors, n_meta,
                       (const void *)meta);
    bp_status st;
    entry *e = n_tensors ? bp_calloc((size_t)n_tensors, sizeof *e) : NULL;
    entry **order = n_tensors ? bp_calloc((size_t)n_tensors, sizeof *order) : NULL;
    char (*crcs)[9] = n_tensors ? bp_calloc((size_t)n_tensors, sizeof *crcs) : NULL;
    /* The caller's metadata and the tensors' CRC keys: what the header CRC covers. */
    size_t n_all = (size_t)n_meta + (size_t)n_tensors;
    bp_st_meta *all = n_all ? bp_calloc(n_all, sizeof *all) : NULL;
    bp_st_meta **by_key = n_all ? bp_calloc(n_all, sizeof *by_key) : NULL;
    char **crc_keys = n_tensors ? bp_calloc((size_t)n_tensors, sizeof *crc_keys) : NULL;
    char *text = NULL;
    bp_file_writer *w = NULL;
    if ((n_tensors && (!e || !order || !crcs || !crc_keys)) || (n_all && (!all || !by_key))) {
        st = bp_fail(BP_ENOMEM, "%s: no memory to prepare the header", path);
        goto done;
    }
    uint64_t total = 0;
    if ((st = check_write_args(path, tensors, n_tensors, meta, n_meta, e, &total)) != BP_OK)
        goto done;
    for (int i = 0; i < n_tensors; i++)
        order[i] = &e[i];
    sort(order, (size_t)n_tensors, sizeof *order, entry_name_order);
    for (int i = 0; i < n_meta; i++) {
        all[i] = meta[i];
        by_key[i] = &all[i];
    }
    sort(by_key, (size_t)n_meta, sizeof *by_key, meta_key_order);
    if ((st = check_unique(path, order, n_tensors, by_key, n_meta)) != BP_OK)
        goto done;

    for (int i = 0; i < n_tensors; i++) {
        crc_hex(crcs[i], data_crc(tensors[i].data, tensors[i].bytes));
        size_t len = strlen(e[i].name) + CRC_PREFIX_LEN + 1;
        if (!(crc_keys[i] = bp_alloc(len))) {
            st = bp_fail(BP_ENOMEM, "%s: no memory to prepare the header", path);
            goto done;
        }
        snprintf(crc_keys[i], len, "%s%s", CRC_PREFIX, e[i].name);
        all[n_meta + i] = (bp_st_meta){crc_keys[i], crcs[i]};
    }
    for (size_t i = 0; i < n_all; i++)
        by_key[i] = &all[i];
    sort(by_key, n_all, sizeof *by_key, meta_key_order);
    for (int i = 0; i < n_tensors; i++)
        order[i] = &e[i];
    sort(order, (size_t)n_tensors, sizeof *order, entry_data_order);
    char header_hex[9];
    crc_hex(header_hex, header_crc(order, n_tensors, (const bp_st_meta *const *)by_key,
                                   (int)n_all));

    if (!(text = build_header(e, n_tensors, meta, n_meta, crc_keys, (const char (*)[9])crcs,
                              header_hex))) {
        st = bp_fail(BP_ENOMEM, "%s: no memory to print the header", path);
        goto done;
    }
    /* Spaces pad the header so the data section starts on an 8-byte boundary of the file, as
     * the reference implementation does: a reader that maps the file gets aligned tensors. */
    size_t json_len = strlen(text);
    size_t header_len = (json_len + 7) / 8 * 8;
    if (header_len > BP_ST_MAX_HEADER) {
        st = bp_fail(BP_EINVAL, "%s: the header would take %zu bytes, above the %d that "
                     "readers accept", path, header_len, BP_ST_MAX_HEADER);
        goto done;
    }
    unsigned char prefix[8];
    for (int b = 0; b < 8; b++)
        prefix[b] = (unsigned char)((uint64_t)header_len >> (8 * b));
    static const char spaces[8] = "        ";
    if ((st = bp_file_writer_open(&w, path)) != BP_OK)
        goto done;
    if ((st = bp_file_writer_write(w, prefix, sizeof prefix)) != BP_OK ||
        (st = bp_file_writer_write(w, text, json_len)) != BP_OK ||
        (st = bp_file_writer_write(w, spaces, header_len - json_len)) != BP_OK)
        goto done;
    for (int i = 0; i < n_tensors; i++)
        if (tensors[i].bytes &&
            (st = bp_file_writer_write(w, tensors[i].data, tensors[i].bytes)) != BP_OK)
            goto done;
    st = bp_file_writer_commit(w);
    w = NULL; /* commit frees it, succeeding or not */
done:
    bp_file_writer_abort(w);
    free(text); /* cJSON's print buffer comes from its malloc */
    for (int i = 0; crc_keys && i < n_tensors; i++)
        bp_free(crc_keys[i]);
    bp_free(crc_keys);
    bp_free(by_key);
    bp_free(all);
    bp_free(crcs);
    bp_free(order);
    bp_free(e);
    return st;
}

/* ---- reader: the header ---------------------------------------------------------------- */

typedef struct reader {
    const char *name;       /* the file, for messages */
    int ignore_crcs;        /* bp_st_read_memory_ignoring_crcs: the fuzz target's */
    const unsigned char *text;
    size_t n;               /* header bytes */
    uint64_t file_bytes;    /* 8 + n + the data section */
    cJSON *root;
    size_t json_end;        /* the JSON object's length; spaces follow it up to n */
    size_t bad_number;      /* the first number not spelled as a plain integer, or SIZE_MAX */
    int n_tensors, n_meta;
    entry *e;               /* header order */
    entry **order;          /* data order */
    bp_st_meta *meta;       /* header order, strings in the cJSON tree */
    bp_st_meta **by_key;
    uint32_t header_crc;    /* the value of crc32.header */
} reader;

static bp_status bad(const reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A format failure: "<file>: " and the message. */
static bp_status bad(const reader *r, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bp_fail(BP_EFORMAT, "%s: %s", r->name, msg);
}

/* Digits only, no leading zero, no sign: how the format writes an integer. */
static int plain_integer(const unsigned char *s, size_t n)
{
    if (n == 0 || (s[0] == '0' && n > 1))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int hex_digit(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The lexical rules cJSON does not enforce, over the JSON text cJSON has accepted (see the top
 * of the file). Number spellings are only noted here (r->bad_number) and refused after the
 * fields are checked, so that "shape": [2.5] is reported against its field. */
static bp_status check_text(reader *r)
{
    const unsigned char *s = r->text;
    size_t n = r->json_end;
    int in_string = 0;
    r->bad_number = SIZE_MAX;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = utf8_sequence(s + i, n - i);
            if (!len)
                return bad(r, "header byte %zu (0x%02x) is not UTF-8", i, c);
            i += len;
            continue;
        }
        if (in_string) {
            if (c == '"')
                in_string = 0;
            else if (c < 0x20)
                return bad(r, "header byte %zu: control byte 0x%02x inside a string (JSON "
                           "writes it as an escape)", i, c);
            else if (c == '\\') {
                unsigned char x = i + 1 < n ? s[i + 1] : 0;
                if (x == 'u') {
                    int ok = i + 6 <= n;
                    for (size_t k = 2; ok && k < 6; k++)
                        ok = hex_digit(s[i + k]);
                    if (!ok)
                        return bad(r, "header byte %zu: a \\u escape without four hex digits",
                                   i);
                    if (memcmp(s + i + 2, "0000", 4) == 0)
                        return bad(r, "header byte %zu: \\u0000 (a NUL) in a string: no name, "
                                   "key or value may hold one", i);
                    i += 6;
                    continue;
                }
                i += 2; /* cJSON refuses an unknown escape letter itself */
                continue;
            }
            i++;
            continue;
        }
        if (c == '"')
            in_string = 1;
        else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return bad(r, "header byte %zu: control byte 0x%02x outside a string (JSON "
                       "allows space, tab, CR and LF there)", i, c);
        else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            while (j < n && strchr("0123456789+-.eE", s[j]) && s[j])
                j++;
            if (r->bad_number == SIZE_MAX && !plain_integer(s + i, j - i))
                r->bad_number = i;
            i = j;
            continue;
        }
        i++;
    }
    return BP_OK;
}

static int name_order(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cJSON keeps every member of an object, duplicates included: sort the names and compare
 * neighbours. `where` names the object in the message. */
static bp_status check_duplicates(const reader *r, const cJSON *obj, const char *where)
{
    int n = cJSON_GetArraySize(obj);
    if (n < 2)
        return BP_OK;
    const char **names = bp_calloc((size_t)n, sizeof *names);
    if (!names)
        return bp_fail(BP_ENOMEM, "%s: no memory to check the header's keys", r->name);
    int k = 0;
    for (const cJSON *m = obj->child; m; m = m->next)
        names[k++] = m->string;
    sort(names, (size_t)k, sizeof *names, name_order);
    bp_status st = BP_OK;
    for (int i = 1; i < k && st == BP_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            st = bad(r, "%s: duplicate key '%.*s'", where, NAME_IN_MESSAGE, names[i]);
    bp_free(names);
    return st;
}

/* A shape entry or offset: an integer 0 .. 2^53-1. cJSON's double holds these exactly, and
 * any number text at or past 2^53 reads as 2^53 or more, so the bound also refuses digits
 * that the double rounded. */
static int json_count(const cJSON *v, uint64_t *out, const char **why)
{
    if (!cJSON_IsNumber(v)) {
        *why = "is not a number";
        return 0;
    }
    double d = v->valuedouble;
    if (!(d >= 0)) {
        *why = "is negative";
        return 0;
    }
    if (d > (double)BP_ST_MAX_INT) {
        *why = "is above 2^53-1";
        return 0;
    }
    if (d != floor(d)) {
        *why = "is not an integer";
        return 0;
    }
    *out = (uint64_t)d;
    return 1;
}

static bp_status check_metadata(reader *r, const cJSON *md)
{
    bp_status st;
    if (!cJSON_IsObject(md))
        return bad(r, "%s is not an object", META_KEY);
    if ((st = check_duplicates(r, md, META_KEY)) != BP_OK)
        return st;
    for (const cJSON *m = md->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return bad(r, "%s: '%.*s' is not a string", META_KEY, NAME_IN_MESSAGE, m->string);
        r->meta[r->n_meta++] = (bp_st_meta){m->string, m->valuestring};
    }
    return BP_OK;
}

static bp_status check_tensor(reader *r, const cJSON *t, entry *e)
{
    const char *name = t->string;
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    if (!*name)
        return bad(r, "a tensor has an empty name");
    if (strcmp(name, CRC_HEADER_NAME) == 0)
        return bad(r, "a tensor is named '%s', whose CRC key would be the header's (%s)", name,
                   CRC_HEADER_KEY);
    if (!cJSON_IsObject(t))
        return bad(r, "tensor '%.*s' is not an object", NAME_IN_MESSAGE, name);
    /* Exactly the three fields, each once: compared exactly (cJSON's lookup ignores case). */
    for (const cJSON *f = t->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0   ? &dtype
                             : strcmp(f->string, "shape") == 0 ? &shape
                             : strcmp(f->string, "data_offsets") == 0 ? &offsets
                                                                       : NULL;
        if (!slot)
            return bad(r, "tensor '%.*s': unknown field '%.*s' (a tensor has dtype, shape and "
                       "data_offsets)", NAME_IN_MESSAGE, name, NAME_IN_MESSAGE, f->string);
        if (*slot)
            return bad(r, "tensor '%.*s': duplicate key '%s'", NAME_IN_MESSAGE, name,
                       f->string);
        *slot = f;
    }
    if (!dtype || !shape || !offsets)
        return bad(r, "tensor '%.*s' has no %s", NAME_IN_MESSAGE, name,
                   !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    e->name = name;
    e->dtype = BP_ST_DTYPE_COUNT;
    for (int k = 0; k < BP_ST_DTYPE_COUNT; k++)
        if (cJSON_IsString(dtype) && strcmp(dtype->valuestring, dtypes[k].name) == 0)
            e->dtype = (bp_st_dtype)k;
    if (e->dtype == BP_ST_DTYPE_COUNT) {
        if (!cJSON_IsString(dtype))
            return bad(r, "tensor '%.*s': dtype is not a string", NAME_IN_MESSAGE, name);
        return bad(r, "tensor '%.*s': dtype '%.16s' is not one this reader takes (F32, I64)",
                   NAME_IN_MESSAGE, name, dtype->valuestring);
    }
    if (!cJSON_IsArray(shape))
        return bad(r, "tensor '%.*s': shape is not an array", NAME_IN_MESSAGE, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > BP_TENSOR_MAX_DIMS)
        return bad(r, "tensor '%.*s': shape has %d dimensions, more than %d", NAME_IN_MESSAGE,
                   name, ndim, BP_TENSOR_MAX_DIMS);
    e->ndim = ndim;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t x;
        const char *why;
        if (!json_count(v, &x, &why)) {
            if (cJSON_IsNumber(v))
                return bad(r, "tensor '%.*s': shape[%d] = %.17g %s", NAME_IN_MESSAGE, name, d,
                           v->valuedouble, why);
            return bad(r, "tensor '%.*s': shape[%d] %s", NAME_IN_MESSAGE, name, d, why);
        }
        e->shape[d] = (int64_t)x;
    }
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return bad(r, "tensor '%.*s': data_offsets is not an array of two numbers",
                   NAME_IN_MESSAGE, name);
    uint64_t be[2];
    d = 0;
    for (const cJSON *v = offsets->child; v; v = v->next, d++) {
        const char *why;
        if (!json_count(v, &be[d], &why)) {
            if (cJSON_IsNumber(v))
                return bad(r, "tensor '%.*s': data_offsets[%d] = %.17g %s", NAME_IN_MESSAGE,
                           name, d, v->valuedouble, why);
            return bad(r, "tensor '%.*s': data_offsets[%d] %s", NAME_IN_MESSAGE, name, d, why);
        }
    }
    if (be[0] > be[1])
        return bad(r, "tensor '%.*s': data_offsets [%llu, %llu] end before they begin",
                   NAME_IN_MESSAGE, name, (unsigned long long)be[0],
                   (unsigned long long)be[1]);
    e->begin = be[0];
    e->end = be[1];
    size_t size = dtypes[e->dtype].size;
    uint64_t need;
    char text[160];
    format_shape(text, sizeof text, e->shape, e->ndim);
    if (!shape_bytes(e->shape, e->ndim, size, &need))
        return bad(r, "tensor '%.*s': shape %s of %s overflows 64 bits of bytes",
                   NAME_IN_MESSAGE, name, text, dtypes[e->dtype].name);
    if (need != e->end - e->begin)
        return bad(r, "tensor '%.*s': shape %s needs %llu bytes but data_offsets span %llu",
                   NAME_IN_MESSAGE, name, text, (unsigned long long)need,
                   (unsigned long long)(e->end - e->begin));
    return BP_OK;
}

/* Sorted by begin, the ranges must tile the data section: from 0, no gaps, no overlaps, and
 * the last end is where the file ends. */
static bp_status check_layout(reader *r)
{
    uint64_t at = 0;
    const entry *prev = NULL;
    for (int i = 0; i < r->n_tensors; i++) {
        const entry *e = r->order[i];
        if (e->begin < at)
            return bad(r, "tensor '%.*s': data_offsets [%llu, %llu] overlap tensor '%.*s' "
                       "[%llu, %llu]", NAME_IN_MESSAGE, e->name, (unsigned long long)e->begin,
                       (unsigned long long)e->end, NAME_IN_MESSAGE, prev->name,
                       (unsigned long long)prev->begin, (unsigned long long)prev->end);
        if (e->begin > at) {
            if (prev)
                return bad(r, "tensor '%.*s': data_offsets begin at %llu, leaving a gap of "
                           "%llu bytes after tensor '%.*s' (which ends at %llu)",
                           NAME_IN_MESSAGE, e->name, (unsigned long long)e->begin,
                           (unsigned long long)(e->begin - at), NAME_IN_MESSAGE, prev->name,
                           (unsigned long long)at);
            return bad(r, "tensor '%.*s': data_offsets begin at %llu, leaving a gap: the "
                       "first tensor's data begins at 0", NAME_IN_MESSAGE, e->name,
                       (unsigned long long)e->begin);
        }
        at = e->end;
        prev = e;
    }
    uint64_t have = r->file_bytes - 8 - r->n;
    if (at < have)
        return bad(r, "%llu bytes of trailing data: the tensors' data_offsets end at %llu but "
                   "the data section holds %llu bytes", (unsigned long long)(have - at),
                   (unsigned long long)at, (unsigned long long)have);
    if (at > have)
        return bad(r, "truncated: the tensors' data_offsets end at %llu but the data section "
                   "holds %llu bytes (the file %llu)", (unsigned long long)at,
                   (unsigned long long)have, (unsigned long long)r->file_bytes);
    return BP_OK;
}

static int parse_crc(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            v = v << 4 | (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint32_t)(c - 'a' + 10);
        else
            return 0; /* also the end of a short string, and upper case: one spelling only */
    }
    if (s[8])
        return 0;
    *out = v;
    return 1;
}

static const entry *find_entry(reader *r, const char *name)
{
    if (r->n_tensors == 0)
        return NULL;
    entry key = {.name = name}, *pkey = &key;
    entry **hit = bsearch(&pkey, r->order, (size_t)r->n_tensors, sizeof *r->order,
                          entry_name_order);
    return hit ? *hit : NULL;
}

/* Every crc32 key well formed and naming a tensor or the header; every tensor and the header
 * with one; the header's CRC right. r->order is sorted by name on entry and by data on exit. */
static bp_status check_crc_keys(reader *r)
{
    int have_header = 0;
    for (int i = 0; i < r->n_meta; i++) {
        const char *key = r->meta[i].key;
        if (strncmp(key, CRC_PREFIX, CRC_PREFIX_LEN) != 0)
            continue;
        uint32_t v;
        if (!parse_crc(r->meta[i].value, &v))
            return bad(r, "%s '%.*s' is '%.16s', not 8 lower-case hex digits", META_KEY,
                       NAME_IN_MESSAGE, key, r->meta[i].value);
        if (strcmp(key, CRC_HEADER_KEY) == 0) {
            r->header_crc = v;
            have_header = 1;
            continue;
        }
        entry *e = (entry *)find_entry(r, key + CRC_PREFIX_LEN);
        if (!e)
            return bad(r, "%s '%.*s' names no tensor of the file", META_KEY, NAME_IN_MESSAGE,
                       key);
        e->crc = v;
        e->has_crc = 1;
    }
    for (int i = 0; i < r->n_tensors; i++)
        if (!r->e[i].has_crc)
            return bad(r, "tensor '%.*s' has no %s%.*s in %s (this reader takes only files "
                       "whose CRCs it can check)", NAME_IN_MESSAGE, r->e[i].name, CRC_PREFIX,
                       NAME_IN_MESSAGE, r->e[i].name, META_KEY);
    if (!have_header)
        return bad(r, "%s has no %s (this reader takes only files whose CRCs it can check)",
                   META_KEY, CRC_HEADER_KEY);
    sort(r->order, (size_t)r->n_tensors, sizeof *r->order, entry_data_order);
    uint32_t crc = header_crc(r->order, r->n_tensors, (const bp_st_meta *const *)r->by_key,
                              r->n_meta);
    if (crc != r->header_crc && !r->ignore_crcs)
        return bad(r, "%s %s is %08x but the header's contents give %08x (a damaged header)",
                   META_KEY, CRC_HEADER_KEY, (unsigned)r->header_crc, (unsigned)crc);
    return BP_OK;
}

/* Everything about the header, in the order docs/FORMAT.md lists the checks. */
static bp_status check_header(reader *r)
{
    bp_status st;
    if (r->n == 0 || r->text[0] != '{')
        return bad(r, "the header does not begin with '{' (a JSON object)");
    if (r->n > CHECK_MEMORY_ABOVE &&
        (st = bp_memory_check((uint64_t)r->n * TREE_BYTES_PER_BYTE, "parsing the header")) !=
            BP_OK)
        return bp_fail_context(st, "%s", r->name);
    const char *end = NULL;
    r->root = cJSON_ParseWithLengthOpts((const char *)r->text, r->n, &end, 0);
    if (!r->root) {
        size_t at = end && end >= (const char *)r->text ? (size_t)(end - (const char *)r->text)
                                                        : 0;
        return bad(r, "the header is not valid JSON (cJSON stops at byte %zu of %zu)", at,
                   r->n);
    }
    r->json_end = (size_t)(end - (const char *)r->text);
    for (size_t i = r->json_end; i < r->n; i++)
        if (r->text[i] != ' ')
            return bad(r, "header byte %zu (0x%02x) follows the JSON object: only spaces may "
                       "pad the header", i, r->text[i]);
    if ((st = check_text(r)) != BP_OK || (st = check_duplicates(r, r->root, "header")) != BP_OK)
        return st;

    int members = cJSON_GetArraySize(r->root);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(r->root, META_KEY);
    int n_md = md && cJSON_IsObject(md) ? cJSON_GetArraySize(md) : 0;
    r->e = members ? bp_calloc((size_t)members, sizeof *r->e) : NULL;
    r->order = members ? bp_calloc((size_t)members, sizeof *r->order) : NULL;
    r->meta = n_md ? bp_calloc((size_t)n_md, sizeof *r->meta) : NULL;
    r->by_key = n_md ? bp_calloc((size_t)n_md, sizeof *r->by_key) : NULL;
    if ((members && (!r->e || !r->order)) || (n_md && (!r->meta || !r->by_key)))
        return bp_fail(BP_ENOMEM, "%s: no memory for the header's %d entries", r->name,
                       members + n_md);
    if (md && (st = check_metadata(r, md)) != BP_OK)
        return st;
    for (const cJSON *t = r->root->child; t; t = t->next) {
        if (t == md)
            continue;
        entry *e = &r->e[r->n_tensors];
        if ((st = check_tensor(r, t, e)) != BP_OK)
            return st;
        r->order[r->n_tensors++] = e;
    }
    sort(r->order, (size_t)r->n_tensors, sizeof *r->order, entry_data_order);
    if ((st = check_layout(r)) != BP_OK)
        return st;
    if (r->bad_number != SIZE_MAX) {
        size_t i = r->bad_number, j = i;
        while (j < r->json_end && j - i < 32 && strchr("0123456789+-.eE", r->text[j]) &&
               r->text[j])
            j++;
        return bad(r, "header byte %zu: the number '%.*s' is not written as a plain integer "
                   "(shape and data_offsets take digits only: no sign, fraction, exponent or "
                   "leading zero)", i, (int)(j - i), (const char *)r->text + i);
    }
    for (int i = 0; i < r->n_meta; i++)
        r->by_key[i] = &r->meta[i];
    sort(r->by_key, (size_t)r->n_meta, sizeof *r->by_key, meta_key_order);
    sort(r->order, (size_t)r->n_tensors, sizeof *r->order, entry_name_order);
    return check_crc_keys(r);
}

static void reader_free(reader *r)
{
    cJSON_Delete(r->root);
    bp_free(r->e);
    bp_free(r->order);
    bp_free(r->meta);
    bp_free(r->by_key);
}

/* ---- reader: the file, its data and the handle ----------------------------------------- */

void bp_st_free(bp_st_file *f)
{
    if (!f)
        return;
    bp_free(f->name);
    bp_free(f->tensors);
    bp_free(f->by_name);
    bp_free(f->meta);
    bp_free(f->meta_by_key);
    bp_free(f->strings);
    bp_free(f->data);
    bp_free(f);
}

static char *copy_string(char **arena, const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = memcpy(*arena, s, len);
    *arena += len;
    return p;
}

/* A handle that owns copies of everything the checked header told, and the data block. */
static bp_status make_handle(const reader *r, unsigned char *data, bp_st_file **out)
{
    size_t name_len = strlen(r->name) + 1, strings = 0;
    for (int i = 0; i < r->n_tensors; i++)
        strings += strlen(r->e[i].name) + 1;
    for (int i = 0; i < r->n_meta; i++)
        strings += strlen(r->meta[i].key) + strlen(r->meta[i].value) + 2;
    bp_st_file *f = bp_calloc(1, sizeof *f);
    if (!f)
        goto nomem;
    f->data = data;
    f->name = bp_alloc(name_len);
    f->strings = strings ? bp_alloc(strings) : NULL;
    f->tensors = r->n_tensors ? bp_calloc((size_t)r->n_tensors, sizeof *f->tensors) : NULL;
    f->by_name = r->n_tensors ? bp_calloc((size_t)r->n_tensors, sizeof *f->by_name) : NULL;
    f->meta = r->n_meta ? bp_calloc((size_t)r->n_meta, sizeof *f->meta) : NULL;
    f->meta_by_key = r->n_meta ? bp_calloc((size_t)r->n_meta, sizeof *f->meta_by_key) : NULL;
    if (!f->name || (strings && !f->strings) ||
        (r->n_tensors && (!f->tensors || !f->by_name)) ||
        (r->n_meta && (!f->meta || !f->meta_by_key))) {
        bp_st_free(f);
        goto nomem;
    }
    memcpy(f->name, r->name, name_len);
    char *arena = f->strings;
    /* r->order is in data order here; the index of each entry in it is its handle index. */
    for (int i = 0; i < r->n_tensors; i++) {
        const entry *e = r->order[i];
        bp_st_tensor *t = &f->tensors[i];
        *t = (bp_st_tensor){.name = copy_string(&arena, e->name), .dtype = e->dtype,
                            .ndim = e->ndim, .data = data + e->slot,
                            .bytes = (size_t)(e->end - e->begin)};
        memcpy(t->shape, e->shape, sizeof t->shape);
        f->by_name[i] = i;
    }
    f->n_tensors = r->n_tensors;
    for (int i = 0; i < r->n_meta; i++) {
        f->meta[i].key = copy_string(&arena, r->meta[i].key);
        f->meta[i].value = copy_string(&arena, r->meta[i].value);
        /* by_key points into r->meta: its position there is the index here. */
        f->meta_by_key[i] = (int)(r->by_key[i] - r->meta);
    }
    f->n_meta = r->n_meta;
    /* Insertion sort of the name index: the data order is nearly the name order for the
     * layer-by-layer tables the library writes, and n is small. */
    for (int i = 1; i < f->n_tensors; i++) {
        int v = f->by_name[i], j = i;
        while (j > 0 && strcmp(f->tensors[f->by_name[j - 1]].name, f->tensors[v].name) > 0) {
            f->by_name[j] = f->by_name[j - 1];
            j--;
        }
        f->by_name[j] = v;
    }
    *out = f;
    return BP_OK;
nomem:
    bp_free(data);
    return bp_fail(BP_ENOMEM, "%s: no memory for the file's table", r->name);
}

/* The data section's CRCs, then the handle. Takes ownership of data. */
static bp_status finish(reader *r, unsigned char *data, bp_st_file **out)
{
    for (int i = 0; i < r->n_tensors; i++) {
        const entry *e = r->order[i];
        uint32_t crc = data_crc(data + e->slot, (size_t)(e->end - e->begin));
        if (crc != e->crc && !r->ignore_crcs) {
            bp_free(data);
            return bad(r, "tensor '%.*s': its bytes have CRC-32 %08x but %s%.*s says %08x (a "
                       "damaged file)", NAME_IN_MESSAGE, e->name, (unsigned)crc, CRC_PREFIX,
                       NAME_IN_MESSAGE, e->name, (unsigned)e->crc);
        }
    }
    return make_handle(r, data, out);
}

/* The data block: 64-byte aligned (bp_alloc), each tensor at a multiple of its dtype's size
 * within it. The format does not align the offsets themselves (an I64 tensor may follow an
 * odd number of F32 elements), so the block is the data section with at most 7 bytes of
 * padding before such a tensor; for files whose offsets are aligned, ours among them, it is
 * the data section exactly. At least one byte, so that every view is a real pointer. The
 * size is the file's own (proven equal to the offsets) plus that padding. */
static bp_status alloc_data(const reader *r, unsigned char **out)
{
    uint64_t at = 0;
    for (int i = 0; i < r->n_tensors; i++) {
        entry *e = r->order[i];
        uint64_t size = dtypes[e->dtype].size;
        e->slot = (at + size - 1) / size * size;
        at = e->slot + (e->end - e->begin);
    }
    bp_status st;
    if (at > CHECK_MEMORY_ABOVE && (st = bp_memory_check(at, "the data section")) != BP_OK)
        return bp_fail_context(st, "%s", r->name);
    if (at > SIZE_MAX || !(*out = bp_alloc(at ? (size_t)at : 1)))
        return bp_fail(BP_ENOMEM, "%s: cannot allocate %llu bytes for the data section",
                       r->name, (unsigned long long)at);
    return BP_OK;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = v << 8 | p[b];
    return v;
}

/* The length prefix against the cap and the file, before anything is allocated for it. */
static bp_status check_prefix(const char *name, const unsigned char *prefix,
                              uint64_t file_bytes, uint64_t *n)
{
    if (file_bytes < 8)
        return bp_fail(BP_EFORMAT, "%s: the file holds %llu byte%s, less than the 8-byte "
                       "header length", name, (unsigned long long)file_bytes,
                       bp_plural(file_bytes));
    *n = le64(prefix);
    if (*n > BP_ST_MAX_HEADER)
        return bp_fail(BP_EFORMAT, "%s: header length %llu is above the cap of %d bytes", name,
                       (unsigned long long)*n, BP_ST_MAX_HEADER);
    if (*n > file_bytes - 8)
        return bp_fail(BP_EFORMAT, "%s: header length %llu runs past the end of the file "
                       "(%llu bytes after the 8-byte length)", name, (unsigned long long)*n,
                       (unsigned long long)(file_bytes - 8));
    return BP_OK;
}

static bp_status read_memory(bp_st_file **out, const void *data, size_t n, const char *name,
                             int ignore_crcs);

bp_status bp_st_read_memory(bp_st_file **out, const void *data, size_t n, const char *name)
{
    return read_memory(out, data, n, name, 0);
}

bp_status bp_st_read_memory_ignoring_crcs(bp_st_file **out, const void *data, size_t n,
                                          const char *name)
{
    return read_memory(out, data, n, name, 1);
}

static bp_status read_memory(bp_st_file **out, const void *data, size_t n, const char *name,
                             int ignore_crcs)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_st_read_memory: out is NULL");
    *out = NULL;
    if (!name)
        name = "safetensors data";
    if (!data && n)
        return bp_fail(BP_EINVAL, "%s: bp_st_read_memory: data is NULL", name);
    const unsigned char *bytes = data;
    uint64_t header_len;
    bp_status st = check_prefix(name, bytes, n, &header_len);
    if (st != BP_OK)
        return st;
    reader r = {.name = name, .text = bytes + 8, .n = (size_t)header_len, .file_bytes = n,
                .ignore_crcs = ignore_crcs};
    unsigned char *block = NULL;
    if ((st = check_header(&r)) == BP_OK && (st = alloc_data(&r, &block)) == BP_OK) {
        const unsigned char *section = bytes + 8 + r.n;
        for (int i = 0; i < r.n_tensors; i++) {
            const entry *e = r.order[i];
            if (e->end > e->begin)
                memcpy(block + e->slot, section + e->begin, (size_t)(e->end - e->begin));
        }
        st = finish(&r, block, out);
    }
    reader_free(&r);
    return st;
}

/* read() until n bytes or the end of the file; *got < n only at the end. */
static bp_status read_fully(int fd, const char *path, unsigned char *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < IO_CHUNK ? n - *got : IO_CHUNK;
        ssize_t k = read(fd, buf + *got, want);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return bp_fail(BP_EIO, "%s: read failed: %s", path, strerror(errno));
        if (k == 0)
            break;
        *got += (size_t)k;
    }
    return BP_OK;
}

/* Exactly n bytes, else the file changed size under us: an I/O problem, since its length
 * was checked against the header. */
static bp_status read_exact(int fd, const char *path, unsigned char *buf, size_t n)
{
    size_t got;
    bp_status st = read_fully(fd, path, buf, n, &got);
    if (st == BP_OK && got < n)
        st = bp_fail(BP_EIO, "%s: the file shrank while it was read", path);
    return st;
}

static bp_status open_regular(const char *path, int *fd_out, uint64_t *size)
{
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer, perhaps forever;
     * non-blocking it opens at once and fstat refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        struct stat lst;
        if (err == ENOENT && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            return bp_fail(BP_EIO, "%s: cannot open: it is a dangling symbolic link", path);
        return bp_fail(BP_EIO, "%s: cannot open: %s", path, strerror(err));
    }
    struct stat sb;
    bp_status st = BP_OK;
    int flags;
    if (fstat(fd, &sb) != 0)
        st = bp_fail(BP_EIO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = bp_fail(BP_EIO, "%s: is %s, not a regular file", path, bp_file_kind(sb.st_mode));
    else if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
        st = bp_fail(BP_EIO, "%s: cannot clear O_NONBLOCK: %s", path, strerror(errno));
    if (st != BP_OK) {
        close(fd);
        return st;
    }
    *fd_out = fd;
    *size = (uint64_t)sb.st_size;
    return BP_OK;
}

bp_status bp_st_read(bp_st_file **out, const char *path)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_st_read: out is NULL");
    *out = NULL;
    if (!path)
        return bp_fail(BP_EINVAL, "bp_st_read: path is NULL");
    int fd = -1;
    uint64_t file_bytes = 0, header_len = 0;
    bp_status st = open_regular(path, &fd, &file_bytes);
    if (st != BP_OK)
        return st;
    unsigned char prefix[8] = {0};
    unsigned char *text = NULL, *block = NULL;
    reader r = {.name = path, .file_bytes = file_bytes};
    if (file_bytes >= 8 && (st = read_exact(fd, path, prefix, 8)) != BP_OK)
        goto done;
    if ((st = check_prefix(path, prefix, file_bytes, &header_len)) != BP_OK)
        goto done;
    r.n = (size_t)header_len;
    if (r.n && !(text = bp_alloc(r.n))) {
        st = bp_fail(BP_ENOMEM, "%s: cannot allocate %zu bytes for the header", path, r.n);
        goto done;
    }
    if (r.n && (st = read_exact(fd, path, text, r.n)) != BP_OK)
        goto done;
    r.text = text;
    if ((st = check_header(&r)) != BP_OK)
        goto done;
    if ((st = alloc_data(&r, &block)) != BP_OK)
        goto done;
    /* The ranges tile the section in data order, so reading them one after another reads it
     * whole, each into its place in the block. */
    for (int i = 0; i < r.n_tensors; i++) {
        const entry *e = r.order[i];
        if (e->end > e->begin &&
            (st = read_exact(fd, path, block + e->slot, (size_t)(e->end - e->begin))) != BP_OK)
            goto done;
    }
    unsigned char extra;
    size_t got;
    if ((st = read_fully(fd, path, &extra, 1, &got)) != BP_OK)
        goto done;
    if (got) {
        st = bp_fail(BP_EIO, "%s: the file grew while it was read", path);
        goto done;
    }
    st = finish(&r, block, out);
    block = NULL; /* finish owns it, succeeding or not */
done:
    bp_free(block);
    reader_free(&r);
    bp_free(text);
    close(fd);
    return st;
}

/* ---- the handle's getters ---------------------------------------------------------------- */

int bp_st_count(const bp_st_file *f) { return f ? f->n_tensors : 0; }

const bp_st_tensor *bp_st_at(const bp_st_file *f, int index)
{
    return f && index >= 0 && index < f->n_tensors ? &f->tensors[index] : NULL;
}

const bp_st_tensor *bp_st_find(const bp_st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    int lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const bp_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *bp_st_meta_get(const bp_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    int lo = 0, hi = f->n_meta;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const bp_st_meta *m = &f->meta[f->meta_by_key[mid]];
        int c = strcmp(m->key, key);
        if (c == 0)
            return m->value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int bp_st_meta_count(const bp_st_file *f) { return f ? f->n_meta : 0; }

const bp_st_meta *bp_st_meta_at(const bp_st_file *f, int index)
{
    return f && index >= 0 && index < f->n_meta ? &f->meta[index] : NULL;
}

const char *bp_st_name(const bp_st_file *f) { return f ? f->name : NULL; }
