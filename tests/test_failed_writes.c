/* test_failed_writes.c - a write that fails leaves the old file as it was, and no temp file.
 *
 * Every writer of the library puts its file in place through util.h's AtomicFile (temp file
 * "PATH.tmp.PID", flush, fsync, rename). This suite makes real writes fail and checks, for each
 * writer - npy_save, safetensors_save_params, checkpoint_save and a whole `cpool train --resume`
 * (cmd_train.c compiled in, run in a forked child as the program runs) - that
 *   - the call returns -1 (the command exits 1),
 *   - its error is one line that starts with the path and ends with the system's reason,
 *   - the file at the path is byte for byte the old one,
 *   - no "*.tmp.*" file is left in the directory.
 * The failures are injected three ways:
 *   (a) a file size limit (setrlimit RLIMIT_FSIZE in a forked child, SIGXFSZ ignored so that
 *       write() returns EFBIG): swept over every byte offset of the small files and over a spread
 *       of offsets of the large ones, so the failure lands in the header, the data and the last
 *       byte; one byte more than the file needs must succeed (the sweep really reaches the end);
 *   (b) a full file system: a 4 MB tmpfs mounted in a private mount namespace of a forked child
 *       (so nothing stays mounted whatever happens), filled up to leave 0, 1, 2 ... pages free;
 *       skipped with the reason printed where mounting is not allowed;
 *   (c) a place that cannot be written: as root, permissions do not stop a write, so (1) the
 *       temp path is taken by a directory, (2) the parent of the path is a regular file, (3) the
 *       path is a directory (the rename fails), and (4) the directory is read-only to a child
 *       that runs as user nobody (when the suite runs as root; as another user, directly).
 * A `cpool train` killed with SIGKILL in the middle of writing a checkpoint and resumed is
 * tests/test_train_cmd.c's (kill_during_checkpoint); not repeated here. */
#define _GNU_SOURCE /* unshare, CLONE_NEWNS */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test_temp_dir.h"
#include "test_util.h"

#include "../tools/cmd_train.c"

#include "checkpoint.h"
#include "npy.h"
#include "optim.h"
#include "params.h"
#include "safetensors.h"

/* cmd_train draws figures at the end unless --no-plots, which every run here passes. */
int plot_run_figures(const char *run_dir, const char *ckpt_path, char *err, size_t err_len) {
    (void)run_dir, (void)ckpt_path;
    snprintf(err, err_len, "not compiled into this test");
    return -1;
}

/* The old run for the `cpool train` cases is a run stopped with Ctrl-C: while this flag is set,
 * the first rename onto a checkpoint.safetensors raises SIGINT after it (cmd_train's handler
 * sets its flag; the loop finishes the next step, saves it and exits 130). The linker prefers
 * this rename() to the C library's; everything goes on to the real one (renameat). */
static int interrupt_after_first_checkpoint;

static int ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

int rename(const char *from, const char *to) {
    int status = renameat(AT_FDCWD, from, AT_FDCWD, to);
    if (interrupt_after_first_checkpoint && ends_with(to, "/checkpoint.safetensors")) {
        interrupt_after_first_checkpoint = 0;
        raise(SIGINT);
    }
    return status;
}

/* ---- Files -------------------------------------------------------------------------------- */

typedef struct Bytes {
    char *data; /* NULL: no such file */
    size_t size;
} Bytes;

static Bytes read_bytes(const char *path) {
    Bytes b = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return b;
    size_t capacity = 0;
    for (size_t got = 1; got > 0; b.size += got) {
        if (b.size + 4096 > capacity) b.data = realloc(b.data, capacity = 2 * capacity + 4096);
        got = fread(b.data + b.size, 1, capacity - b.size, fp);
    }
    fclose(fp);
    return b;
}

static int write_bytes(const char *path, Bytes b) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    int ok = fwrite(b.data, 1, b.size, fp) == b.size;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

static int same_bytes(Bytes a, Bytes b) {
    return a.data && b.data && a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
}

/* The first file of dir whose name holds ".tmp.", into found; 1 if there is one. */
static int find_temp_file(const char *dir, char *found, size_t found_len) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int any = 0;
    for (struct dirent *e; !any && (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) any = 1, snprintf(found, found_len, "%s", e->d_name);
    closedir(d);
    return any;
}

/* dir/name in one of 8 rotating buffers. */
static const char *in_dir(const char *dir, const char *name) {
    static char paths[8][1024];
    static int next;
    char *path = paths[next++ % 8];
    snprintf(path, 1024, "%s/%s", dir, name);
    return path;
}

/* ---- The library's writers, each in two versions (old 0, new 1) ---------------------------- */

typedef int (*WriteFn)(const char *path, int version, char *err, size_t err_len);

/* Values that differ between the versions and from element to element. */
static void fill_values(Tensor *t, int version, double scale) {
    for (long i = 0; i < t->size; i++) t->data[i] = (real)(scale * (version + 1) * (i % 97 - 48));
}

