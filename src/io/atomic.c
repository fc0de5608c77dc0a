/*
 * atomic.c - the library's one way to replace a file: a reader of the target sees the old
 * contents or the new ones, never a mixture, a truncated file or a file that is not there.
 *
 * The data goes to a temporary file created beside the target (rename is atomic only within a
 * file system), under a random name with O_CREAT|O_EXCL|O_NOFOLLOW, so nobody can plant a
 * symbolic link or a FIFO where it will be written: the predictable FILE.tmp is exactly such a
 * trap. It is written whole, fsync'ed, renamed over the target and the folder is fsync'ed, so
 * after a crash the target holds one version or the other. Every failure removes the temporary
 * file before it returns.
 *
 * The folder is opened once and every later step names files relative to that descriptor: if
 * the folder is renamed or replaced meanwhile, the temporary file and the rename still land in
 * the folder whose target was checked.
 *
 * A target that exists must be a regular file. Anything else (a device such as /dev/null, a
 * FIFO, a directory, a symbolic link) is refused and named: rename would replace the node
 * itself, which for /dev/null as root breaks the machine, and for a link silently turns it into
 * a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "io/io.h"

/* The temporary name keeps this much of the target's name, so it stays under NAME_MAX and a
 * person looking at a leftover after a crash can tell what it was for. */
#define TMP_STEM_MAX 128
#define TMP_RANDOM 12
/* Collisions are astronomically unlikely with 71 random bits; a few retries cover a hostile
 * folder filled with guesses, or a failing random source that repeats itself. */
#define TMP_ATTEMPTS 32

struct bp_file_writer {
    int dir_fd;         /* the target's folder */
    int fd;             /* the temporary file; -1 once closed */
    bp_status failed;   /* BP_OK, or the failure that already removed the temporary file */
    char failure[256];  /* its message, repeated by later calls on the handle */
    char *path;         /* the target as the caller named it, for messages */
    const char *base;   /* its last component, inside path */
    char tmp[TMP_STEM_MAX + TMP_RANDOM + 16];
};

/* The target split into its folder (opened) and its name in that folder. */
typedef struct target {
    int dir_fd;
    char dir[PATH_MAX];
    const char *base;   /* points into the caller's path */
    int exists;
    struct stat st;     /* of the target, without following a link; valid if exists */
} target;

/* "a FIFO", "a symbolic link": what a file is, for messages that refuse it (io.h). */
const char *bp_file_kind(unsigned int st_mode)
{
    mode_t mode = (mode_t)st_mode;
    if (S_ISREG(mode))
        return "a regular file";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISLNK(mode))
        return "a symbolic link";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    return "of an unknown kind";
}

/* Opens the folder of path and looks at what is at path now. */
static bp_status target_open(target *t, const char *path)
{
    t->dir_fd = -1;
    if (!path || !*path)
        return bp_fail(BP_EINVAL, "atomic write: empty file name");
    const char *slash = strrchr(path, '/');
    t->base = slash ? slash + 1 : path;
    if (*t->base == '\0')
        return bp_fail(BP_EINVAL, "'%s' ends in '/': it names a directory, not a file", path);
    if (strcmp(t->base, ".") == 0 || strcmp(t->base, "..") == 0)
        return bp_fail(BP_EIO, "'%s' is a directory, not a regular file: refusing to replace "
                       "it", path);
    size_t dir_len = slash ? (size_t)(slash - path) : 1;
    if (dir_len >= sizeof t->dir)
        return bp_fail(BP_EINVAL, "'%s': the directory name is too long", path);
    if (!slash)
        memcpy(t->dir, ".", 2);
    else if (dir_len == 0)
        memcpy(t->dir, "/", 2);
    else {
        memcpy(t->dir, path, dir_len);
        t->dir[dir_len] = '\0';
    }

    t->dir_fd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->dir_fd < 0) {
        int err = errno;
        struct stat st;
        if (err == ENOENT)
            return bp_fail(BP_EIO, "'%s': directory '%s' does not exist", path, t->dir);
        if (err == ENOTDIR && stat(t->dir, &st) == 0)
            return bp_fail(BP_EIO, "'%s': '%s' is %s, not a directory", path, t->dir,
                           bp_file_kind(st.st_mode));
        return bp_fail(BP_EIO, "'%s': cannot open directory '%s': %s", path, t->dir,
                       strerror(err));
    }

    if (fstatat(t->dir_fd, t->base, &t->st, AT_SYMLINK_NOFOLLOW) == 0) {
        t->exists = 1;
    } else if (errno == ENOENT) {
        t->exists = 0;
    } else {
        int err = errno;
        close(t->dir_fd);
        t->dir_fd = -1;
        return bp_fail(BP_EIO, "'%s': cannot stat: %s", path, strerror(err));
    }
    if (t->exists && !S_ISREG(t->st.st_mode)) {
        char to[PATH_MAX] = "";
        if (S_ISLNK(t->st.st_mode)) {
            ssize_t n = readlinkat(t->dir_fd, t->base, to, sizeof to - 1);
            to[n > 0 ? n : 0] = '\0';
        }
        close(t->dir_fd);
        t->dir_fd = -1;
        if (to[0])
            return bp_fail(BP_EIO, "'%s' is a symbolic link (to '%s'), not a regular file: "
                           "refusing to replace it", path, to);
        return bp_fail(BP_EIO, "'%s' is %s, not a regular file: refusing to replace it", path,
                       bp_file_kind(t->st.st_mode));
    }
    return BP_OK;
}

