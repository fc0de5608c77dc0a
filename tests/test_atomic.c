/*
 * test_atomic.c - the atomic file replacement (bp_file_write_atomic, the bp_file_writer steps)
 * and its preflight: contents replaced whole, every kind of node that is not a regular file
 * refused and left as it was, a planted symbolic link never followed, write errors reported
 * with no temporary file left behind, and the preflight's refusals.
 *
 * Each test works in a fresh temporary directory, whose listing tells whether a temporary file
 * survived.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "backprop.h"
#include "testutil.h"

Suite *bp_suite_atomic(void);

/* Linux's magic number for sysfs (linux/magic.h), to recognise a real /sys. */
#define SYSFS_MAGIC_NUMBER 0x62656572

/* ---- fixtures -------------------------------------------------------------------------- */

static char tmp_dir[256];

static void make_tmp_dir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/bp-atomic-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(tmp_dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            chmod(path, 0700);
            remove_tree(path);
        } else {
            unlink(path);
        }
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

static void write_plain(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "fopen %s: %s", path, strerror(errno));
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* The whole file as a string (tests write short text files). */
static const char *read_text(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "fopen %s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The names in dir other than . and .., sorted, space-separated: "a b". */
static const char *listing(const char *dir)
{
    static char out[4096];
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    ck_assert_msg(n >= 0, "scandir %s: %s", dir, strerror(errno));
    out[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        const char *s = names[i]->d_name;
        if (strcmp(s, ".") != 0 && strcmp(s, "..") != 0)
            used += (size_t)snprintf(out + used, sizeof out - used, "%s%s", used ? " " : "", s);
        free(names[i]);
    }
    free(names);
    return out;
}

#define ck_assert_error_has(needle)                                                          \
    ck_assert_msg(strstr(bp_last_error(), (needle)) != NULL,                                 \
                  "message '%s' does not contain '%s'", bp_last_error(), (needle))

/* ---- success --------------------------------------------------------------------------- */

START_TEST(test_creates_new_file)
{
    const char *path = tmp_path("summary.json");
    ck_assert_int_eq(bp_file_write_atomic(path, "{}\n", 3), BP_OK);
    ck_assert_str_eq(read_text(path), "{}\n");
    ck_assert_str_eq(listing(tmp_dir), "summary.json");
}
END_TEST

START_TEST(test_replaces_content_and_keeps_mode)
{
    const char *path = tmp_path("model.bin");
    write_plain(path, "the old contents, longer than the new ones\n");
    ck_assert_int_eq(chmod(path, 0600), 0);
    ck_assert_int_eq(bp_file_write_atomic(path, "new\n", 4), BP_OK);
    ck_assert_str_eq(read_text(path), "new\n");
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    ck_assert_str_eq(listing(tmp_dir), "model.bin");

    /* An empty file is a valid thing to write. */
    ck_assert_int_eq(bp_file_write_atomic(path, NULL, 0), BP_OK);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 0);
}
END_TEST

START_TEST(test_relative_path)
{
    char old[1024];
    ck_assert_ptr_nonnull(getcwd(old, sizeof old));
    ck_assert_int_eq(chdir(tmp_dir), 0);
    bp_status st = bp_file_write_atomic("here.txt", "x", 1);
    ck_assert_int_eq(chdir(old), 0);
    ck_assert_int_eq(st, BP_OK);
    ck_assert_str_eq(read_text(tmp_path("here.txt")), "x");
    ck_assert_str_eq(listing(tmp_dir), "here.txt");
}
END_TEST

START_TEST(test_writer_steps)
{
    const char *path = tmp_path("out.txt");
    write_plain(path, "old\n");
    bp_file_writer *w;
    ck_assert_int_eq(bp_file_writer_open(&w, path), BP_OK);
    /* The temporary file lives beside the target, hidden, under a name nobody could guess. */
    const char *during = listing(tmp_dir);
    ck_assert_msg(strncmp(during, ".out.txt.tmp-", 13) == 0 && strlen(during) ==
                  13 + 12 + strlen(" out.txt"), "during the write: '%s'", during);
    char first_tmp[64];
    snprintf(first_tmp, sizeof first_tmp, "%.*s", 25, during);
    ck_assert_int_eq(bp_file_writer_write(w, "line 1\n", 7), BP_OK);
    ck_assert_int_eq(bp_file_writer_write(w, "line 2\n", 7), BP_OK);
    /* Until the commit, readers see the old file. */
    ck_assert_str_eq(read_text(path), "old\n");
    ck_assert_int_eq(bp_file_writer_commit(w), BP_OK);
    ck_assert_str_eq(read_text(path), "line 1\nline 2\n");
    ck_assert_str_eq(listing(tmp_dir), "out.txt");

    /* Abort leaves the target as it was and no temporary file; a second writer picks
     * another name. */
    ck_assert_int_eq(bp_file_writer_open(&w, path), BP_OK);
    ck_assert_int_eq(bp_file_writer_write(w, "discarded", 9), BP_OK);
    ck_assert_msg(strncmp(listing(tmp_dir), first_tmp, 25) != 0, "the same temporary name "
                  "twice: %s", first_tmp);
    bp_file_writer_abort(w);
    bp_file_writer_abort(NULL);
    ck_assert_str_eq(read_text(path), "line 1\nline 2\n");
    ck_assert_str_eq(listing(tmp_dir), "out.txt");
}
END_TEST