static int save_npy(const char *path, int version, int rows, int cols, char *err, size_t err_len) {
    Tensor *t = tensor_create(2, (int[]){rows, cols}, 0);
    fill_values(t, version, 0.25);
    int status = npy_save(path, t, err, err_len);
    tensor_free(t);
    return status;
}

/* 15 values: about 200 bytes, every offset swept. */
static int write_npy_small(const char *path, int version, char *err, size_t err_len) {
    return save_npy(path, version, 3, 5, err, err_len);
}

/* 32768 values: 128 KB (256 KB in cpool64), a spread of offsets. */
static int write_npy_large(const char *path, int version, char *err, size_t err_len) {
    return save_npy(path, version, 256, 128, err, err_len);
}

static int write_params(const char *path, int version, char *err, size_t err_len) {
    ParamSet params = {0};
    fill_values(params_new(&params, "fc", "weight", 2, (int[]){4, 3}), version, 0.5);
    fill_values(params_new(&params, "fc", "bias", 1, (int[]){4}), version, 0.125);
    const char *metadata[] = {"note", version ? "the new one" : "the old one", NULL};
    int status = safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F32, metadata,
                                         err, err_len);
    params_free(&params);
    return status;
}

/* A model of dim x dim weights with AdamW's moments and a training state. */
static int save_checkpoint_of(const char *path, int version, int dim, char *err, size_t err_len) {
    ParamSet params = {0};
    fill_values(params_new(&params, "embed", "weight", 2, (int[]){dim, dim}), version, 0.5);
    fill_values(params_new(&params, "head", "bias", 1, (int[]){dim}), version, 0.25);
    AdamW opt;
    adamw_init(&opt, &params, ADAMW_DEFAULTS);
    for (int i = 0; i < params.count; i++) {
        fill_values(opt.m[i], version, 0.001);
        fill_values(opt.v[i], version, 0.0001);
    }
    opt.step = 10 + version;
    TrainState state = {.step = 10 + version,
                        .tokens = 640 + version,
                        .elapsed_seconds = 1.5,
                        .config = "model = charlm\ndim = 8\n"};
    rng_seed(&state.rng, 7 + (uint64_t)version);
    int status = checkpoint_save(path, &params, &opt, &state, err, err_len);
    adamw_free(&opt);
    params_free(&params);
    return status;
}

/* About 2 KB: every offset swept. */
static int write_checkpoint_small(const char *path, int version, char *err, size_t err_len) {
    return save_checkpoint_of(path, version, 4, err, err_len);
}

/* About 200 KB (400 KB in cpool64). */
static int write_checkpoint_large(const char *path, int version, char *err, size_t err_len) {
    return save_checkpoint_of(path, version, 128, err, err_len);
}

typedef struct Writer {
    const char *name, *file;
    WriteFn write;
    int every_offset; /* 1: sweep the size limit over every byte offset; 0: a spread */
} Writer;

static const Writer WRITERS[] = {
    {"npy_save (small)", "small.npy", write_npy_small, 1},
    {"npy_save (large)", "large.npy", write_npy_large, 0},
    {"safetensors_save_params", "params.safetensors", write_params, 1},
    {"checkpoint_save (small)", "small.safetensors", write_checkpoint_small, 1},
    {"checkpoint_save (large)", "large.safetensors", write_checkpoint_large, 0},
};
enum { WRITER_COUNT = sizeof WRITERS / sizeof WRITERS[0] };

/* ---- The checks (plain functions: they also run inside forked children) -------------------- */

/* A refused write: status nonzero; message one line that starts with "PATH: " and holds cause;
 * the file at path byte-identical to *old (old->data NULL: a directory stands at path, as
 * before; old NULL: there was nothing to keep); no temp file in path's directory. 0, or -1 with
 * why. */
static int check_refused(const char *what, int status, const char *message, const char *path,
                         const Bytes *old, const char *cause, char *why, size_t why_len) {
    char prefix[1100], dir[1024], temp[256], problem[512] = "";
    snprintf(prefix, sizeof prefix, "%s: ", path);
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path);
    struct stat info;
    Bytes now = old && old->data ? read_bytes(path) : (Bytes){0};
    if (status == 0)
        snprintf(problem, sizeof problem, "the write succeeded");
    else if (strncmp(message, prefix, strlen(prefix)) != 0)
        snprintf(problem, sizeof problem, "the error does not start with the path");
    else if (strchr(message, '\n'))
        snprintf(problem, sizeof problem, "the error is more than one line");
    else if (!strstr(message, cause))
        snprintf(problem, sizeof problem, "the error does not say \"%s\"", cause);
    else if (old && old->data && !same_bytes(now, *old))
        snprintf(problem, sizeof problem, "the old file changed");
    else if (old && !old->data && (stat(path, &info) != 0 || !S_ISDIR(info.st_mode)))
        snprintf(problem, sizeof problem, "the directory in the file's place is gone");
    else if (find_temp_file(dir, temp, sizeof temp))
        snprintf(problem, sizeof problem, "a temp file is left: %s", temp);
    free(now.data);
    if (!problem[0]) return 0;
    snprintf(why, why_len, "%s: %s (status %d, error \"%.1000s\")", what, problem, status, message);
    return -1;
}