/* Random bits for the temporary name. The name's safety comes from O_EXCL, not from the
 * randomness, so if the kernel's source fails the clock and a counter still give names that
 * differ between attempts. */
static void random_name(char *out, size_t n)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static _Thread_local uint64_t counter;
    unsigned char bytes[TMP_RANDOM];
    if (n > sizeof bytes)
        n = sizeof bytes;
    if (getrandom(bytes, n, GRND_NONBLOCK) != (ssize_t)n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        bp_rng rng;
        bp_rng_seed(&rng, (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^
                              (uint64_t)getpid() << 44 ^ ++counter);
        for (size_t i = 0; i < n; i++)
            bytes[i] = (unsigned char)bp_rng_next(&rng);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[bytes[i] % (sizeof alphabet - 1)];
    out[n] = '\0';
}

/* Creates ".STEM.tmp-RANDOM" in the target's folder; name receives it. Returns the descriptor,
 * or -1 with errno set. */
static int create_temp(const target *t, char *name, size_t size)
{
    char rnd[TMP_RANDOM + 1];
    int stem = (int)strnlen(t->base, TMP_STEM_MAX);
    for (int attempt = 0; attempt < TMP_ATTEMPTS; attempt++) {
        random_name(rnd, TMP_RANDOM);
        snprintf(name, size, ".%.*s.tmp-%s", stem, t->base, rnd);
        int fd = openat(t->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Writes all n bytes, through short writes and interrupted calls. Returns 0 or an errno. */
static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        size_t chunk = n < (size_t)SSIZE_MAX ? n : (size_t)SSIZE_MAX;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0) /* POSIX allows it for a regular file only at a limit it does not name */
            return EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* In a sticky directory (/tmp) only the owner of a file, or of the directory, may rename over
 * it; the probe in bp_file_check_replaceable cannot find that out without doing it. A
 * privileged process may anyway, and without a portable way to ask for CAP_FOWNER, root is
 * given the benefit of the doubt. */
static bp_status check_sticky(const target *t, const char *path)
{
    struct stat dir;
    if (!t->exists || fstat(t->dir_fd, &dir) != 0 || !(dir.st_mode & S_ISVTX))
        return BP_OK;
    uid_t me = geteuid();
    if (me == 0 || t->st.st_uid == me || dir.st_uid == me)
        return BP_OK;
    return bp_fail(BP_EIO, "'%s' belongs to user %u in the sticky directory '%s': it cannot "
                   "be replaced", path, (unsigned)t->st.st_uid, t->dir);
}

bp_status bp_file_check_replaceable(const char *path)
{
    target t;
    bp_status st = target_open(&t, path);
    if (st != BP_OK)
        return st;
    if ((st = check_sticky(&t, path)) != BP_OK) {
        close(t.dir_fd);
        return st;
    }
    /* Permissions, a read-only mount, an exhausted quota or inode table: the only reliable
     * test is to do it. One byte too, since a full disk may still create an empty file. */
    char name[TMP_STEM_MAX + TMP_RANDOM + 16];
    int fd = create_temp(&t, name, sizeof name);
    if (fd < 0) {
        int err = errno;
        close(t.dir_fd);
        return bp_fail(BP_EIO, "'%s': cannot create a file in directory '%s': %s", path, t.dir,
                       strerror(err));
    }
    int err = write_all(fd, (const unsigned char *)"", 1);
    close(fd);
    unlinkat(t.dir_fd, name, 0);
    close(t.dir_fd);
    if (err)
        return bp_fail(BP_EIO, "'%s': cannot write a file in directory '%s': %s", path, t.dir,
                       strerror(err));
    return BP_OK;
}

/* Removes the temporary file and closes it; the handle stays allocated, marked failed. */
static bp_status writer_discard(bp_file_writer *w, bp_status st)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->tmp[0])
        unlinkat(w->dir_fd, w->tmp, 0);
    w->tmp[0] = '\0';
    w->failed = st;
    snprintf(w->failure, sizeof w->failure, "%s", bp_last_error());
    return st;
}

static void writer_free(bp_file_writer *w)
{
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    bp_free(w->path);
    bp_free(w);
}

bp_status bp_file_writer_open(bp_file_writer **out, const char *path)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_file_writer_open: out is NULL");
    *out = NULL;
    target t;
    bp_status st = target_open(&t, path);
    if (st != BP_OK)
        return st;
    size_t len = strlen(path);
    bp_file_writer *w = bp_calloc(1, sizeof *w);
    char *copy = bp_alloc(len + 1);
    if (!w || !copy) {
        bp_free(w);
        bp_free(copy);
        close(t.dir_fd);
        return bp_fail(BP_ENOMEM, "'%s': out of memory", path);
    }
    memcpy(copy, path, len + 1);
    w->dir_fd = t.dir_fd;
    w->path = copy;
    w->base = copy + (t.base - path);
    w->fd = create_temp(&t, w->tmp, sizeof w->tmp);
    if (w->fd < 0) {
        int err = errno;
        w->tmp[0] = '\0';
        st = bp_fail(BP_EIO, "'%s': cannot create a file in directory '%s': %s", path, t.dir,
                     strerror(err));
        writer_free(w);
        return st;
    }
    /* The replacement keeps the permissions of what it replaces: a summary or a model made
     * private with chmod 600 must not become world-readable by being rewritten. */
    if (t.exists && fchmod(w->fd, t.st.st_mode & 07777 & ~(mode_t)(S_ISUID | S_ISGID)) != 0) {
        st = bp_fail(BP_EIO, "'%s': cannot set the permissions of the new file: %s", path,
                     strerror(errno));
        writer_discard(w, st);
        writer_free(w);
        return st;
    }
    *out = w;
    return BP_OK;
}

