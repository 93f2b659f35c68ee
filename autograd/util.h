/* util.h - errors, checked allocation and atomic file writes.
 *
 * Every failure in the library goes through cpool_fail(): it formats one line, hands it to the
 * error handler and never returns. The default handler prints "cpool: <message>" to stderr and
 * exits with status 1, which is what a command-line user wants. Tests install their own handler
 * that longjmp()s back into the test, so bad-input paths can be asserted without killing the run:
 *
 *     static jmp_buf escape;
 *     static void catch_error(const char *msg, void *user) { (void)msg; longjmp(*(jmp_buf *)user,
 * 1); } cpool_set_error_handler(catch_error, &escape); if (setjmp(escape) == 0) op_matmul(tape, a,
 * b, 0, 0);   // shapes do not fit else puts(cpool_last_error());                          //
 * "op_matmul: ..."
 */
#ifndef CPOOL_UTIL_H
#define CPOOL_UTIL_H

#include <stddef.h>
#include <stdio.h>

typedef void (*ErrorHandler)(const char *message, void *user);

/* Install a handler (NULL restores the default print-and-exit). Returns the previous one; its
 * user pointer is cpool_error_handler_user(), to read before and restore with it:
 *     void *previous_user = cpool_error_handler_user();
 *     ErrorHandler previous = cpool_set_error_handler(mine, &mine_state);
 *     ...
 *     cpool_set_error_handler(previous, previous_user);                                      */
ErrorHandler cpool_set_error_handler(ErrorHandler handler, void *user);
void *cpool_error_handler_user(void);
/* Report a fatal error: format it, call the handler; if the handler returns, exit(1). */
_Noreturn void cpool_fail(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* The text of the most recent cpool_fail() (empty if none). */
const char *cpool_last_error(void);

/* A file error for the err-buffer convention: "path: " then the formatted message, cut to
 * err_len. Returns -1, so a reader can `return path_error(err, err_len, path, "...", ...);`. */
int path_error(char *err, size_t err_len, const char *path, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* Checked allocation: on failure, cpool_fail() names the caller's file and line. */
#define xmalloc(bytes)     xmalloc_at((bytes), __FILE__, __LINE__)
#define xcalloc(n, bytes)  xcalloc_at((n), (bytes), __FILE__, __LINE__)
#define xrealloc(p, bytes) xrealloc_at((p), (bytes), __FILE__, __LINE__)
void *xmalloc_at(size_t bytes, const char *file, int line);
void *xcalloc_at(size_t n, size_t bytes, const char *file, int line);
void *xrealloc_at(void *p, size_t bytes, const char *file, int line);

/* Atomic file writing: bytes go to "PATH.tmp.PID"; atomic_close() flushes, fsyncs and renames it
 * over PATH, so a reader never sees a half-written file and a crash never destroys the old one.
 * Both return 0 on success, or -1 with a one-line reason in err. */
typedef struct AtomicFile {
    FILE *fp;
    char path[4096];
    char tmp_path[4200];
} AtomicFile;
int atomic_open(AtomicFile *af, const char *path, char *err, size_t err_len);
int atomic_close(AtomicFile *af, char *err, size_t err_len);
void atomic_abort(AtomicFile *af); /* discard the temp file, leave PATH untouched */

#endif