/* A write that succeeded: status 0 and the file now holds `expected`. */
static int check_written(const char *what, int status, const char *message, const char *path,
                         const Bytes *expected, char *why, size_t why_len) {
    Bytes now = read_bytes(path);
    int ok = status == 0 && same_bytes(now, *expected);
    free(now.data);
    if (ok) return 0;
    snprintf(why, why_len, "%s: expected a complete write (status %d, error \"%.1000s\")", what,
             status, message);
    return -1;
}

/* ---- Running work in a forked child ---------------------------------------------------------- */

/* What the child does before the work. */
typedef struct Injection {
    rlim_t file_size_limit; /* RLIM_INFINITY: none */
    int as_nobody;          /* run as user nobody (uid 65534) when root */
} Injection;

#define NO_INJECTION ((Injection){.file_size_limit = RLIM_INFINITY})
enum { NOBODY = 65534, SKIP_STATUS = 77 };

typedef int (*Work)(void *arg); /* returns the child's exit status; errors on stderr */

/* work(arg) in a forked child with the injection applied, its stderr into out (one buffer, cut
 * at out_len), stdout to /dev/null. stderr is a pipe, which a file size limit does not touch.
 * Returns the exit status, or -1 (and out says why) if the child did not exit. */
static int in_child(Work work, void *arg, Injection injection, char *out, size_t out_len) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return snprintf(out, out_len, "pipe: %s", strerror(errno)), -1;
    fflush(stdout), fflush(stderr);
    pid_t child = fork();
    if (child < 0) return snprintf(out, out_len, "fork: %s", strerror(errno)), -1;
    if (child == 0) {
        close(pipe_fds[0]);
        dup2(pipe_fds[1], STDERR_FILENO);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        cpool_set_error_handler(NULL, NULL);
        signal(SIGXFSZ, SIG_IGN); /* past the limit, write() fails with EFBIG instead */
        struct rlimit limit = {injection.file_size_limit, injection.file_size_limit};
        if (injection.file_size_limit != RLIM_INFINITY && setrlimit(RLIMIT_FSIZE, &limit) != 0)
            _exit(SKIP_STATUS);
        if (injection.as_nobody && geteuid() == 0 && (setgid(NOBODY) != 0 || setuid(NOBODY) != 0))
            _exit(SKIP_STATUS);
        int status = work(arg);
        fflush(stdout), fflush(stderr);
        _exit(status);
    }
    close(pipe_fds[1]);
    size_t used = 0;
    for (ssize_t got; (got = read(pipe_fds[0], out + used, out_len - 1 - used)) > 0;)
        used += (size_t)got;
    out[used] = '\0';
    close(pipe_fds[0]);
    int wait_status;
    if (waitpid(child, &wait_status, 0) != child || !WIFEXITED(wait_status))
        return snprintf(out, out_len, "the child did not exit (wait status %d)", wait_status), -1;
    return WEXITSTATUS(wait_status);
}

/* One library write in a child: status 0 or 1, the error on stderr. */
typedef struct WriteJob {
    const Writer *writer;
    const char *path;
} WriteJob;

static int write_job(void *arg) {
    const WriteJob *job = arg;
    char err[1024];
    if (job->writer->write(job->path, 1, err, sizeof err) == 0) return 0;
    fprintf(stderr, "%s", err);
    return 1;
}

/* ---- (a) A file size limit ------------------------------------------------------------------ */

/* The limits to try for a new file of `size` bytes: every offset 0..size-1, or a spread: the
 * first and last 8 bytes, 48 evenly spaced, and the 8 around the header's end. */
static int limits_for(const Writer *w, size_t size, size_t header_end, size_t *limits) {
    int n = 0;
    if (w->every_offset) {
        for (size_t at = 0; at < size; at++) limits[n++] = at;
        return n;
    }
    for (size_t at = 0; at < 8; at++) limits[n++] = at, limits[n++] = size - 1 - at;
    for (int k = 1; k <= 48; k++) limits[n++] = size * (size_t)k / 49;
    for (size_t at = header_end - 4; at < header_end + 4; at++) limits[n++] = at;
    return n;
}

/* Where the data starts: after an .npy header (its length at bytes 8-9) or a safetensors
 * header (its length in the first 8 bytes). */