bp_status bp_file_writer_write(bp_file_writer *w, const void *data, size_t n)
{
    if (!w)
        return bp_fail(BP_EINVAL, "bp_file_writer_write: the writer is NULL");
    if (w->failed != BP_OK)
        return bp_fail(w->failed, "%s", w->failure);
    if (n == 0)
        return BP_OK;
    if (!data)
        return writer_discard(w, bp_fail(BP_EINVAL, "'%s': %zu bytes to write from NULL",
                                         w->path, n));
    int err = write_all(w->fd, data, n);
    if (err)
        return writer_discard(w, bp_fail(BP_EIO, "'%s': cannot write: %s", w->path,
                                         strerror(err)));
    return BP_OK;
}

bp_status bp_file_writer_commit(bp_file_writer *w)
{
    if (!w)
        return bp_fail(BP_EINVAL, "bp_file_writer_commit: the writer is NULL");
    bp_status st = w->failed;
    if (st != BP_OK) {
        st = bp_fail(st, "%s; nothing was replaced", w->failure);
        writer_free(w);
        return st;
    }
    /* Some file systems report a failed write-back only here (ENOSPC on NFS, EIO): without
     * this check the rename below would install a file with a hole in it. */
    int r;
    do
        r = fsync(w->fd);
    while (r != 0 && errno == EINTR);
    if (r != 0) {
        st = bp_fail(BP_EIO, "'%s': cannot write: %s", w->path, strerror(errno));
        goto fail;
    }
    /* Linux closes the descriptor even when close reports EINTR; the data is already synced. */
    r = close(w->fd);
    w->fd = -1;
    if (r != 0 && errno != EINTR) {
        st = bp_fail(BP_EIO, "'%s': cannot write: %s", w->path, strerror(errno));
        goto fail;
    }
    if (renameat(w->dir_fd, w->tmp, w->dir_fd, w->base) != 0) {
        int err = errno;
        struct stat now;
        if ((err == EISDIR || err == ENOTEMPTY || err == EEXIST) &&
            fstatat(w->dir_fd, w->base, &now, AT_SYMLINK_NOFOLLOW) == 0)
            st = bp_fail(BP_EIO, "'%s' is now %s, not a regular file: refusing to replace it",
                         w->path, bp_file_kind(now.st_mode));
        else
            st = bp_fail(BP_EIO, "'%s': cannot rename the new file into place: %s", w->path,
                         strerror(err));
        goto fail;
    }
    w->tmp[0] = '\0';
    /* The rename is durable only once the folder is; a file system that cannot sync a folder
     * (EINVAL) has no such step to take. */
    do
        r = fsync(w->dir_fd);
    while (r != 0 && errno == EINTR);
    if (r != 0 && errno != EINVAL) {
        st = bp_fail(BP_EIO, "'%s': replaced, but its directory could not be synced: %s",
                     w->path, strerror(errno));
        writer_free(w);
        return st;
    }
    writer_free(w);
    return BP_OK;

fail:
    writer_discard(w, st);
    writer_free(w);
    return st;
}

void bp_file_writer_abort(bp_file_writer *w)
{
    if (!w)
        return;
    /* Keep the caller's last message: aborting is usually the reaction to some other error. */
    writer_discard(w, BP_EIO);
    writer_free(w);
}

bp_status bp_file_write_atomic(const char *path, const void *data, size_t n)
{
    if (!data && n > 0)
        return bp_fail(BP_EINVAL, "bp_file_write_atomic: %zu bytes to write from NULL", n);
    bp_file_writer *w;
    bp_status st = bp_file_writer_open(&w, path);
    if (st != BP_OK)
        return st;
    if ((st = bp_file_writer_write(w, data, n)) != BP_OK) {
        bp_file_writer_abort(w);
        return st;
    }
    return bp_file_writer_commit(w);
}
