/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char last_error[1024];

/* The end of every failure nobody catches: a broken invariant, reported and dumped (abort), never
 * a quiet exit with status 1, which would look like an ordinary error to the caller. */
static _Noreturn void internal_error(const char *message) {
    fprintf(stderr, "cpool: internal error: %s\n", message);
    fflush(stderr);
    abort(); /* lint: the library's one abort (util.h) */
}

static void default_handler(const char *message, void *user) {
    (void)user;
    internal_error(message);
}

static ErrorHandler error_handler = default_handler;
static void *error_user = NULL;

ErrorHandler cpool_set_error_handler(ErrorHandler handler, void *user) {
    ErrorHandler previous = error_handler;
    error_handler = handler ? handler : default_handler;
    error_user = user;
    return previous;
}

/* One cpool_try in progress: it is the installed handler's user pointer while its body runs, and
 * keeps the handler it replaced. It lives in cpool_try's frame, which outlives the body. */
typedef struct TryFrame {
    jmp_buf escape;
    pthread_t owner; /* the thread that may unwind to escape */
    ErrorHandler previous;
    void *previous_user;
} TryFrame;

static void try_handler(const char *message, void *user) {
    TryFrame *frame = user;
    if (!pthread_equal(pthread_self(), frame->owner)) internal_error(message);
    longjmp(frame->escape, 1);
}

int cpool_try(void (*body)(void *arg), void *arg, char *err, size_t err_len) {
    TryFrame frame = {.owner = pthread_self()};
    frame.previous_user = cpool_error_handler_user();
    frame.previous = cpool_set_error_handler(try_handler, &frame);
    /* Nothing below changes a local between setjmp and longjmp, so none needs volatile. */
    if (setjmp(frame.escape) != 0) {
        cpool_set_error_handler(frame.previous, frame.previous_user);
        if (err && err_len) snprintf(err, err_len, "%s", last_error);
        return -1;
    }
    body(arg);
    cpool_set_error_handler(frame.previous, frame.previous_user);
    return 0;
}

int path_error(char *err, size_t err_len, const char *path, const char *format, ...) {
    int n = snprintf(err, err_len, "%s: ", path);
    if (n >= 0 && (size_t)n < err_len) {
        va_list args;
        va_start(args, format);
        vsnprintf(err + n, err_len - (size_t)n, format, args);
        va_end(args);
    }
    return -1;
}

void *cpool_error_handler_user(void) {
    return error_user;
}

const char *cpool_last_error(void) {
    return last_error;
}

void cpool_fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    for (char *c = last_error; *c; c++) /* one line, whatever the message held */
        if (*c == '\n' || *c == '\r') *c = ' ';
    error_handler(last_error, error_user);
    internal_error(last_error); /* a handler that returned caught nothing */
}

void *xmalloc_at(size_t bytes, const char *file, int line) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) cpool_fail("out of memory allocating %zu bytes (%s:%d)", bytes, file, line);
    return p;
}

void *xcalloc_at(size_t n, size_t bytes, const char *file, int line) {
    void *p = calloc(n ? n : 1, bytes ? bytes : 1);
    if (!p) cpool_fail("out of memory allocating %zu x %zu bytes (%s:%d)", n, bytes, file, line);
    return p;
}

void *xrealloc_at(void *p, size_t bytes, const char *file, int line) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) cpool_fail("out of memory reallocating %zu bytes (%s:%d)", bytes, file, line);
    return q;
}

int atomic_open(AtomicFile *af, const char *path, char *err, size_t err_len) {
    af->fp = NULL;
    af->tmp_path[0] = '\0';
    if (strlen(path) >= sizeof af->path) return path_error(err, err_len, path, "path too long");
    strcpy(af->path, path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        path_error(err, err_len, path, "cannot create the temp file '%s': %s", af->tmp_path,
                   strerror(errno));
        af->tmp_path[0] = '\0'; /* not ours: an atomic_abort() now must not remove it */
        return -1;
    }
    return 0;
}

/* fsync the directory that holds path, so that the rename which put path in place survives a
 * power loss too (the rename changes the directory, not the file). A directory that cannot be
 * opened for reading, or a file system that does not sync directories (EINVAL, ENOTSUP, EROFS),
 * is not an error: there is nothing more to do. Returns 0, or an errno. */
static int sync_directory_of(const char *path) {
    char dir[sizeof((AtomicFile *)0)->path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else
        slash[slash == dir ? 1 : 0] = '\0'; /* "/x" -> "/", "a/b/x" -> "a/b" */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 0;
    int code = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return code == EINVAL || code == ENOTSUP || code == EROFS ? 0 : code;
}

/* The steps in order, the first failure wins: flush stdio's buffer (the last write(2)s happen
 * here, so a full disk or a file size limit usually shows up at this point), the stream's error
 * flag (an earlier fwrite or fputs the caller did not check), fsync (the data on the disk before
 * the name points at it), fclose, rename. On any failure the temp file is removed and PATH keeps
 * its old content. Then the directory is synced; if that fails, PATH already holds the new file
 * but may not after a power loss, which is reported too. */
int atomic_close(AtomicFile *af, char *err, size_t err_len) {
    int earlier_errno = errno; /* the cause of a failed write the caller made just before */
    const char *step = NULL;
    int code = 0;
    if (fflush(af->fp) != 0)
        step = "write failed", code = errno;
    else if (ferror(af->fp))
        step = "write failed", code = earlier_errno ? earlier_errno : EIO;
    else if (fsync(fileno(af->fp)) != 0)
        step = "cannot sync to disk", code = errno;
    if (fclose(af->fp) != 0 && !step) step = "write failed", code = errno;
    af->fp = NULL;
    if (!step && rename(af->tmp_path, af->path) != 0)
        step = "cannot rename temp file into place", code = errno;
    if (step) {
        remove(af->tmp_path);
        return path_error(err, err_len, af->path, "%s: %s", step, strerror(code));
    }
    code = sync_directory_of(af->path);
    if (code)
        return path_error(err, err_len, af->path,
                          "written, but its directory cannot be synced to disk: %s",
                          strerror(code));
    return 0;
}

void atomic_abort(AtomicFile *af) {
    int saved_errno = errno; /* callers report the failed write's errno after this */
    if (af->fp) fclose(af->fp);
    af->fp = NULL;
    if (af->tmp_path[0]) remove(af->tmp_path);
    errno = saved_errno;
}