static size_t header_end_of(const Bytes *file) {
    if (file->size > 10 && memcmp(file->data, "\x93NUMPY", 6) == 0)
        return 10 + ((unsigned char)file->data[8] | (size_t)(unsigned char)file->data[9] << 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (unsigned char)file->data[i];
    return 8 + (size_t)n;
}

static void test_a_file_size_limit_anywhere_leaves_the_old_file(void **state) {
    (void)state;
    for (int k = 0; k < WRITER_COUNT; k++) {
        const Writer *w = &WRITERS[k];
        char err[1024], why[2048], out[4096];
        const char *path = temp_path(w->file);
        /* the new file, written once without a limit, to know its size and bytes */
        if (w->write(path, 1, err, sizeof err) != 0) fail_msg("%s: %s", w->name, err);
        Bytes fresh = read_bytes(path);
        if (w->write(path, 0, err, sizeof err) != 0) fail_msg("%s: %s", w->name, err);
        Bytes old = read_bytes(path);
        assert_false(same_bytes(old, fresh));
        size_t *limits = malloc((fresh.size + 100) * sizeof *limits);
        int n = limits_for(w, fresh.size, header_end_of(&fresh), limits);
        WriteJob job = {w, path};
        for (int i = 0; i < n; i++) {
            char what[160];
            snprintf(what, sizeof what, "%s, file size limit %zu of %zu bytes", w->name, limits[i],
                     fresh.size);
            Injection limit = {.file_size_limit = limits[i]};
            int status = in_child(write_job, &job, limit, out, sizeof out);
            if (status == SKIP_STATUS) fail_msg("%s: setrlimit failed", what);
            if (status < 0) fail_msg("%s: %s", what, out);
            if (check_refused(what, status, out, path, &old, "File too large", why, sizeof why))
                fail_msg("%s", why);
        }
        /* exactly the file's size is enough: the sweep stopped one byte short of success */
        Injection enough = {.file_size_limit = fresh.size};
        int status = in_child(write_job, &job, enough, out, sizeof out);
        if (check_written(w->name, status, out, path, &fresh, why, sizeof why)) fail_msg("%s", why);
        print_message("%-26s %5zu bytes: refused at %d size limits, old file intact\n", w->name,
                      fresh.size, n);
        remove(path);
        free(limits);
        free(old.data);
        free(fresh.data);
    }
}

/* ---- (b) A full file system ----------------------------------------------------------------- */

enum { TMPFS_BYTES = 4 << 20, PAGE_BYTES = 4096 };

/* Fills the file system of dir to leave `pages_free` pages: a file "fill" grown until a write
 * fails, then cut back. 0, or -1 with why. */
static int fill_leaving(const char *dir, int pages_free, char *why, size_t why_len) {
    const char *path = in_dir(dir, "fill");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return snprintf(why, why_len, "%s: %s", path, strerror(errno)), -1;
    static char page[PAGE_BYTES];
    off_t size = 0;
    for (ssize_t wrote; (wrote = write(fd, page, sizeof page)) > 0;) size += wrote;
    int full = errno == ENOSPC;
    off_t keep = size - (off_t)pages_free * PAGE_BYTES;
    int status = full && keep >= 0 && ftruncate(fd, keep) == 0 ? 0 : -1;
    close(fd);
    if (status) snprintf(why, why_len, "could not fill %s to leave %d pages", dir, pages_free);
    return status;
}

/* In a private mount namespace (the child's own; it ends with the child), a tmpfs of
 * TMPFS_BYTES on dir. 0, or -1 with the reason it is not possible here. */
static int mount_private_tmpfs(const char *dir, char *why, size_t why_len) {
    if (unshare(CLONE_NEWNS) != 0)
        return snprintf(why, why_len, "unshare(CLONE_NEWNS): %s", strerror(errno)), -1;
    /* A propagation change ignores source and type; "none" rather than NULL keeps valgrind
     * from reporting the kernel's (unused) read of them. */
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
        return snprintf(why, why_len, "making / private: %s", strerror(errno)), -1;
    char options[32];
    snprintf(options, sizeof options, "size=%d", TMPFS_BYTES);
    if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
        return snprintf(why, why_len, "mount -t tmpfs: %s", strerror(errno)), -1;
    return 0;
}

/* Each library writer on the full tmpfs at dir, leaving 0 .. pages-1 pages free for a new file
 * of `pages` pages (the old file holds its own pages until the rename). 0 and the number of
 * cases in *cases, or -1 with why. */
static int writers_on_full_disk(const char *dir, int *cases, char *why, size_t why_len) {
    *cases = 0;
    for (int k = 0; k < WRITER_COUNT; k++) {
        const Writer *w = &WRITERS[k];
        const char *path = in_dir(dir, w->file);
        char err[1024] = "";
        if (w->write(path, 1, err, sizeof err) != 0)
            return snprintf(why, why_len, "%s: %s", w->name, err), -1;
        Bytes fresh = read_bytes(path);
        int pages = (int)((fresh.size + PAGE_BYTES - 1) / PAGE_BYTES);
        free(fresh.data);
        if (w->write(path, 0, err, sizeof err) != 0)
            return snprintf(why, why_len, "%s: %s", w->name, err), -1;
        Bytes old = read_bytes(path);
        for (int free_pages = 0; free_pages < pages && free_pages < 4; free_pages++) {
            if (fill_leaving(dir, free_pages, why, why_len) != 0) return free(old.data), -1;
            char what[160];
            snprintf(what, sizeof what, "%s, full disk with %d of %d pages free", w->name,
                     free_pages, pages);
            err[0] = '\0';
            int status = w->write(path, 1, err, sizeof err);
            int bad = check_refused(what, status, err, path, &old, "No space left on device", why,
                                    why_len);
            remove(in_dir(dir, "fill"));
            if (bad) return free(old.data), -1;
            ++*cases;
        }
        free(old.data);
        remove(path);
    }
    return 0;
}

/* The result of a child's scenario: "ok N", "skip REASON" or "fail WHY", one line. */
typedef int (*Scenario)(const char *dir, int *cases, char *why, size_t why_len);

typedef struct TmpfsJob {
    Scenario scenario;
    const char *dir;
} TmpfsJob;

static int tmpfs_job(void *arg) {
    const TmpfsJob *job = arg;
    char why[2048];
    int cases = 0;
    why[0] = '\0';
    if (mount_private_tmpfs(job->dir, why, sizeof why) != 0) {
        fprintf(stderr, "skip %s", why);
        return 0;
    }
    if (job->scenario(job->dir, &cases, why, sizeof why) != 0) {
        fprintf(stderr, "fail %s", why);
        return 0;
    }
    fprintf(stderr, "ok %d cases%s%s", cases, why[0] ? ": " : "", why);
    return 0;
}

/* Runs the scenario on a full tmpfs in a child; skips the test, with the reason, where a tmpfs
 * cannot be mounted. */
static void run_on_tmpfs(Scenario scenario, const char *name) {
    const char *dir = temp_path("tmpfs");
    mkdir(dir, 0755);
    TmpfsJob job = {scenario, dir};
    char out[4096];
    int status = in_child(tmpfs_job, &job, NO_INJECTION, out, sizeof out);
    if (status != 0) fail_msg("%s: %s", name, out);
    if (strncmp(out, "skip ", 5) == 0) {
        print_message("skipped: no tmpfs here (%s)\n", out + 5);
        rmdir(dir);
        skip();
    }
    if (strncmp(out, "ok ", 3) != 0) fail_msg("%s", out);
    print_message("%s: refused in %s, old files intact\n", name, out + 3);
    rmdir(dir);
}

static void test_b_a_full_disk_leaves_the_old_file(void **state) {
    (void)state;
    run_on_tmpfs(writers_on_full_disk, "every writer on a full tmpfs");
}

/* ---- (c) A place that cannot be written ------------------------------------------------------ */

static void test_c_a_directory_on_the_temp_path_leaves_the_old_file(void **state) {
    (void)state;
    for (int k = 0; k < WRITER_COUNT; k++) {
        const Writer *w = &WRITERS[k];
        const char *path = temp_path(w->file);
        char err[1024] = "", why[2048], squatter[1100];
        assert_int_equal(w->write(path, 0, err, sizeof err), 0);
        Bytes old = read_bytes(path);
        snprintf(squatter, sizeof squatter, "%s.tmp.%ld", path, (long)getpid());
        assert_int_equal(mkdir(squatter, 0755), 0);
        int status = w->write(path, 1, err, sizeof err);
        /* the squatter is someone else's: it must still be there, then it goes */
        struct stat info;
        assert_int_equal(stat(squatter, &info), 0);
        assert_true(S_ISDIR(info.st_mode));
        assert_int_equal(rmdir(squatter), 0);
        if (check_refused(w->name, status, err, path, &old, "cannot create the temp file", why,
                          sizeof why) ||
            check_refused(w->name, status, err, path, &old, "Is a directory", why, sizeof why))
            fail_msg("%s", why);
        free(old.data);
        remove(path);
    }
}

static void test_c_a_file_as_the_parent_directory_is_refused(void **state) {
    (void)state;
    const char *parent = temp_path("not_a_directory");
    Bytes content = {"plain text\n", 11};
    assert_int_equal(write_bytes(parent, content), 0);
    for (int k = 0; k < WRITER_COUNT; k++) {
        const Writer *w = &WRITERS[k];
        char path[1100], err[1024] = "", why[2048];
        snprintf(path, sizeof path, "%s/%s", parent, w->file);
        int status = w->write(path, 1, err, sizeof err);
        if (check_refused(w->name, status, err, path, NULL, "Not a directory", why, sizeof why))
            fail_msg("%s", why);
        Bytes now = read_bytes(parent);
        assert_true(same_bytes(now, content));
        free(now.data);
    }
    remove(parent);
}

static void test_c_a_directory_at_the_path_fails_the_rename(void **state) {
    (void)state;
    for (int k = 0; k < WRITER_COUNT; k++) {
        const Writer *w = &WRITERS[k];
        const char *path = temp_path(w->file);
        char err[1024] = "", why[2048];
        assert_int_equal(mkdir(path, 0755), 0);
        Bytes inside = {"kept\n", 5};
        assert_int_equal(write_bytes(in_dir(path, "inside.txt"), inside), 0);
        int status = w->write(path, 1, err, sizeof err);
        if (check_refused(w->name, status, err, path, &(Bytes){0},
                          "cannot rename temp file into place", why, sizeof why))
            fail_msg("%s", why);
        Bytes now = read_bytes(in_dir(path, "inside.txt"));
        assert_true(same_bytes(now, inside));
        free(now.data);
        remove(in_dir(path, "inside.txt"));
        rmdir(path);
    }
}

/* A read-only directory: root writes there regardless, so the writer runs as nobody. */
static void test_c_a_read_only_directory_leaves_the_old_file(void **state) {
    (void)state;
    const char *dir = temp_path("read_only");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chmod(temp_dir, 0755), 0); /* nobody must reach dir */
    for (int k = 0; k < WRITER_COUNT; k++) {
        const Writer *w = &WRITERS[k];
        const char *path = in_dir(dir, w->file);
        char err[1024] = "", why[2048], out[4096];
        assert_int_equal(w->write(path, 0, err, sizeof err), 0);
        Bytes old = read_bytes(path);
        assert_int_equal(chmod(dir, 0555), 0);
        WriteJob job = {w, path};
        int status = in_child(write_job, &job, (Injection){RLIM_INFINITY, 1}, out, sizeof out);
        assert_int_equal(chmod(dir, 0755), 0);
        if (status == SKIP_STATUS) {
            print_message("skipped: cannot become user nobody\n");
            skip();
        }
        if (status < 0) fail_msg("%s: %s", w->name, out);
        if (check_refused(w->name, status, out, path, &old, "Permission denied", why, sizeof why))
            fail_msg("%s", why);
        free(old.data);
        remove(path);
    }
    rmdir(dir);
}

