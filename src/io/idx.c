/*
 * idx.c - the IDX reader: image files (magic 0x00000803, count x rows x cols unsigned bytes)
 * and label files (0x00000801, count unsigned bytes), raw or gzip, sizes big-endian.
 *
 * Every header field is checked before the payload is allocated. A raw file's length is known
 * from fstat, so the header must account for it exactly: a short file and trailing garbage are
 * both errors. A .gz file's decompressed length is unknown until it has been read, but deflate
 * cannot expand a byte to more than 1032, so the compressed size bounds what the header may
 * claim; within that bound the payload buffer grows only as data actually arrives, and a stream
 * that runs past its header is refused at its first extra byte. We drive inflate() ourselves
 * on a read() loop rather than use gzread: gzread ignores whatever follows the gzip stream,
 * and we must see it to refuse it as a raw file's trailing bytes are refused.
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
/* read() may return less than asked above 2 GiB and zlib counts in unsigned int: never ask for
 * more than this at once. */
#define IO_CHUNK ((size_t)1 << 30)
/* Compressed bytes read per read() call: fewer calls on a 10 MB file, little memory. */
#define GZ_IN_BYTES ((size_t)1 << 17)
/* Deflate's largest expansion: a 258-byte match coded in one bit of length and one of distance,
 * so 8 bits in give at most 4 * 258 = 1032 bytes out (zlib's technical notes, "Maximum
 * Compression Factor"). Gzip headers, trailers and further members only lower the ratio. */
#define DEFLATE_MAX_RATIO 1032

typedef struct idx_kind {
    uint32_t magic;
    int ndims;
    const char *noun;   /* "image": what a file of this kind is called */
    const char *a_noun; /* "an image", for messages */
    const char *item;   /* "image": what its count counts */
} idx_kind;

static const idx_kind image_kind = {IDX_MAGIC_IMAGES, 3, "image", "an image", "image"};
static const idx_kind label_kind = {IDX_MAGIC_LABELS, 1, "label", "a label", "label"};

typedef struct idx_file {
    const char *path;
    int fd;
    int gzip;             /* the file starts with gzip's magic; else plain bytes */
    long long file_bytes; /* st_size of the file on disk */
    /* gzip only */
    z_stream zs;
    int zs_ready;         /* inflateInit2 succeeded: inflateEnd owes */
    unsigned char *in;    /* GZ_IN_BYTES of compressed input; zs.next_in points into it */
    long long in_read;    /* compressed bytes read from fd so far */
    int in_eof;           /* read() has returned 0 */
    int done;             /* the last member ended and nothing follows it */
} idx_file;

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* zlib's state comes from the library's allocator, like every other buffer it owns. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return bp_calloc(items, size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    bp_free(p);
}

