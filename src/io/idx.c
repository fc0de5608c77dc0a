/*
 * idx.c - the IDX reader: image files (magic 0x00000803, count x rows x cols unsigned bytes)
 * and label files (0x00000801, count unsigned bytes), raw or gzip, sizes big-endian.
 *
 * Every header field is checked before the payload is allocated. A raw file's length is known
 * from fstat, so the header must account for it exactly: a short file and trailing garbage are
 * both errors. A .gz file's decompressed length is unknown until it has been read, so there the
 * header is held to sane limits and the payload buffer grows only as data actually arrives: a
 * lying header cannot make us allocate much more than the file really decompresses to.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/core.h"
#include "io/io.h"

#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u

/* The first chunk of a .gz payload; doubling from here costs about one extra copy of the data. */
#define GZ_FIRST_CHUNK ((size_t)1 << 20)
/* gzread takes an unsigned int and returns an int: never ask it for more than this at once. */
#define READ_CHUNK ((size_t)1 << 30)

typedef struct idx_kind {
    uint32_t magic;
    int ndims;
    const char *noun;   /* "image": what a file of this kind is called */
    const char *a_noun; /* "an image", for messages */
    const char *items;  /* "images": what its count counts */
} idx_kind;

static const idx_kind image_kind = {IDX_MAGIC_IMAGES, 3, "image", "an image", "images"};
static const idx_kind label_kind = {IDX_MAGIC_LABELS, 1, "label", "a label", "labels"};

typedef struct idx_file {
    const char *path;
    gzFile gz;
    int raw;              /* gzip found no gzip header: plain bytes, whose length we know */
    long long file_bytes; /* st_size of the file on disk */
} idx_file;

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static bp_status idx_open(idx_file *f, const char *path)
{
    *f = (idx_file){.path = path};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bp_fail(BP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return bp_fail(BP_EIO, "%s: cannot stat: %s", path, strerror(err));
    }
    /* A directory or a FIFO has no length to check the header against. */
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bp_fail(BP_EIO, "%s: not a regular file", path);
    }
    f->file_bytes = (long long)st.st_size;
    /* gzdopen rather than gzopen: the same descriptor we measured is the one we read. */
    f->gz = gzdopen(fd, "rb");
    if (!f->gz) {
        close(fd);
        return bp_fail(BP_ENOMEM, "%s: cannot allocate the zlib reader", path);
    }
    /* Larger than zlib's 8 KiB default: fewer read calls on a 47 MB file. */
    gzbuffer(f->gz, 1u << 17);
    return BP_OK;
}

static void idx_close(idx_file *f)
{
    if (f->gz)
        gzclose_r(f->gz);
    f->gz = NULL;
}

/* Turn zlib's error state into a status. Call only when gzerror reports an error. */
static bp_status idx_stream_error(const idx_file *f)
{
    int saved_errno = errno;
    int err = Z_OK;
    const char *msg = gzerror(f->gz, &err);
    /* zlib prefixes its message with the name it was given, "<fd:3>", which means nothing to
     * the reader of ours: drop it, we name the file ourselves. */
    if (msg && strncmp(msg, "<fd:", 4) == 0 && strstr(msg, ": "))
        msg = strstr(msg, ": ") + 2;
    switch (err) {
    case Z_ERRNO:
        return bp_fail(BP_EIO, "%s: read failed: %s", f->path, strerror(saved_errno));
    case Z_MEM_ERROR:
        return bp_fail(BP_ENOMEM, "%s: out of memory while decompressing", f->path);
    case Z_BUF_ERROR:
        /* zlib's "unexpected end of file": the compressed stream stops mid-way. */
        return bp_fail(BP_EFORMAT, "%s: gzip data ends before the end of its stream "
                                   "(truncated file)", f->path);
    case Z_DATA_ERROR:
        return bp_fail(BP_EFORMAT, "%s: corrupt gzip data: %s", f->path, msg ? msg : "");
    default:
        return bp_fail(BP_EIO, "%s: read failed: %s", f->path, msg ? msg : "");
    }
}

/* Read up to n bytes into buf; *got < n only at the end of the data. A read or decompression
 * error is a failure, including the short count zlib gives for a truncated gzip stream. */
static bp_status idx_read(idx_file *f, void *buf, size_t n, size_t *got)
{
    unsigned char *p = buf;
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < READ_CHUNK ? n - *got : READ_CHUNK;
        int r = gzread(f->gz, p + *got, (unsigned)want);
        if (r < 0)
            return idx_stream_error(f);
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    int err = Z_OK;
    gzerror(f->gz, &err);
    if (err != Z_OK)
        return idx_stream_error(f);
    return BP_OK;
}