/* ---- `cpool train --resume` ------------------------------------------------------------------ */

/* The old run: DIR/run, a tiny char-LM of 8 steps (checkpoints every 4) on TEMP/text.txt,
 * stopped by Ctrl-C after step 5, so --resume trains steps 6-8 and writes the checkpoint of
 * step 8 over the one of step 5. Its files, byte for byte. */
static const char *const RUN_FILES[] = {"checkpoint.safetensors", "loss.csv", "config.txt"};
enum { RUN_FILE_COUNT = 3 };

typedef struct OldRun {
    char dir[512];
    Bytes files[RUN_FILE_COUNT];
} OldRun;

static OldRun old_run;

/* How many refused runs named each of RUN_FILES (where the failure landed). */
static int errors_naming[RUN_FILE_COUNT];

static void errors_naming_text(char *out, size_t out_len) {
    snprintf(out, out_len, "%d in %s, %d in %s", errors_naming[0], RUN_FILES[0], errors_naming[1],
             RUN_FILES[1]);
    memset(errors_naming, 0, sizeof errors_naming);
}

static int train_job(void *arg) {
    char **argv = arg;
    int argc = 0;
    while (argv[argc]) argc++;
    return cmd_train(argc, argv);
}

static char *resume_argv[] = {"train",      "--resume", "--threads", "1", "--quiet",
                              "--no-plots", "--out",    old_run.dir, NULL};