/* Name what a failed open() found, where "No such file" would mislead. */
static bp_status open_error(const char *path, int err)
{
    struct stat lst;
    if (err == ENOENT && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
        return bp_fail(BP_EIO, "%s: cannot open: it is a dangling symbolic link (its target "
                       "does not exist)", path);
    if (err == ELOOP)
        return bp_fail(BP_EIO, "%s: cannot open: a loop of symbolic links (%s)", path,
                       strerror(err));
    return bp_fail(BP_EIO, "%s: cannot open: %s", path, strerror(err));
}

static void idx_close(idx_file *f)
{
    if (f->zs_ready)
        inflateEnd(&f->zs);
    f->zs_ready = 0;
    bp_free(f->in);
    f->in = NULL;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

static bp_status idx_open(idx_file *f, const char *path)
{
    *f = (idx_file){.path = path, .fd = -1};
    /* O_NONBLOCK: opening a FIFO for reading blocks until a writer comes, which may be never.
     * Non-blocking, it opens at once and fstat below refuses it. */
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (f->fd < 0)
        return open_error(path, errno);
    bp_status st = BP_OK;
    struct stat sb;
    if (fstat(f->fd, &sb) != 0) {
        st = bp_fail(BP_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    /* Only a regular file has a length to check the header against. */
    if (!S_ISREG(sb.st_mode)) {
        st = bp_fail(BP_EIO, "%s: is %s, not a regular file", path, bp_file_kind(sb.st_mode));
        goto fail;
    }
    int flags = fcntl(f->fd, F_GETFL);
    if (flags < 0 || fcntl(f->fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        st = bp_fail(BP_EIO, "%s: cannot clear O_NONBLOCK: %s", path, strerror(errno));
        goto fail;
    }
    f->file_bytes = (long long)sb.st_size;

    /* pread, not read: the sniffed bytes stay in the stream for whichever reader follows. */
    unsigned char sig[2];
    ssize_t r;
    do
        r = pread(f->fd, sig, sizeof sig, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        st = bp_fail(BP_EIO, "%s: read failed: %s", path, strerror(errno));
        goto fail;
    }
    f->gzip = r == 2 && sig[0] == 0x1f && sig[1] == 0x8b;
    if (!f->gzip)
        return BP_OK;
    f->in = bp_alloc(GZ_IN_BYTES);
    if (!f->in) {
        st = bp_fail(BP_ENOMEM, "%s: cannot allocate the gzip input buffer", path);
        goto fail;
    }
    f->zs.zalloc = z_alloc;
    f->zs.zfree = z_free;
    f->zs.next_in = f->in;
    f->zs.avail_in = 0;
    /* 16 + MAX_WBITS: a gzip wrapper, not zlib's, with the largest window. */
    int z = inflateInit2(&f->zs, 16 + MAX_WBITS);
    if (z != Z_OK) {
        st = bp_fail(z == Z_MEM_ERROR ? BP_ENOMEM : BP_EIO, "%s: cannot start the zlib reader "
                     "(%s)", path, f->zs.msg ? f->zs.msg : zError(z));
        goto fail;
    }
    f->zs_ready = 1;
    return BP_OK;
fail:
    idx_close(f);
    return st;
}

/* read() until n bytes or the end of the file; *got < n only at the end. */
static bp_status fd_read(idx_file *f, unsigned char *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < IO_CHUNK ? n - *got : IO_CHUNK;
        ssize_t r = read(f->fd, buf + *got, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return bp_fail(BP_EIO, "%s: read failed: %s", f->path, strerror(errno));
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return BP_OK;
}

/* Top up the compressed input, keeping what inflate has not consumed yet at its front. */
static bp_status gz_refill(idx_file *f)
{
    if (f->zs.avail_in > 0 && f->zs.next_in != f->in)
        memmove(f->in, f->zs.next_in, f->zs.avail_in);
    f->zs.next_in = f->in;
    size_t got = 0;
    bp_status st = fd_read(f, f->in + f->zs.avail_in, GZ_IN_BYTES - f->zs.avail_in, &got);
    if (st != BP_OK)
        return st;
    f->in_eof = got == 0;
    f->zs.avail_in += (uInt)got;
    f->in_read += (long long)got;
    return BP_OK;
}

/* A gzip member has ended, its CRC and length checked by inflate. RFC 1952 lets members follow
 * one another: `gzip -c a b > c` is a valid file whose data is a then b, gzip -d reads it so,
 * and so do we. Anything else after a member is trailing data, refused as it is in a raw
 * file; zlib's gzread would have ignored it. */
static bp_status gz_after_member(idx_file *f)
{
    while (f->zs.avail_in < 2 && !f->in_eof) {
        bp_status st = gz_refill(f);
        if (st != BP_OK)
            return st;
    }
    if (f->zs.avail_in == 0) {
        f->done = 1;
        return BP_OK;
    }
    if (f->zs.avail_in >= 2 && f->zs.next_in[0] == 0x1f && f->zs.next_in[1] == 0x8b) {
        inflateReset(&f->zs);
        return BP_OK;
    }
    long long end = f->in_read - (long long)f->zs.avail_in;
    long long extra = f->file_bytes - end;
    if (extra < (long long)f->zs.avail_in) /* the file changed under us: say what we saw */
        extra = (long long)f->zs.avail_in;
    return bp_fail(BP_EFORMAT, "%s: %lld byte%s of trailing data after the gzip stream "
                   "(which ends at byte %lld of %lld)", f->path, extra,
                   bp_plural((unsigned long long)extra), end, f->file_bytes);
}

/* Inflate up to n bytes into buf; *got < n only at the end of the data. inflate writes into
 * buf directly and never more than n, so nothing is decompressed beyond what is asked for. */
static bp_status gz_read(idx_file *f, unsigned char *buf, size_t n, size_t *got)
{
    bp_status st;
    *got = 0;
    while (*got < n && !f->done) {
        if (f->zs.avail_in == 0 && !f->in_eof && (st = gz_refill(f)) != BP_OK)
            return st;
        size_t want = n - *got < IO_CHUNK ? n - *got : IO_CHUNK;
        f->zs.next_out = buf + *got;
        f->zs.avail_out = (uInt)want;
        int z = inflate(&f->zs, Z_NO_FLUSH);
        *got += want - f->zs.avail_out;
        switch (z) {
        case Z_OK:
            break;
        case Z_STREAM_END:
            if ((st = gz_after_member(f)) != BP_OK)
                return st;
            break;
        case Z_BUF_ERROR:
            /* No progress possible: only more input can help. */
            if (f->zs.avail_in == 0 && !f->in_eof)
                break;
            return bp_fail(BP_EFORMAT, "%s: gzip data ends before the end of its stream "
                           "(truncated file)", f->path);
        case Z_MEM_ERROR:
            return bp_fail(BP_ENOMEM, "%s: out of memory while decompressing", f->path);
        default: /* Z_DATA_ERROR, Z_NEED_DICT (gzip has no dictionary): the data is bad */
            return bp_fail(BP_EFORMAT, "%s: corrupt gzip data: %s", f->path,
                           f->zs.msg ? f->zs.msg : zError(z));
        }
        /* inflate consumed all the input it had and the file has no more, yet the member is
         * not over: cut short. */
        if (!f->done && f->zs.avail_in == 0 && f->in_eof && z != Z_STREAM_END &&
            f->zs.avail_out > 0)
            return bp_fail(BP_EFORMAT, "%s: gzip data ends before the end of its stream "
                           "(truncated file)", f->path);
    }
    return BP_OK;
}

/* Read up to n bytes of the file's data (decompressed, for gzip) into buf; *got < n only at
 * the end of the data. A read or decompression error is a failure, including a gzip stream
 * cut short and trailing bytes after it. */
static bp_status idx_read(idx_file *f, void *buf, size_t n, size_t *got)
{
    return f->gzip ? gz_read(f, buf, n, got) : fd_read(f, buf, n, got);
}

/* Say what is wrong with a magic number that is not the one wanted; kind NULL means either. */
static bp_status bad_magic(const idx_file *f, const idx_kind *kind, uint32_t magic)
{
    if (!kind) {
        unsigned type = magic >> 8 & 0xff, ndims = magic & 0xff;
        if (magic >> 16 != 0)
            return bp_fail(BP_EFORMAT, "%s: magic 0x%08x is not an IDX file (expected "
                           "0x%08x for images or 0x%08x for labels)", f->path, magic,
                           IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS);
        if (type != 0x08)
            return bp_fail(BP_EFORMAT, "%s: magic 0x%08x: element type 0x%02x is not supported "
                           "(expected 0x08: unsigned bytes)", f->path, magic, type);
        return bp_fail(BP_EFORMAT, "%s: magic 0x%08x: %u dimension%s is neither an image nor "
                       "a label file (expected 3 or 1)", f->path, magic, ndims, bp_plural(ndims));
    }
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
    return bp_fail(BP_EFORMAT, "%s: magic 0x%08x: %u dimension%s is not %s file (expected "
                   "0x%08x: %d dimension%s)", f->path, magic, (unsigned)(magic & 0xff),
                   bp_plural(magic & 0xff), kind->a_noun, kind->magic, kind->ndims,
                   bp_plural((unsigned)kind->ndims));
}

/* "60000 images of 28x28" or "1 label", for messages. */
static void describe(char *buf, size_t size, const idx_kind *kind, const uint32_t *dims)
{
    if (kind->ndims == 3)
        snprintf(buf, size, "%u image%s of %ux%u", dims[0], bp_plural(dims[0]), dims[1],
                 dims[2]);
    else
        snprintf(buf, size, "%u label%s", dims[0], bp_plural(dims[0]));
}

/* Read the magic, then the rest of the header of the kind it names (or that *kind demands:
 * then the magic must be that kind's). On success *kind is set and dims[] holds the sizes. */
static bp_status read_header(idx_file *f, const idx_kind **kind, uint32_t *dims,
                             size_t *header_bytes)
{
    unsigned char header[16];
    size_t got = 0, more = 0;
    bp_status st = idx_read(f, header, 4, &got);
    if (st != BP_OK)
        return st;
    uint32_t magic = got == 4 ? be32(header) : 0;
    /* The magic first, when there is one: "this is a label file" beats "too short". */
    if (got == 4 && !*kind) {
        if (magic == image_kind.magic)
            *kind = &image_kind;
        else if (magic == label_kind.magic)
            *kind = &label_kind;
    }
    if (got == 4 && (!*kind || magic != (*kind)->magic))
        return bad_magic(f, *kind, magic);
    /* Too short for a magic and no kind demanded: measure it against the smallest header. */
    const idx_kind *k = *kind ? *kind : &label_kind;
    *header_bytes = 4 + 4 * (size_t)k->ndims;
    if (got == 4 && (st = idx_read(f, header + 4, *header_bytes - 4, &more)) != BP_OK)
        return st;
    got += more;
    if (got < *header_bytes) {
        const char *what = *kind ? k->noun : "label or image";
        if (!f->gzip)
            return bp_fail(BP_EFORMAT, "%s: the file holds %lld byte%s, less than the %zu-byte "
                           "header of an IDX %s file", f->path, f->file_bytes,
                           bp_plural((unsigned long long)f->file_bytes), *header_bytes, what);
        return bp_fail(BP_EFORMAT, "%s: the decompressed data holds %zu byte%s, less than "
                       "the %zu-byte header of an IDX %s file", f->path, got, bp_plural(got),
                       *header_bytes, what);
    }
    for (int d = 0; d < k->ndims; d++)
        dims[d] = be32(header + 4 + 4 * d);
    return BP_OK;
}

/* Check the header fields against the limits and, for a raw file, against its length; for a
 * gzip file, against the most its compressed size can decompress to. On success *payload is
 * the number of bytes after the header. */
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
        return bp_fail(BP_EFORMAT, "%s: header field count = 0: the file holds no %ss",
                       f->path, kind->item);
    uint64_t bytes = dims[0];
    for (int d = 1; d < kind->ndims; d++)
        bytes *= dims[d];
    /* A raw file's length is the strongest check and makes the best message, so it comes
     * before the limits. */
    if (!f->gzip) {
        unsigned long long want = header_bytes + bytes;
        if ((long long)want != f->file_bytes) {
            long long extra = f->file_bytes - (long long)want;
            char tail[64] = "";
            if (extra > 0)
                snprintf(tail, sizeof tail, " (%lld byte%s of trailing data)", extra,
                         bp_plural((unsigned long long)extra));
            return bp_fail(BP_EFORMAT, "%s: header says %s (%zu + %llu bytes) but the file "
                           "holds %lld byte%s%s", f->path, what, header_bytes,
                           (unsigned long long)bytes, f->file_bytes,
                           bp_plural((unsigned long long)f->file_bytes), tail);
        }
    }
    if (dims[0] > BP_IDX_MAX_COUNT)
        return bp_fail(BP_EFORMAT, "%s: header field count = %u is above the limit of %llu %ss",
                       f->path, dims[0], (unsigned long long)BP_IDX_MAX_COUNT, kind->item);
    if (bytes > BP_IDX_MAX_BYTES)
        return bp_fail(BP_EFORMAT, "%s: header says %s (%llu bytes), above the limit of %llu "
                       "bytes", f->path, what, (unsigned long long)bytes,
                       (unsigned long long)BP_IDX_MAX_BYTES);
    /* A gzip bomb's header is refuted by the file's size alone, before a byte is inflated.
     * file_bytes <= 2^63 / 1032 for any file that exists, so the product fits. */
    if (f->gzip) {
        unsigned long long most = (unsigned long long)f->file_bytes * DEFLATE_MAX_RATIO;
        if (header_bytes + bytes > most)
            return bp_fail(BP_EFORMAT, "%s: header says %s (%zu + %llu bytes), more than %lld "
                           "bytes of gzip data can hold (deflate expands at most %d-fold: "
                           "%llu bytes)", f->path, what, header_bytes,
                           (unsigned long long)bytes, f->file_bytes, DEFLATE_MAX_RATIO, most);
    }
    *payload = bytes;
    return BP_OK;
}

/* Hold an image header to what the caller expects of it. */
static bp_status check_want(const idx_file *f, const uint32_t *dims, const bp_idx_want *want)
{
    char what[96];
    describe(what, sizeof what, &image_kind, dims);
    if (want->count && dims[0] != want->count)
        return bp_fail(BP_EFORMAT, "%s holds %s but %s holds %zu label%s", f->path, what,
                       want->count_path ? want->count_path : "the label file", want->count,
                       bp_plural(want->count));
    if ((want->rows && dims[1] != (uint32_t)want->rows) ||
        (want->cols && dims[2] != (uint32_t)want->cols)) {
        char expected[48];
        if (want->rows && want->cols)
            snprintf(expected, sizeof expected, "%dx%d", want->rows, want->cols);
        else if (want->rows)
            snprintf(expected, sizeof expected, "%d row%s", want->rows, bp_plural(want->rows));
        else
            snprintf(expected, sizeof expected, "%d column%s", want->cols,
                     bp_plural(want->cols));
        return bp_fail(BP_EFORMAT, "%s: header says images of %ux%u, expected %s", f->path,
                       dims[1], dims[2], expected);
    }
    unsigned long long dim = (unsigned long long)dims[1] * dims[2];
    if (want->dim && dim != (unsigned long long)want->dim)
        return bp_fail(BP_EFORMAT, "%s: header says images of %ux%u (%llu input%s each), "
                       "expected %d input%s", f->path, dims[1], dims[2], dim, bp_plural(dim),
                       want->dim, bp_plural(want->dim));
    return BP_OK;
}

/* Read exactly `payload` bytes and then require the end of the data. For a raw file the length
 * is already proven, so the buffer is allocated once; for gzip it doubles as data arrives. */
static bp_status read_payload(idx_file *f, const idx_kind *kind, const uint32_t *dims,
                              size_t header_bytes, size_t payload, uint8_t **out)
{
    size_t cap = !f->gzip || payload < GZ_FIRST_CHUNK ? payload : GZ_FIRST_CHUNK;
    size_t have = 0, got = 0;
    uint8_t *buf = bp_alloc(cap);
    if (!buf)
        return bp_fail(BP_ENOMEM, "%s: cannot allocate %zu bytes for the %ss", f->path, cap,
                       kind->item);
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
            st = bp_fail(BP_ENOMEM, "%s: cannot allocate %zu bytes for the %ss", f->path, next,
                         kind->item);
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
        st = bp_fail(f->gzip ? BP_EFORMAT : BP_EIO, "%s: header says %s (%zu + %zu bytes) but "
                     "the %s holds %zu bytes", f->path, what, header_bytes, payload,
                     f->gzip ? "decompressed data" : "file now", header_bytes + have);
        goto fail;
    }
    /* One byte more: for gzip this also makes inflate check the member's CRC and length and
     * look at what follows it. */
    unsigned char extra;
    if ((st = idx_read(f, &extra, 1, &got)) != BP_OK)
        goto fail;
    if (got != 0) {
        st = bp_fail(f->gzip ? BP_EFORMAT : BP_EIO, "%s: header says %s (%zu + %zu bytes) but "
                     "the %s runs past that (trailing data)", f->path, what, header_bytes,
                     payload, f->gzip ? "decompressed data" : "file (growing while read)");
        goto fail;
    }
    *out = buf;
    return BP_OK;
fail:
    bp_free(buf);
    return st;
}

/* Open path, read and check its header (of kind *kind, or either kind when *kind is NULL). On
 * success the file is open, positioned at the payload, and the caller closes it. */
static bp_status open_checked(idx_file *f, const char *path, const idx_kind **kind,
                              uint32_t *dims, size_t *header_bytes, uint64_t *payload)
{
    bp_status st = idx_open(f, path);
    if (st != BP_OK)
        return st;
    if ((st = read_header(f, kind, dims, header_bytes)) != BP_OK ||
        (st = check_header(f, *kind, dims, *header_bytes, payload)) != BP_OK)
        idx_close(f);
    return st;
}

static bp_status idx_read_kind(const char *path, const idx_kind *kind, const bp_idx_want *want,
                               uint8_t **out, uint32_t *dims)
{
    if (!path || !out)
        return bp_fail(BP_EINVAL, "IDX %s file: NULL argument", kind->noun);
    *out = NULL;
    idx_file f;
    size_t header_bytes = 0;
    uint64_t payload = 0;
    bp_status st = open_checked(&f, path, &kind, dims, &header_bytes, &payload);
    if (st != BP_OK)
        return st;
    if (!want || (st = check_want(&f, dims, want)) == BP_OK)
        st = read_payload(&f, kind, dims, header_bytes, (size_t)payload, out);
    idx_close(&f);
    return st;
}

bp_status bp_idx_read_images_want(const char *path, const bp_idx_want *want, uint8_t **pixels,
                                  bp_idx_info *info)
{
    if (!info)
        return bp_fail(BP_EINVAL, "bp_idx_read_images_want: info is NULL");
    *info = (bp_idx_info){0};
    uint32_t dims[3];
    bp_status st = idx_read_kind(path, &image_kind, want, pixels, dims);
    if (st != BP_OK)
        return st;
    *info = (bp_idx_info){.magic = IDX_MAGIC_IMAGES, .count = dims[0], .rows = (int)dims[1],
                          .cols = (int)dims[2]};
    return BP_OK;
}

bp_status bp_idx_read_images(const char *path, uint8_t **pixels, size_t *count, int *rows,
                             int *cols)
{
    if (!count || !rows || !cols)
        return bp_fail(BP_EINVAL, "bp_idx_read_images: NULL output");
    bp_idx_info info;
    bp_status st = bp_idx_read_images_want(path, NULL, pixels, &info);
    if (st != BP_OK)
        return st;
    *count = info.count;
    *rows = info.rows;
    *cols = info.cols;
    return BP_OK;
}

bp_status bp_idx_read_labels(const char *path, uint8_t **labels, size_t *count)
{
    if (!count)
        return bp_fail(BP_EINVAL, "bp_idx_read_labels: NULL output");
    uint32_t dims[1];
    bp_status st = idx_read_kind(path, &label_kind, NULL, labels, dims);
    if (st != BP_OK)
        return st;
    *count = dims[0];
    return BP_OK;
}

bp_status bp_idx_info_read(const char *path, bp_idx_info *out)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_idx_info_read: out is NULL");
    *out = (bp_idx_info){0};
    if (!path)
        return bp_fail(BP_EINVAL, "bp_idx_info_read: path is NULL");
    idx_file f;
    const idx_kind *kind = NULL;
    uint32_t dims[3] = {0, 0, 0};
    size_t header_bytes = 0;
    uint64_t payload = 0;
    bp_status st = open_checked(&f, path, &kind, dims, &header_bytes, &payload);
    if (st != BP_OK)
        return st;
    idx_close(&f);
    *out = (bp_idx_info){.magic = kind->magic, .count = dims[0], .rows = (int)dims[1],
                         .cols = (int)dims[2]};
    return BP_OK;
}
