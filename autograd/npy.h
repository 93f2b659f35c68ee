/* npy.h - read and write NumPy .npy files.
 *
 * A .npy file is a 10- or 12-byte preamble, a header that is a Python dict literal, and the raw
 * array bytes in C order:
 *
 *     \x93NUMPY 01 00  <header length, uint16 LE>  {'descr': '<f4', 'fortran_order': False,
 *     'shape': (2, 3), }<spaces>\n  <2 * 3 little-endian float32 values>
 *
 * Version 2.0 has a uint32 header length, version 3.0 is 2.0 with a UTF-8 header; all three are
 * read. The element types read are the little-endian '<f4', '<f8', '<i4' and '<i8' (float32,
 * float64, int32, int64), C order only, up to TENSOR_MAX_DIMS dimensions. Everything else (big
 * endian, other types, Fortran order, a malformed header, a file too short or too long for its
 * shape) is rejected with one line in err that starts with the path and says what was wrong:
 *
 *     x.npy: header: 'descr' is '>f4' but only little-endian f4, f8, i4, i8 are supported
 *
 * Every function returns 0 on success, or -1 with that line in err and nothing allocated. The
 * loader never reads past what it was given, whatever the file holds.
 *
 *     char err[256];
 *     Tensor *x;
 *     if (npy_load("weights.npy", &x, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); ... }
 *     ... x->data holds the values as `real`, x->requires_grad is 0 ...
 *     if (npy_save("out.npy", x, err, sizeof err) != 0) ...   // np.load("out.npy") in Python
 *     tensor_free(x);
 *
 *     int *ids, ndim, shape[TENSOR_MAX_DIMS];
 *     if (npy_load_ints("targets.npy", &ids, &ndim, shape, err, sizeof err) == 0) free(ids);
 *
 * Conversions are exact or refused: a value that `real` (or int) cannot hold exactly is an error
 * naming the element, never silently rounded. Precisely:
 *   - npy_load: i4 and i8 values must be exactly representable in `real` (|v| <= 2^24 always is
 *     in float32, |v| <= 2^53 in float64). f8 values in the float32 build are rounded to nearest
 *     (that is what float32 means) but a finite value beyond the float32 range is an error rather
 *     than an infinity; NaN and infinities pass through.
 *   - npy_load_ints: i4 and i8 values must lie in the range of int; f4 and f8 values must also be
 *     integers (no fraction, not NaN or infinite).
 *   - npy_load_doubles: f4, f8, i4 exactly; i8 values must be exactly representable in double.
 */
#ifndef CPOOL_NPY_H
#define CPOOL_NPY_H

#include <stddef.h>

#include "tensor.h"

/* The largest header accepted, in bytes: the limit NumPy itself applies when loading (numpy's
 * _MAX_HEADER_SIZE); a real header for at most 6 dimensions is under 200 bytes. */
#define NPY_MAX_HEADER_BYTES 10000

/* Load an array of any supported type into a new owned tensor (tensor_create, requires_grad 0)
 * holding the values converted to `real`. A 0-d array gives a 0-d tensor. */
int npy_load(const char *path, Tensor **out, char *err, size_t err_len);

/* Load integer ids (class labels, token ids) into a malloc'd array of shape[0..ndim-1]; free it
 * with free(). Accepts i4 and i8, and f4 and f8 whose every value is an integer in int's range. */
int npy_load_ints(const char *path, int **values, int *ndim, int shape[TENSOR_MAX_DIMS], char *err,
                  size_t err_len);

/* Load any supported array as double, whatever the build's `real` (reference values for tests and
 * tools that want the full precision of a float64 file). Free with free(). */
int npy_load_doubles(const char *path, double **values, int *ndim, int shape[TENSOR_MAX_DIMS],
                     char *err, size_t err_len);

/* Write t->data as '<f4' (float32 build) or '<f8' (float64 build), format version 1.0, with the
 * header NumPy itself would write (same padding: np.save of the same array gives the same bytes).
 * The file is written atomically (util.h): PATH either keeps its old content or has the new. */
int npy_save(const char *path, const Tensor *t, char *err, size_t err_len);

#endif
