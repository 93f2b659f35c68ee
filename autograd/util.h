/* util.h - errors, checked allocation and atomic file writes.
 *
 * Errors, not aborts. A function that reads user input (a file, a config value, a command line)
 * returns 0, or -1 with one line in an err buffer naming the file, field, expected and got; the
 * command prints it and exits 1 (2 for a usage error). Everything else that can go wrong deep
 * inside (an op given shapes that do not fit, a layer refusing its config, out of memory) calls
 * cpool_fail(), which formats one line and never returns. A command runs its work inside
 * cpool_try(), which turns any such failure into -1 and the line, so nothing in the library ever
 * calls exit(). A cpool_fail() with no try (and no handler) around it is a bug: it prints
 * "cpool: internal error: <message>" and abort()s, so the core dump shows where.
 */
/* clang-format off: the example keeps its layout */
/*
 *     typedef struct Job { Tape *tape; Tensor *a, *b; } Job;  // everything the body owns
 *     static void body(void *arg) {
 *         Job *job = arg;
 *         op_matmul(job->tape, job->a, job->b, 0, 0);       // shapes that do not fit
 *     }
 *     ...
 *     char err[512];
 *     if (cpool_try(body, &job, err, sizeof err) != 0)
 *         fprintf(stderr, "cpool: %s\n", err);              // "op_matmul: ..."
 *     tape_free(job.tape);                                  // freed on either path
 */
/* clang-format on */
/* Tests may still install their own handler (cpool_set_error_handler) that longjmp()s back into
 * the test; cpool_try is that pattern, packaged and nestable.
 */
#ifndef CPOOL_UTIL_H
#define CPOOL_UTIL_H

#include <stddef.h>
#include <stdio.h>

typedef void (*ErrorHandler)(const char *message, void *user);

/* Run body(arg). If cpool_fail() is called anywhere inside it, unwind (longjmp) back here and
 * return -1 with the failure's one line in err (cut to err_len; err may be NULL); else return 0
 * and leave err as the body left it (a body may report its own errors there).
 * Tries nest: the innermost catches. The previous handler (or try) is back in place when this
 * returns, on both paths.
 *
 * What a failed body leaves behind (the contract):
 *   - memory it allocated and stored where the caller can reach it (in *arg, in a ParamSet, a
 *     Tape) is the caller's to free as usual, after cpool_try returns: keep every owned pointer
 *     in arg, never only in a local of the body;
 *   - a tape's arena keeps owning its nodes and activations: tape_reset()/tape_free() reclaim
 *     them, a failed forward included;
 *   - memory a library function had allocated but not yet stored anywhere reachable when it
 *     failed (a half-built buffer) is lost: a bounded leak on a path that ends the command;
 *   - a body's own locals are gone (the longjmp skips the rest of the body), so what the caller
 *     needs after a failure lives in *arg; open files go the same way (use AtomicFile, whose temp
 *     file the caller removes with atomic_abort);
 *   - the body must run on the calling thread: a cpool_fail() on an OpenMP worker thread cannot
 *     unwind another thread's stack, so it is reported as an internal error (abort). */
int cpool_try(void (*body)(void *arg), void *arg, char *err, size_t err_len);

/* Install a handler (NULL restores the default: internal error, abort). Returns the previous
 * one; its user pointer is cpool_error_handler_user(), to read before and restore with it:
 *     void *previous_user = cpool_error_handler_user();
 *     ErrorHandler previous = cpool_set_error_handler(mine, &mine_state);
 *     ...
 *     cpool_set_error_handler(previous, previous_user);
 * A handler must not return (longjmp out of it); one that returns is treated like no handler. */
ErrorHandler cpool_set_error_handler(ErrorHandler handler, void *user);
void *cpool_error_handler_user(void);
/* Report a failure: format one line (newlines become spaces), hand it to the innermost
 * cpool_try (or installed handler). With neither, it is an internal error: print
 * "cpool: internal error: <message>" to stderr and abort(). Never returns, never exit()s. */
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

/* Atomic file writing: bytes go to "PATH.tmp.PID" (in PATH's directory, so the rename stays on
 * one file system); atomic_close() flushes, checks the stream's error flag, fsyncs, closes,
 * renames the temp file over PATH and fsyncs PATH's directory (which makes the rename itself
 * durable). A reader never sees a half-written file, and a crash, a full disk or a file size
 * limit never destroys the old one:
 *
 *     AtomicFile af;
 *     if (atomic_open(&af, "run/result.txt", err, sizeof err) != 0) return -1;
 *     if (fputs(text, af.fp) == EOF) { atomic_abort(&af); return path_error(...); }
 *     return atomic_close(&af, err, sizeof err);     // also catches an unchecked failed write
 *
 * Both return 0 on success, or -1 with one line in err that starts with PATH and ends with
 * strerror ("run/result.txt: write failed: File too large"). Any failure before the rename
 * removes the temp file and leaves PATH as it was. The one failure after it (the directory
 * cannot be synced: an I/O error) is reported too, though PATH then holds the new content. */
typedef struct AtomicFile {
    FILE *fp;
    char path[4096];
    char tmp_path[4200];
} AtomicFile;
int atomic_open(AtomicFile *af, const char *path, char *err, size_t err_len);
int atomic_close(AtomicFile *af, char *err, size_t err_len);
void atomic_abort(AtomicFile *af); /* discard the temp file, leave PATH untouched */

#endif
