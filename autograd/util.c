/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char last_error[1024];

static void default_handler(const char *message, void *user) {
    (void)user;
    fprintf(stderr, "cpool: %s\n", message);
    exit(1);
}

static ErrorHandler error_handler = default_handler;
static void *error_user = NULL;

ErrorHandler cpool_set_error_handler(ErrorHandler handler, void *user) {
    ErrorHandler previous = error_handler;
    error_handler = handler ? handler : default_handler;
    error_user = user;
    return previous;
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
    error_handler(last_error, error_user);
    exit(1); /* a handler that returns gets the default ending */
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
    if (strlen(path) >= sizeof af->path) {
        snprintf(err, err_len, "%s: path too long", path);
        return -1;
    }
    strcpy(af->path, path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        snprintf(err, err_len, "%s: cannot create: %s", af->tmp_path, strerror(errno));
        return -1;
    }
    return 0;
}

int atomic_close(AtomicFile *af, char *err, size_t err_len) {
    int failed = ferror(af->fp) || fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0;
    int saved_errno = errno;
    if (fclose(af->fp) != 0 && !failed) failed = 1, saved_errno = errno;
    af->fp = NULL;
    if (failed) {
        snprintf(err, err_len, "%s: write failed: %s", af->path, strerror(saved_errno));
        remove(af->tmp_path);
        return -1;
    }
    if (rename(af->tmp_path, af->path) != 0) {
        snprintf(err, err_len, "%s: cannot rename temp file into place: %s", af->path,
                 strerror(errno));
        remove(af->tmp_path);
        return -1;
    }
    return 0;
}

void atomic_abort(AtomicFile *af) {
    if (af->fp) fclose(af->fp);
    af->fp = NULL;
    remove(af->tmp_path);
}