/* Say what is wrong with a magic number that is not the one wanted. */
static bp_status bad_magic(const idx_file *f, const idx_kind *kind, uint32_t magic)
{
    const idx_kind *other = kind == &image_kind ? &label_kind : &image_kind;
    if (magic == other->magic)
        return bp_fail(BP_EFORMAT, "%s: magic 0x%08x is not %s file (expected 0x%08x; this "
                       "is an IDX %s file)", f->path, magic, kind->a_noun, kind->magic,
                       other->noun);
    if (magic >> 16 != 0)
        return bp_fail(BP_EFORMAT, "%s: magic 0x%08x is not an IDX file (expected 0x%08x)",
                       f->path, magic, kind->magic);
    if ((magic >> 8 & 0xff) != 0x08)
        return bp_fail(BP_EFORMAT, "%s: magic 0x%08x: element type 0x%02x is not supported "
                       "(expected 0x%08x: unsigned bytes)", f->path, magic,
                       (unsigned)(magic >> 8 & 0xff), kind->magic);
    return bp_fail(BP_EFORMAT, "%s: magic 0x%08x: %u dimensions is not %s file (expected "
                   "0x%08x: %d dimensions)", f->path, magic, (unsigned)(magic & 0xff),
                   kind->a_noun, kind->magic, kind->ndims);
}

/* "60000 images of 28x28" or "60000 labels", for messages. */
static void describe(char *buf, size_t size, const idx_kind *kind, const uint32_t *dims)
{
    if (kind->ndims == 3)
        snprintf(buf, size, "%u images of %ux%u", dims[0], dims[1], dims[2]);
    else
        snprintf(buf, size, "%u labels", dims[0]);
}

/* Check the header fields against the limits and, for a raw file, against its length.
 * On success *payload is the number of bytes after the header. */
static bp_status check_header(const idx_file *f, const idx_kind *kind, const uint32_t *dims,
                              size_t header_bytes, uint64_t *payload)
{
    char what[96];
    describe(what, sizeof what, kind, dims);
    if (kind->ndims == 3) {
        /* Checked first: they keep count * rows * cols within 64 bits. */
        static const char *const side_name[3] = {"count", "rows", "cols"};
        for (int d = 1; d < 3; d++)
            if (dims[d] == 0 || dims[d] > BP_IDX_MAX_SIDE)
                return bp_fail(BP_EFORMAT, "%s: header field %s = %u is out of range "
                               "(1..%d)", f->path, side_name[d], dims[d], BP_IDX_MAX_SIDE);
    }
    if (dims[0] == 0)
        return bp_fail(BP_EFORMAT, "%s: header field count = 0: the file holds no %s", f->path,
                       kind->items);
    uint64_t bytes = dims[0];
    for (int d = 1; d < kind->ndims; d++)
        bytes *= dims[d];
    /* A raw file's length is the strongest check and makes the best message, so it comes
     * before the limits. */
    if (f->raw) {
        unsigned long long want = header_bytes + bytes;
        if ((long long)want != f->file_bytes) {
            long long extra = f->file_bytes - (long long)want;
            char tail[64] = "";
            if (extra > 0)
                snprintf(tail, sizeof tail, " (%lld bytes of trailing data)", extra);
            return bp_fail(BP_EFORMAT, "%s: header says %s (%zu + %llu bytes) but the file "
                           "holds %lld bytes%s", f->path, what, header_bytes,
                           (unsigned long long)bytes, f->file_bytes, tail);
        }
    }
    if (dims[0] > BP_IDX_MAX_COUNT)
        return bp_fail(BP_EFORMAT, "%s: header field count = %u is above the limit of %llu %s",
                       f->path, dims[0], (unsigned long long)BP_IDX_MAX_COUNT, kind->items);
    if (bytes > BP_IDX_MAX_BYTES)
        return bp_fail(BP_EFORMAT, "%s: header says %s (%llu bytes), above the limit of %llu "
                       "bytes", f->path, what, (unsigned long long)bytes,
                       (unsigned long long)BP_IDX_MAX_BYTES);
    *payload = bytes;
    return BP_OK;
}

/* Read exactly `payload` bytes and then require the end of the data. For a raw file the length
 * is already proven, so the buffer is allocated once; for gzip it doubles as data arrives. */