/* The old run's files back in place, and nothing else in its directory. */
static int restore_old_run(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') remove(in_dir(dir, e->d_name));
    closedir(d);
    for (int f = 0; f < RUN_FILE_COUNT; f++)
        if (write_bytes(in_dir(dir, RUN_FILES[f]), old_run.files[f]) != 0) return -1;
    return 0;
}

static void write_corpus(const char *path) {
    static const char *const words[] = {"in",   "the", "beginning", "god",   "created",
                                        "and",  "was", "without",   "form",  "void",
                                        "said", "let", "there",     "light", "day"};
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    Rng rng;
    rng_seed(&rng, 11);
    for (long n = 0; n < 4096;)
        n += fprintf(fp, "%s%s", words[rng_int(&rng, 15)], rng_int(&rng, 9) ? " " : ".\n");
    assert_int_equal(fclose(fp), 0);
}

static int make_old_run(void **state) {
    (void)state;
    if (temp_dir_create("writes") != 0) return -1;
    write_corpus(temp_path("text.txt"));
    snprintf(old_run.dir, sizeof old_run.dir, "%s", temp_path("run"));
    char data[600];
    snprintf(data, sizeof data, "data=%s", temp_path("text.txt"));
    char *argv[] = {
        "train",   data,      "dim=16",       "heads=2", "layers=1",           "seq_len=16",
        "batch=4", "steps=8", "eval_every=4", "seed=3",  "checkpoint_every=4", "--threads",
        "1",       "--quiet", "--no-plots",   "--out",   old_run.dir,          NULL};
    char out[8192];
    interrupt_after_first_checkpoint = 1; /* in the child only: it has its own copy */
    int status = in_child(train_job, argv, NO_INJECTION, out, sizeof out);
    interrupt_after_first_checkpoint = 0;
    if (status != EXIT_INTERRUPTED) {
        fprintf(stderr, "the old run: status %d: %s\n", status, out);
        return -1;
    }
    for (int f = 0; f < RUN_FILE_COUNT; f++) {
        old_run.files[f] = read_bytes(in_dir(old_run.dir, RUN_FILES[f]));
        if (!old_run.files[f].data) return -1;
    }
    return 0;
}