START_TEST(test_bad_arguments)
{
    bp_file_writer *w = (bp_file_writer *)&w;
    ck_assert_int_eq(bp_file_write_atomic(NULL, "x", 1), BP_EINVAL);
    ck_assert_int_eq(bp_file_write_atomic("", "x", 1), BP_EINVAL);
    ck_assert_int_eq(bp_file_write_atomic(tmp_path("f"), NULL, 1), BP_EINVAL);
    ck_assert_int_eq(bp_file_writer_open(NULL, tmp_path("f")), BP_EINVAL);
    ck_assert_int_eq(bp_file_writer_open(&w, ""), BP_EINVAL);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(bp_file_writer_write(NULL, "x", 1), BP_EINVAL);
    ck_assert_int_eq(bp_file_writer_commit(NULL), BP_EINVAL);
    ck_assert_int_eq(bp_file_check_replaceable(NULL), BP_EINVAL);

    char slash[600];
    snprintf(slash, sizeof slash, "%s/", tmp_dir);
    ck_assert_int_eq(bp_file_write_atomic(slash, "x", 1), BP_EINVAL);
    ck_assert_error_has("ends in '/'");
    ck_assert_str_eq(listing(tmp_dir), "");
}
END_TEST

/* ---- nodes that are not regular files -------------------------------------------------- */

/* Both the preflight and the write refuse path with a message containing kind, and neither
 * creates anything in dir. */
static void assert_refused(const char *path, const char *kind, const char *dir,
                           const char *before)
{
    ck_assert_int_eq(bp_file_check_replaceable(path), BP_EIO);
    ck_assert_error_has(path);
    ck_assert_error_has(kind);
    ck_assert_error_has("refusing to replace it");
    ck_assert_int_eq(bp_file_write_atomic(path, "x", 1), BP_EIO);
    ck_assert_error_has(kind);
    bp_file_writer *w;
    ck_assert_int_eq(bp_file_writer_open(&w, path), BP_EIO);
    ck_assert_ptr_null(w);
    ck_assert_error_has(kind);
    ck_assert_str_eq(listing(dir), before);
}

START_TEST(test_refuses_fifo)
{
    const char *path = tmp_path("fifo");
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    assert_refused(path, "is a FIFO", tmp_dir, "fifo");
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
}
END_TEST

START_TEST(test_refuses_directory)
{
    const char *path = tmp_path("dir");
    ck_assert_int_eq(mkdir(path, 0700), 0);
    assert_refused(path, "is a directory", tmp_dir, "dir");
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_str_eq(listing(path), "");
}
END_TEST

START_TEST(test_refuses_symlink)
{
    const char *pointee = tmp_path("precious");
    const char *link = tmp_path("summary.json");
    write_plain(pointee, "do not touch\n");
    ck_assert_int_eq(symlink("precious", link), 0);
    assert_refused(link, "is a symbolic link (to 'precious')", tmp_dir, "precious summary.json");
    ck_assert_str_eq(read_text(pointee), "do not touch\n");
    struct stat st;
    ck_assert_int_eq(lstat(link, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));

    /* A dangling link is refused too: writing would create its pointee somewhere else. */
    const char *dangling = tmp_path("dangling");
    ck_assert_int_eq(symlink("nowhere/at/all", dangling), 0);
    assert_refused(dangling, "is a symbolic link (to 'nowhere/at/all')", tmp_dir,
                   "dangling precious summary.json");
}
END_TEST

/* The old CLI wrote FILE.tmp and renamed it: a link planted there sent the summary anywhere. */
START_TEST(test_ignores_planted_tmp_link)
{
    const char *pointee = tmp_path("precious");
    write_plain(pointee, "do not touch\n");
    ck_assert_int_eq(symlink("precious", tmp_path("out.json.tmp")), 0);
    ck_assert_int_eq(bp_file_write_atomic(tmp_path("out.json"), "{}", 2), BP_OK);
    ck_assert_str_eq(read_text(pointee), "do not touch\n");
    ck_assert_str_eq(read_text(tmp_path("out.json")), "{}");
    ck_assert_str_eq(listing(tmp_dir), "out.json out.json.tmp precious");
}
END_TEST