static bp_status read_payload(idx_file *f, const idx_kind *kind, const uint32_t *dims,
                              size_t header_bytes, size_t payload, uint8_t **out)
{
    size_t cap = f->raw || payload < GZ_FIRST_CHUNK ? payload : GZ_FIRST_CHUNK;
    size_t have = 0, got = 0;
    uint8_t *buf = bp_alloc(cap);
    if (!buf)
        return bp_fail(BP_ENOMEM, "%s: cannot allocate %zu bytes for the %s", f->path, cap,
                       kind->items);
    bp_status st;
    for (;;) {
        if ((st = idx_read(f, buf + have, cap - have, &got)) != BP_OK)
            goto fail;
        have += got;
        if (have < cap || have == payload)
            break; /* end of data, or all of it */
        size_t next = cap <= payload / 2 ? cap * 2 : payload;
        uint8_t *grown = bp_alloc(next);
        if (!grown) {
            st = bp_fail(BP_ENOMEM, "%s: cannot allocate %zu bytes for the %s", f->path, next,
                         kind->items);
            goto fail;
        }
        memcpy(grown, buf, have);
        bp_free(buf);
        buf = grown;
        cap = next;
    }
    char what[96];
    describe(what, sizeof what, kind, dims);
    if (have < payload) {
        /* A gzip file whose header lies. A raw file gets here only if it shrank while we read
         * it (its length was checked): an I/O problem rather than a format one. */
        st = bp_fail(f->raw ? BP_EIO : BP_EFORMAT, "%s: header says %s (%zu + %zu bytes) but "
                     "the %s holds %zu bytes", f->path, what, header_bytes, payload,
                     f->raw ? "file now" : "decompressed data", header_bytes + have);
        goto fail;
    }
    unsigned char extra;
    if ((st = idx_read(f, &extra, 1, &got)) != BP_OK)
        goto fail;
    if (got != 0) {
        st = bp_fail(f->raw ? BP_EIO : BP_EFORMAT, "%s: header says %s (%zu + %zu bytes) but "
                     "the %s runs past that (trailing data)", f->path, what, header_bytes,
                     payload, f->raw ? "file (growing while read)" : "decompressed data");
        goto fail;
    }
    *out = buf;
    return BP_OK;
fail:
    bp_free(buf);
    return st;
}

static bp_status idx_read_kind(const char *path, const idx_kind *kind, uint8_t **out,
                               uint32_t *dims)
{
    if (!path || !out)
        return bp_fail(BP_EINVAL, "IDX %s file: NULL argument", kind->noun);
    *out = NULL;
    idx_file f;
    bp_status st = idx_open(&f, path);
    if (st != BP_OK)
        return st;

    unsigned char header[16];
    size_t header_bytes = 4 + 4 * (size_t)kind->ndims, got = 0;
    if ((st = idx_read(&f, header, header_bytes, &got)) != BP_OK)
        goto done;
    /* Only known once zlib has looked at the first bytes. */
    f.raw = gzdirect(f.gz);
    /* The magic first, when there is one: "this is a label file" beats "too short". */
    if (got >= 4 && be32(header) != kind->magic) {
        st = bad_magic(&f, kind, be32(header));
        goto done;
    }
    if (got < header_bytes) {
        if (f.raw)
            st = bp_fail(BP_EFORMAT, "%s: the file holds %lld bytes, less than the %zu-byte "
                         "header of an IDX %s file", path, f.file_bytes, header_bytes,
                         kind->noun);
        else
            st = bp_fail(BP_EFORMAT, "%s: the decompressed data holds %zu bytes, less than "
                         "the %zu-byte header of an IDX %s file", path, got, header_bytes,
                         kind->noun);
        goto done;
    }
    for (int d = 0; d < kind->ndims; d++)
        dims[d] = be32(header + 4 + 4 * d);

    uint64_t payload = 0;
    if ((st = check_header(&f, kind, dims, header_bytes, &payload)) != BP_OK)
        goto done;
    st = read_payload(&f, kind, dims, header_bytes, (size_t)payload, out);
done:
    idx_close(&f);
    return st;
}

bp_status bp_idx_read_images(const char *path, uint8_t **pixels, size_t *count, int *rows,
                             int *cols)
{
    if (!count || !rows || !cols)
        return bp_fail(BP_EINVAL, "bp_idx_read_images: NULL output");
    uint32_t dims[3];
    bp_status st = idx_read_kind(path, &image_kind, pixels, dims);
    if (st != BP_OK)
        return st;
    *count = dims[0];
    *rows = (int)dims[1];
    *cols = (int)dims[2];
    return BP_OK;
}

bp_status bp_idx_read_labels(const char *path, uint8_t **labels, size_t *count)
{
    if (!count)
        return bp_fail(BP_EINVAL, "bp_idx_read_labels: NULL output");
    uint32_t dims[1];
    bp_status st = idx_read_kind(path, &label_kind, labels, dims);
    if (st != BP_OK)
        return st;
    *count = dims[0];
    return BP_OK;
}