static int free_old_run(void **state) {
    (void)state;
    for (int f = 0; f < RUN_FILE_COUNT; f++) free(old_run.files[f].data);
    return temp_dir_remove();
}

/* The resumed run failed as it should: exit status 1; exactly one line of stderr is the error,
 * "cpool train: PATH: ...", PATH a file of the run, with cause; the checkpoint and config.txt
 * byte-identical; loss.csv starts with the old one (rows are appended as the run goes); no temp
 * file, no result.txt. */
static int check_train_refused(const char *what, int status, const char *out, const char *dir,
                               const char *cause, char *why, size_t why_len) {
    const char *line = NULL, *next = out;
    int lines = 0;
    for (const char *at; (at = strstr(next, "cpool train: ")); next = at + 1)
        if (at == out || at[-1] == '\n') line = at, lines++;
    char message[2048] = "";
    if (line) snprintf(message, sizeof message, "%.*s", (int)strcspn(line + 13, "\n"), line + 13);
    const char *named = message;
    int named_file = -1;
    for (int f = 0; f < RUN_FILE_COUNT && line; f++)
        if (strncmp(message, in_dir(dir, RUN_FILES[f]), strlen(in_dir(dir, RUN_FILES[f]))) == 0)
            named = in_dir(dir, RUN_FILES[f]), named_file = f;
    if (status != EXIT_DATA || lines != 1 || named == message) {
        snprintf(why, why_len,
                 "%s: expected exit 1 and one error line naming a file of the run, "
                 "got status %d and stderr \"%s\"",
                 what, status, out);
        return -1;
    }
    if (check_refused(what, 1, message, named, NULL, cause, why, why_len)) return -1;
    errors_naming[named_file]++;
    for (int f = 0; f < RUN_FILE_COUNT; f++) {
        Bytes now = read_bytes(in_dir(dir, RUN_FILES[f]));
        const Bytes *old = &old_run.files[f];
        int kept =
            strcmp(RUN_FILES[f], "loss.csv") == 0
                ? now.data && now.size >= old->size && !memcmp(now.data, old->data, old->size)
                : same_bytes(now, *old);
        free(now.data);
        if (!kept) {
            snprintf(why, why_len, "%s: %s is not the old one (error \"%s\")", what, RUN_FILES[f],
                     message);
            return -1;
        }
    }
    if (access(in_dir(dir, "result.txt"), F_OK) == 0) {
        snprintf(why, why_len, "%s: a result.txt was written", what);
        return -1;
    }
    return 0;
}

static void test_a_train_under_a_file_size_limit_keeps_its_checkpoint(void **state) {
    (void)state;
    char out[16384], why[20000], what[160];
    /* the resumed run without a limit: the size of the checkpoint it writes */
    assert_int_equal(restore_old_run(old_run.dir), 0);
    int status = in_child(train_job, resume_argv, NO_INJECTION, out, sizeof out);
    if (status != 0) fail_msg("the resumed run without a limit: status %d: %s", status, out);
    Bytes fresh = read_bytes(in_dir(old_run.dir, "checkpoint.safetensors"));
    Bytes csv = read_bytes(in_dir(old_run.dir, "loss.csv"));
    size_t size = fresh.size, header_end = header_end_of(&fresh), csv_size = csv.size;
    free(fresh.data), free(csv.data);
    /* The checkpoint's header holds elapsed_seconds, whose text may be a few bytes longer or
     * shorter from run to run: limits stay 64 bytes clear of its end. Below the old loss.csv's
     * size, the setup's rewrite of loss.csv fails; from the final loss.csv's size on, the
     * checkpoint: in its header, at its end, and evenly spread between. */
    size_t limits[64];
    int n = 0;
    size_t old_csv = old_run.files[1].size;
    limits[n++] = 0, limits[n++] = old_csv / 2, limits[n++] = old_csv - 1;
    limits[n++] = csv_size + 1, limits[n++] = header_end / 2, limits[n++] = header_end - 16;
    for (int k = 1; k < 16; k++) limits[n++] = header_end + (size - 64 - header_end) * k / 16;
    limits[n++] = size - 64;
    for (int i = 0; i < n; i++) {
        snprintf(what, sizeof what,
                 "cpool train --resume, file size limit %zu (checkpoint %zu "
                 "bytes, data from %zu)",
                 limits[i], size, header_end);
        assert_int_equal(restore_old_run(old_run.dir), 0);
        status = in_child(train_job, resume_argv, (Injection){.file_size_limit = limits[i]}, out,
                          sizeof out);
        if (status < 0) fail_msg("%s: %s", what, out);
        if (check_train_refused(what, status, out, old_run.dir, "File too large", why, sizeof why))
            fail_msg("%s", why);
    }
    assert_int_equal(restore_old_run(old_run.dir), 0);
    status = in_child(train_job, resume_argv, (Injection){.file_size_limit = size + 64}, out,
                      sizeof out);
    if (status != 0) fail_msg("limit %zu: the run should succeed: %s", size + 64, out);
    char landed[160];
    errors_naming_text(landed, sizeof landed);
    print_message("cpool train --resume: refused at %d size limits (%s; checkpoint %zu bytes), "
                  "old files intact\n",
                  n, landed, size);
}