/* The devices are only stat'ed, never opened. Still, as root a regression would replace the
 * machine's /dev/null with a regular file, so root tests nodes of its own: the same devices,
 * made with mknod in the temporary directory. Anyone else cannot write /dev and tests the real
 * ones. */
START_TEST(test_refuses_devices)
{
    static const struct { const char *name; unsigned minor; } devices[] = {
        {"null", 3}, {"full", 7}};
    for (int i = 0; i < 2; i++) {
        char path[512];
        const char *dir;
        if (geteuid() == 0) {
            snprintf(path, sizeof path, "%s", tmp_path(devices[i].name));
            ck_assert_msg(mknod(path, S_IFCHR | 0666, makedev(1, devices[i].minor)) == 0,
                          "mknod %s: %s", path, strerror(errno));
            dir = tmp_dir;
        } else {
            snprintf(path, sizeof path, "/dev/%s", devices[i].name);
            dir = "/dev";
        }
        struct stat before, after;
        if (stat(path, &before) != 0 || !S_ISCHR(before.st_mode))
            continue; /* a container without it: nothing to test */
        ck_assert_int_eq(bp_file_check_replaceable(path), BP_EIO);
        ck_assert_error_has(path);
        ck_assert_error_has("is a character device");
        /* Reached only if the preflight refused: the same check guards the write. */
        ck_assert_int_eq(bp_file_write_atomic(path, "x", 1), BP_EIO);
        ck_assert_error_has("is a character device");
        ck_assert_int_eq(lstat(path, &after), 0);
        ck_assert(S_ISCHR(after.st_mode));
        ck_assert_uint_eq(after.st_rdev, before.st_rdev);
        ck_assert_uint_eq(after.st_ino, before.st_ino);
        /* Nor was anything left beside it. */
        DIR *d = opendir(dir);
        ck_assert_ptr_nonnull(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            ck_assert_msg(strstr(e->d_name, ".tmp-") == NULL, "left in %s: %s", dir,
                          e->d_name);
        closedir(d);
    }
}
END_TEST

/* ---- write errors ---------------------------------------------------------------------- */

/* RLIMIT_FSIZE makes write() fail with EFBIG past the limit (once SIGXFSZ no longer kills the
 * process): a full disk's ENOSPC without needing a full disk. */
static void limit_file_size(rlim_t bytes, struct rlimit *saved)
{
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, saved), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {.rlim_cur = bytes, .rlim_max = saved->rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
}

static void restore_file_size(const struct rlimit *saved)
{
    setrlimit(RLIMIT_FSIZE, saved);
    signal(SIGXFSZ, SIG_DFL);
}

START_TEST(test_write_error_leaves_nothing)
{
    const char *path = tmp_path("summary.json");
    write_plain(path, "old\n");
    static char big[65536];
    memset(big, 'x', sizeof big);

    struct rlimit saved;
    limit_file_size(1000, &saved);
    bp_status one_shot = bp_file_write_atomic(path, big, sizeof big);
    char one_shot_msg[512];
    snprintf(one_shot_msg, sizeof one_shot_msg, "%s", bp_last_error());

    /* In steps: the failing write removes the temporary file at once, and the commit after it
     * repeats the reason rather than installing a truncated file. */
    bp_file_writer *w;
    bp_status opened = bp_file_writer_open(&w, path);
    bp_status wrote = opened == BP_OK ? bp_file_writer_write(w, big, sizeof big) : opened;
    const char *during = listing(tmp_dir);
    char during_copy[256];
    snprintf(during_copy, sizeof during_copy, "%s", during);
    bp_status again = opened == BP_OK ? bp_file_writer_write(w, "x", 1) : opened;
    bp_status committed = opened == BP_OK ? bp_file_writer_commit(w) : opened;
    char commit_msg[512];
    snprintf(commit_msg, sizeof commit_msg, "%s", bp_last_error());
    restore_file_size(&saved);

    ck_assert_int_eq(one_shot, BP_EIO);
    ck_assert_msg(strstr(one_shot_msg, path) && strstr(one_shot_msg, strerror(EFBIG)),
                  "message: %s", one_shot_msg);
    ck_assert_int_eq(opened, BP_OK);
    ck_assert_int_eq(wrote, BP_EIO);
    ck_assert_str_eq(during_copy, "summary.json");
    ck_assert_int_eq(again, BP_EIO);
    ck_assert_int_eq(committed, BP_EIO);
    ck_assert_msg(strstr(commit_msg, strerror(EFBIG)) && strstr(commit_msg, "nothing was "
                  "replaced"), "commit message: %s", commit_msg);
    ck_assert_str_eq(read_text(path), "old\n");
    ck_assert_str_eq(listing(tmp_dir), "summary.json");
}
END_TEST

/* ---- the preflight --------------------------------------------------------------------- */

START_TEST(test_preflight_ok)
{
    ck_assert_int_eq(bp_file_check_replaceable(tmp_path("new.json")), BP_OK);
    ck_assert_str_eq(listing(tmp_dir), "");
    write_plain(tmp_path("old.json"), "keep\n");
    ck_assert_int_eq(bp_file_check_replaceable(tmp_path("old.json")), BP_OK);
    ck_assert_str_eq(read_text(tmp_path("old.json")), "keep\n");
    ck_assert_str_eq(listing(tmp_dir), "old.json");
}
END_TEST

START_TEST(test_preflight_missing_directory)
{
    const char *path = tmp_path("no/such/dir/s.json");
    ck_assert_int_eq(bp_file_check_replaceable(path), BP_EIO);
    ck_assert_error_has(path);
    ck_assert_error_has("does not exist");

    write_plain(tmp_path("file"), "");
    ck_assert_int_eq(bp_file_check_replaceable(tmp_path("file/s.json")), BP_EIO);
    ck_assert_error_has("is a regular file, not a directory");
    ck_assert_str_eq(listing(tmp_dir), "file");
}
END_TEST

START_TEST(test_preflight_full_disk)
{
    struct rlimit saved;
    limit_file_size(0, &saved);
    bp_status st = bp_file_check_replaceable(tmp_path("s.json"));
    char msg[512];
    snprintf(msg, sizeof msg, "%s", bp_last_error());
    restore_file_size(&saved);
    ck_assert_int_eq(st, BP_EIO);
    ck_assert_msg(strstr(msg, "cannot write a file in directory") && strstr(msg,
                  strerror(EFBIG)), "message: %s", msg);
    ck_assert_str_eq(listing(tmp_dir), "");
}
END_TEST

/* A directory that refuses new files. chmod 0555 does not stop root (CAP_DAC_OVERRIDE), so
 * as root the test uses sysfs, where no one can create a regular file. */
START_TEST(test_preflight_read_only_directory)
{
    char path[600];
    const char *want_reason;
    if (geteuid() != 0) {
        const char *ro = tmp_path("ro");
        ck_assert_int_eq(mkdir(ro, 0755), 0);
        ck_assert_int_eq(chmod(ro, 0555), 0);
        snprintf(path, sizeof path, "%s/s.json", ro);
        want_reason = strerror(EACCES);
    } else {
        struct statfs fs;
        if (statfs("/sys", &fs) != 0 || (unsigned long)fs.f_type != SYSFS_MAGIC_NUMBER)
            return; /* no sysfs here and no other way to deny root a directory */
        snprintf(path, sizeof path, "/sys/bp-atomic-probe.json");
        want_reason = "";
    }
    ck_assert_int_eq(bp_file_check_replaceable(path), BP_EIO);
    ck_assert_error_has(path);
    ck_assert_error_has("cannot create a file in directory");
    ck_assert_error_has(want_reason);
    ck_assert_int_eq(bp_file_write_atomic(path, "x", 1), BP_EIO);
    ck_assert_error_has("cannot create a file in directory");
    ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

Suite *bp_suite_atomic(void)
{
    Suite *s = suite_create("atomic");
    TCase *tc = tcase_create("write");
    tcase_add_checked_fixture(tc, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_creates_new_file);
    tcase_add_test(tc, test_replaces_content_and_keeps_mode);
    tcase_add_test(tc, test_relative_path);
    tcase_add_test(tc, test_writer_steps);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_refuses_fifo);
    tcase_add_test(tc, test_refuses_directory);
    tcase_add_test(tc, test_refuses_symlink);
    tcase_add_test(tc, test_ignores_planted_tmp_link);
    tcase_add_test(tc, test_refuses_devices);
    tcase_add_test(tc, test_write_error_leaves_nothing);
    suite_add_tcase(s, tc);

    TCase *pre = tcase_create("preflight");
    tcase_add_checked_fixture(pre, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(pre, 30);
    tcase_add_test(pre, test_preflight_ok);
    tcase_add_test(pre, test_preflight_missing_directory);
    tcase_add_test(pre, test_preflight_full_disk);
    tcase_add_test(pre, test_preflight_read_only_directory);
    suite_add_tcase(s, pre);
    return s;
}

int main(void) { return bp_test_main(bp_suite_atomic()); }