/* On the full tmpfs: the old run copied in, 0, 1, 2 ... pages left free. */
static int train_on_full_disk(const char *dir, int *cases, char *why, size_t why_len) {
    char run[1100], out[16384];
    snprintf(run, sizeof run, "%s/run", dir);
    *cases = 0;
    for (int free_pages = 0; free_pages < 4; free_pages++) {
        mkdir(run, 0755);
        if (restore_old_run(run) != 0) return snprintf(why, why_len, "cannot copy the run"), -1;
        if (fill_leaving(dir, free_pages, why, why_len) != 0) return -1;
        char *argv[] = {"train",      "--resume", "--threads", "1", "--quiet",
                        "--no-plots", "--out",    run,         NULL};
        int status = in_child(train_job, argv, NO_INJECTION, out, sizeof out);
        char what[128];
        snprintf(what, sizeof what, "cpool train --resume, full disk with %d pages free",
                 free_pages);
        int bad =
            check_train_refused(what, status, out, run, "No space left on device", why, why_len);
        remove(in_dir(dir, "fill"));
        if (bad) return -1;
        ++*cases;
    }
    errors_naming_text(why, why_len);
    return 0;
}

static void test_b_a_train_on_a_full_disk_keeps_its_checkpoint(void **state) {
    (void)state;
    run_on_tmpfs(train_on_full_disk, "cpool train --resume on a full tmpfs");
}

/* The run's directory read-only, the run as nobody: the setup's rewrite of loss.csv fails. A
 * directory on the checkpoint's temp path: the checkpoint of step 8 fails. */
typedef struct SquatJob {
    const char *dir;
} SquatJob;

static int squat_and_train(void *arg) {
    const SquatJob *job = arg;
    char squatter[1100];
    snprintf(squatter, sizeof squatter, "%s/checkpoint.safetensors.tmp.%ld", job->dir,
             (long)getpid());
    if (mkdir(squatter, 0755) != 0) return 99;
    return train_job(resume_argv);
}

static void test_c_a_train_that_cannot_write_keeps_its_checkpoint(void **state) {
    (void)state;
    char out[16384], why[20000];
    assert_int_equal(chmod(temp_dir, 0755), 0);
    assert_int_equal(restore_old_run(old_run.dir), 0);
    assert_int_equal(chmod(old_run.dir, 0555), 0);
    int status = in_child(train_job, resume_argv, (Injection){RLIM_INFINITY, 1}, out, sizeof out);
    assert_int_equal(chmod(old_run.dir, 0755), 0);
    if (status == SKIP_STATUS) {
        print_message("skipped: cannot become user nobody\n");
        skip();
    }
    if (check_train_refused("cpool train --resume in a read-only directory", status, out,
                            old_run.dir, "Permission denied", why, sizeof why))
        fail_msg("%s", why);

    assert_int_equal(restore_old_run(old_run.dir), 0);
    SquatJob job = {old_run.dir};
    status = in_child(squat_and_train, &job, NO_INJECTION, out, sizeof out);
    if (status == 99) fail_msg("could not make the squatting directory");
    /* the squatter is the test's: remove it before the no-temp-file check */
    DIR *d = opendir(old_run.dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, "checkpoint.safetensors.tmp.")) rmdir(in_dir(old_run.dir, e->d_name));
    closedir(d);
    if (check_train_refused("cpool train --resume, a directory on the checkpoint's temp path",
                            status, out, old_run.dir, "cannot create the temp file", why,
                            sizeof why))
        fail_msg("%s", why);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_file_size_limit_anywhere_leaves_the_old_file),
        cmocka_unit_test(test_b_a_full_disk_leaves_the_old_file),
        cmocka_unit_test(test_c_a_directory_on_the_temp_path_leaves_the_old_file),
        cmocka_unit_test(test_c_a_file_as_the_parent_directory_is_refused),
        cmocka_unit_test(test_c_a_directory_at_the_path_fails_the_rename),
        cmocka_unit_test(test_c_a_read_only_directory_leaves_the_old_file),
        cmocka_unit_test(test_a_train_under_a_file_size_limit_keeps_its_checkpoint),
        cmocka_unit_test(test_b_a_train_on_a_full_disk_keeps_its_checkpoint),
        cmocka_unit_test(test_c_a_train_that_cannot_write_keeps_its_checkpoint),
    };
    return cmocka_run_group_tests_name("failed writes leave the old file (" REAL_NAME ")", tests,
                                       make_old_run, free_old_run);
}
