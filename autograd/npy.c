/* npy.c - see npy.h.
 *
 * Loading is three steps, each refusing anything it does not fully understand:
 *   1. the preamble: magic, version, header length (checked against the file size);
 *   2. the header: a small recursive-descent parser for the one dict literal NumPy writes,
 *      {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }, in any key order;
 *   3. the data: exactly size * itemsize bytes must follow the header; they are read in chunks
 *      and each element decoded from little-endian bytes (portable to any host) and converted.
 * Nothing is allocated before the header has been checked against the file size, so a lying
 * header cannot make us allocate more than the file holds.
 */
#include "npy.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

/* --- Element types --------------------------------------------------------------------------- */

typedef enum NpyType { NPY_F4, NPY_F8, NPY_I4, NPY_I8 } NpyType;

static const struct {
    const char *descr;
    int itemsize;
    int is_float;
} npy_types[] = {
    [NPY_F4] = {"<f4", 4, 1},
    [NPY_F8] = {"<f8", 8, 1},
    [NPY_I4] = {"<i4", 4, 0},
    [NPY_I8] = {"<i8", 8, 0},
};

static uint32_t load_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_le64(const unsigned char *p) {
    return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

static void store_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void store_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A float element as double (exact: every float32 is a double). */
static double decode_float(NpyType type, const unsigned char *p) {
    if (type == NPY_F4) {
        uint32_t bits = load_le32(p);
        float value;
        memcpy(&value, &bits, sizeof value);
        return value;
    }
    uint64_t bits = load_le64(p);
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* An integer element (memcpy of the bits: the two's-complement reinterpretation is exact). */
static int64_t decode_int(NpyType type, const unsigned char *p) {
    if (type == NPY_I4) {
        uint32_t bits = load_le32(p);
        int32_t value;
        memcpy(&value, &bits, sizeof value);
        return value;
    }
    uint64_t bits = load_le64(p);
    int64_t value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* --- Errors: "PATH: message" ------------------------------------------------------------------ */

typedef struct NpyReader {
    const char *path;
    FILE *fp;
    char *err;
    size_t err_len;
    int version; /* major version: 1, 2 or 3 */
    NpyType type;
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    long size; /* product of the shape */
} NpyReader;

__attribute__((format(printf, 4, 5))) static int report(char *err, size_t err_len, const char *path,
                                                        const char *format, ...) {
    if (!err || err_len == 0) return -1;
    int used = snprintf(err, err_len, "%s: ", path);
    if (used >= 0 && (size_t)used < err_len) {
        va_list args;
        va_start(args, format);
        vsnprintf(err + used, err_len - (size_t)used, format, args);
        va_end(args);
    }
    return -1;
}

#define READER_FAIL(r, ...) report((r)->err, (r)->err_len, (r)->path, __VA_ARGS__)

/* --- Step 2: the header dict ------------------------------------------------------------------ */

typedef struct HeaderParser {
    NpyReader *reader;
    const unsigned char *begin, *at, *end;
} HeaderParser;

#define MAX_STRING 32 /* longest string value kept; longer ones are never valid here */

__attribute__((format(printf, 2, 3))) static int parse_fail(HeaderParser *p, const char *format,
                                                            ...) {
    char message[256];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    return READER_FAIL(p->reader, "header: %s (at header byte %ld)", message,
                       (long)(p->at - p->begin));
}

/* Whitespace between tokens, as Python allows inside braces. */
static void skip_space(HeaderParser *p) {
    while (p->at < p->end && (*p->at == ' ' || *p->at == '\t' || *p->at == '\n' || *p->at == '\r'))
        p->at++;
}

static int peek(const HeaderParser *p) {
    return p->at < p->end ? *p->at : -1;
}

static int expect_char(HeaderParser *p, char c, const char *where) {
    skip_space(p);
    if (peek(p) != c) return parse_fail(p, "expected '%c' %s", c, where);
    p->at++;
    return 0;
}

/* Copy text for a message, replacing anything not printable ASCII by '?'. */
static void printable(char *out, const unsigned char *text, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = text[i] >= 32 && text[i] < 127 ? (char)text[i] : '?';
    out[n] = '\0';
}

/* A quoted string, 'like this' or "like this", without escapes; into out (MAX_STRING bytes). */
static int parse_string(HeaderParser *p, char *out, const char *what) {
    skip_space(p);
    int quote = peek(p);
    if (quote != '\'' && quote != '"')
        return parse_fail(p, "expected a quoted string for %s", what);
    const unsigned char *start = ++p->at;
    while (p->at < p->end && *p->at != quote && *p->at != '\\' && *p->at != '\n') p->at++;
    if (peek(p) != quote) return parse_fail(p, "unterminated or escaped string for %s", what);
    size_t n = (size_t)(p->at - start);
    p->at++;
    if (n >= MAX_STRING) return parse_fail(p, "%s is %zu characters long, too long", what, n);
    printable(out, start, n);
    return 0;
}

/* A bare word (True, False, ...): letters only. Returns its length (0 if none). */
static size_t parse_word(HeaderParser *p, char *out) {
    skip_space(p);
    const unsigned char *start = p->at;
    while (p->at < p->end && p->at - start < MAX_STRING - 1 &&
           ((*p->at >= 'a' && *p->at <= 'z') || (*p->at >= 'A' && *p->at <= 'Z')))
        p->at++;
    size_t n = (size_t)(p->at - start);
    printable(out, start, n);
    return n;
}

static int parse_descr(HeaderParser *p) {
    skip_space(p);
    if (peek(p) != '\'' && peek(p) != '"')
        return parse_fail(p, "'descr' must be a string like '<f4' (structured arrays are not "
                             "supported)");
    char descr[MAX_STRING];
    if (parse_string(p, descr, "'descr'") != 0) return -1;
    for (int type = 0; type < (int)(sizeof npy_types / sizeof npy_types[0]); type++)
        if (strcmp(descr, npy_types[type].descr) == 0) {
            p->reader->type = (NpyType)type;
            return 0;
        }
    return READER_FAIL(p->reader,
                       "header: 'descr' is '%s' but only little-endian f4, f8, i4, i8 are "
                       "supported",
                       descr);
}

static int parse_fortran_order(HeaderParser *p) {
    char word[MAX_STRING];
    parse_word(p, word);
    if (strcmp(word, "False") == 0) return 0;
    if (strcmp(word, "True") == 0)
        return READER_FAIL(p->reader, "header: 'fortran_order' is True but only C order is "
                                      "supported (save np.ascontiguousarray(a))");
    return parse_fail(p, "'fortran_order' must be True or False");
}

/* One shape entry: a non-negative decimal integer (Python syntax: no leading zeros), with an
 * optional 'L' in versions 1 and 2 (Python 2 wrote 3L; NumPy strips it too). */
static int parse_dimension(HeaderParser *p, int index, int *out) {
    skip_space(p);
    int negative = peek(p) == '-';
    if (negative) p->at++;
    const unsigned char *digits = p->at;
    long long value = 0;
    while (p->at < p->end && *p->at >= '0' && *p->at <= '9') {
        if (value <= INT_MAX) value = 10 * value + (*p->at - '0');
        p->at++;
    }
    size_t n = (size_t)(p->at - digits);
    if (n == 0) return parse_fail(p, "'shape' entry %d is not a non-negative integer", index);
    if (n > 1 && digits[0] == '0')
        return parse_fail(p, "'shape' entry %d has a leading zero (not Python syntax)", index);
    if (p->reader->version <= 2 && (peek(p) == 'L' || peek(p) == 'l')) p->at++;
    int c = peek(p);
    if (c == '.' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
        (c >= 'A' && c <= 'Z'))
        return parse_fail(p, "'shape' entry %d is not an integer", index);
    if (negative && value != 0)
        return READER_FAIL(p->reader, "header: 'shape' entry %d is negative (-%lld)", index, value);
    if (value > INT_MAX)
        return READER_FAIL(p->reader, "header: 'shape' entry %d is larger than %d", index, INT_MAX);
    *out = (int)value;
    return 0;
}

/* A tuple of integers: (), (3,), (2, 3), (2, 3,) ... A lone (3) is a number, not a tuple. */
static int parse_shape(HeaderParser *p) {
    NpyReader *r = p->reader;
    skip_space(p);
    if (peek(p) != '(') return parse_fail(p, "'shape' must be a tuple like (2, 3)");
    p->at++;
    r->ndim = 0;
    int saw_comma = 0;
    for (;;) {
        skip_space(p);
        if (peek(p) == ')') break;
        int dimension = 0;
        if (parse_dimension(p, r->ndim, &dimension) != 0) return -1;
        if (r->ndim == TENSOR_MAX_DIMS)
            return READER_FAIL(r, "header: 'shape' has more than %d dimensions", TENSOR_MAX_DIMS);
        r->shape[r->ndim++] = dimension;
        skip_space(p);
        if (peek(p) == ',') {
            p->at++;
            saw_comma = 1;
        } else if (peek(p) != ')') {
            return parse_fail(p, "expected ',' or ')' in 'shape'");
        }
    }
    p->at++;
    if (r->ndim == 1 && !saw_comma)
        return READER_FAIL(r, "header: 'shape' is (%d), a number, not a tuple (write (%d,))",
                           r->shape[0], r->shape[0]);
    return 0;
}

/* The dict: each of the three keys exactly once, in any order, an optional trailing comma, and
 * nothing but whitespace after the closing brace. */
static int parse_header(NpyReader *r, const unsigned char *header, size_t length) {
    static const char *const keys[3] = {"descr", "fortran_order", "shape"};
    int seen[3] = {0, 0, 0};
    HeaderParser parser = {r, header, header, header + length}, *p = &parser;
    if (expect_char(p, '{', "at the start of the header dict") != 0) return -1;
    for (;;) {
        skip_space(p);
        if (peek(p) == '}') break;
        char key[MAX_STRING];
        if (parse_string(p, key, "a key") != 0) return -1;
        int k = 0;
        while (k < 3 && strcmp(key, keys[k]) != 0) k++;
        if (k == 3) return READER_FAIL(r, "header: unknown key '%s'", key);
        if (seen[k]++) return READER_FAIL(r, "header: key '%s' appears twice", key);
        if (expect_char(p, ':', "after a key") != 0) return -1;
        int status = k == 0 ? parse_descr(p) : k == 1 ? parse_fortran_order(p) : parse_shape(p);
        if (status != 0) return -1;
        skip_space(p);
        if (peek(p) == ',')
            p->at++;
        else if (peek(p) != '}')
            return parse_fail(p, "expected ',' or '}' after '%s'", key);
    }
    p->at++;
    skip_space(p);
    if (p->at != p->end) return parse_fail(p, "unexpected text after the closing '}'");
    for (int k = 0; k < 3; k++)
        if (!seen[k]) return READER_FAIL(r, "header: missing key '%s'", keys[k]);
    return 0;
}

/* --- Step 1 and 3: the file ------------------------------------------------------------------- */

/* Reads exactly n bytes, or fails saying the file ended (it may have shrunk since fstat). */
static int read_exact(NpyReader *r, void *buffer, size_t n, const char *what) {
    if (fread(buffer, 1, n, r->fp) == n) return 0;
    if (ferror(r->fp)) return READER_FAIL(r, "read error in the %s: %s", what, strerror(errno));
    return READER_FAIL(r, "file ended inside the %s", what);
}

/* The number of elements of the shape, or -1 if beyond what a Tensor can hold. */
static long shape_elements(const NpyReader *r) {
    for (int d = 0; d < r->ndim; d++)
        if (r->shape[d] == 0) return 0; /* before any product can overflow */
    long size = 1;
    for (int d = 0; d < r->ndim; d++) {
        if (size > LONG_MAX / 8 / r->shape[d]) return -1; /* size * itemsize must fit too */
        size *= r->shape[d];
    }
    return size;
}

/* Preamble, header and data size of the open file r->fp; leaves it at the first data byte. */
static int validate_npy(NpyReader *r) {
    struct stat info;
    if (fstat(fileno(r->fp), &info) != 0) return READER_FAIL(r, "cannot stat: %s", strerror(errno));
    if (S_ISDIR(info.st_mode)) return READER_FAIL(r, "is a directory, not a .npy file");
    if (!S_ISREG(info.st_mode)) return READER_FAIL(r, "is not a regular file");
    long long file_size = (long long)info.st_size;

    /* Step 1: "\x93NUMPY", major, minor, header length (uint16 in 1.0, uint32 in 2.0 and 3.0). */
    unsigned char preamble[12];
    if (file_size < 10)
        return READER_FAIL(r, "file is %lld bytes, too short for the 10-byte .npy preamble",
                           file_size);
    if (read_exact(r, preamble, 10, "preamble") != 0) return -1;
    if (memcmp(preamble, "\x93NUMPY", 6) != 0)
        return READER_FAIL(r, "not a .npy file (it does not start with \\x93NUMPY)");
    if (preamble[6] < 1 || preamble[6] > 3 || preamble[7] != 0)
        return READER_FAIL(r, "format version %d.%d is not supported (only 1.0, 2.0, 3.0)",
                           preamble[6], preamble[7]);
    r->version = preamble[6];
    long long preamble_bytes = r->version == 1 ? 10 : 12;
    if (file_size < preamble_bytes)
        return READER_FAIL(r, "file is %lld bytes, too short for the 12-byte version %d.0 preamble",
                           file_size, r->version);
    if (r->version > 1 && read_exact(r, preamble + 10, 2, "preamble") != 0) return -1;
    long long header_bytes = r->version == 1 ? (long long)(preamble[8] | preamble[9] << 8)
                                             : (long long)load_le32(preamble + 8);
    if (header_bytes > NPY_MAX_HEADER_BYTES)
        return READER_FAIL(r, "header length %lld is more than the %d bytes allowed", header_bytes,
                           NPY_MAX_HEADER_BYTES);
    if (preamble_bytes + header_bytes > file_size)
        return READER_FAIL(r, "header length %lld runs past the end of the file (%lld bytes)",
                           header_bytes, file_size);

    /* Step 2: the header dict. */
    unsigned char header[NPY_MAX_HEADER_BYTES];
    if (read_exact(r, header, (size_t)header_bytes, "header") != 0) return -1;
    if (parse_header(r, header, (size_t)header_bytes) != 0) return -1;

    /* Step 3: exactly size * itemsize bytes of data. */
    char shape[128];
    shape_string(r->ndim, r->shape, shape, sizeof shape);
    r->size = shape_elements(r);
    if (r->size < 0) return READER_FAIL(r, "header: shape %s has too many elements", shape);
    long long data_bytes = file_size - preamble_bytes - header_bytes;
    long long needed = (long long)r->size * npy_types[r->type].itemsize;
    if (data_bytes != needed)
        return READER_FAIL(r, "data is %lld bytes but shape %s of '%s' needs %lld (%s)", data_bytes,
                           shape, npy_types[r->type].descr, needed,
                           data_bytes < needed ? "file truncated" : "extra bytes at the end");
    return 0;
}

/* Opens path and validates it; on failure nothing stays open. */
static int open_npy(NpyReader *r) {
    r->fp = fopen(r->path, "rb");
    if (!r->fp) return READER_FAIL(r, "cannot open: %s", strerror(errno));
    if (validate_npy(r) == 0) return 0;
    fclose(r->fp);
    r->fp = NULL;
    return -1;
}

/* --- Conversions -------------------------------------------------------------------------------
 * Each converts `count` elements (bytes) that start at flat index `first` into out[first ...],
 * failing on the first value the destination type cannot hold exactly. */
typedef int (*ConvertFn)(NpyReader *r, const unsigned char *bytes, long first, long count,
                         void *out);

/* Is integer v exactly a real? x < 2^63 keeps the conversion back defined. */
static int int_fits_real(int64_t v) {
    real x = (real)v;
    return x < (real)0x1p63 && (int64_t)x == v;
}

static int int_fits_double(int64_t v) {
    double x = (double)v;
    return x < 0x1p63 && (int64_t)x == v;
}

static int convert_to_real(NpyReader *r, const unsigned char *bytes, long first, long count,
                           void *out) {
    real *values = (real *)out + first;
    int itemsize = npy_types[r->type].itemsize;
    for (long i = 0; i < count; i++, bytes += itemsize) {
        if (npy_types[r->type].is_float) {
            double v = decode_float(r->type, bytes);
            if (sizeof(real) < sizeof(double) && isfinite(v) && fabs(v) > FLT_MAX)
                return READER_FAIL(r, "element %ld is %.17g, beyond the float32 range", first + i,
                                   v);
            values[i] = (real)v;
        } else {
            int64_t v = decode_int(r->type, bytes);
            if (!int_fits_real(v))
                return READER_FAIL(r,
                                   "element %ld is %lld, which " REAL_NAME " cannot hold exactly",
                                   first + i, (long long)v);
            values[i] = (real)v;
        }
    }
    return 0;
}

static int convert_to_int(NpyReader *r, const unsigned char *bytes, long first, long count,
                          void *out) {
    int *values = (int *)out + first;
    int itemsize = npy_types[r->type].itemsize;
    for (long i = 0; i < count; i++, bytes += itemsize) {
        if (npy_types[r->type].is_float) {
            double v = decode_float(r->type, bytes);
            if (!(v >= INT_MIN && v <= INT_MAX) || v != floor(v)) /* NaN fails the first test */
                return READER_FAIL(r, "element %ld is %.17g, not an integer in int's range",
                                   first + i, v);
            values[i] = (int)v;
        } else {
            int64_t v = decode_int(r->type, bytes);
            if (v < INT_MIN || v > INT_MAX)
                return READER_FAIL(r, "element %ld is %lld, outside int's range", first + i,
                                   (long long)v);
            values[i] = (int)v;
        }
    }
    return 0;
}

static int convert_to_double(NpyReader *r, const unsigned char *bytes, long first, long count,
                             void *out) {
    double *values = (double *)out + first;
    int itemsize = npy_types[r->type].itemsize;
    for (long i = 0; i < count; i++, bytes += itemsize) {
        if (npy_types[r->type].is_float) {
            values[i] = decode_float(r->type, bytes);
        } else {
            int64_t v = decode_int(r->type, bytes);
            if (!int_fits_double(v))
                return READER_FAIL(r, "element %ld is %lld, which float64 cannot hold exactly",
                                   first + i, (long long)v);
            values[i] = (double)v;
        }
    }
    return 0;
}

/* Reads the r->size elements in chunks and converts each chunk into out. Closes r->fp. */
static int read_data(NpyReader *r, ConvertFn convert, void *out) {
    unsigned char chunk[8192];
    long itemsize = npy_types[r->type].itemsize, per_chunk = (long)sizeof chunk / itemsize;
    int status = 0;
    for (long first = 0; first < r->size && status == 0; first += per_chunk) {
        long count = r->size - first < per_chunk ? r->size - first : per_chunk;
        status = read_exact(r, chunk, (size_t)(count * itemsize), "data");
        if (status == 0) status = convert(r, chunk, first, count, out);
    }
    fclose(r->fp);
    r->fp = NULL;
    return status;
}

/* --- Loading ---------------------------------------------------------------------------------- */

int npy_load(const char *path, Tensor **out, char *err, size_t err_len) {
    NpyReader r = {.path = path, .err = err, .err_len = err_len};
    *out = NULL;
    if (open_npy(&r) != 0) return -1;
    Tensor *t = tensor_create(r.ndim, r.shape, 0);
    if (read_data(&r, convert_to_real, t->data) != 0) {
        tensor_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

/* The flat loaders: a malloc'd array of element_bytes per value, plus the shape. */
static int load_flat(const char *path, ConvertFn convert, size_t element_bytes, void **values,
                     int *ndim, int shape[TENSOR_MAX_DIMS], char *err, size_t err_len) {
    NpyReader r = {.path = path, .err = err, .err_len = err_len};
    *values = NULL;
    if (open_npy(&r) != 0) return -1;
    void *buffer = xcalloc((size_t)r.size, element_bytes);
    if (read_data(&r, convert, buffer) != 0) {
        free(buffer);
        return -1;
    }
    *values = buffer;
    *ndim = r.ndim;
    for (int d = 0; d < TENSOR_MAX_DIMS; d++) shape[d] = d < r.ndim ? r.shape[d] : 1;
    return 0;
}

int npy_load_ints(const char *path, int **values, int *ndim, int shape[TENSOR_MAX_DIMS], char *err,
                  size_t err_len) {
    return load_flat(path, convert_to_int, sizeof(int), (void **)values, ndim, shape, err, err_len);
}

int npy_load_doubles(const char *path, double **values, int *ndim, int shape[TENSOR_MAX_DIMS],
                     char *err, size_t err_len) {
    return load_flat(path, convert_to_double, sizeof(double), (void **)values, ndim, shape, err,
                     err_len);
}

/* --- Saving ----------------------------------------------------------------------------------- */

/* The header exactly as NumPy 1.24 writes it: the dict with sorted keys and a trailing ", ",
 * 21 - len(str(shape[0])) spaces of room to grow the first axis in place, then spaces and a
 * newline so that preamble + header is a multiple of 64 bytes (64 more if it already was).
 * At most 60 + 6 * 12 (the dict) + 21 + 64 + 1 = 218 bytes. Returns the header length. */
#define SAVE_HEADER_BYTES 256

static size_t format_header(const Tensor *t, char header[SAVE_HEADER_BYTES]) {
    char shape[96] = "(";
    for (int d = 0; d < t->ndim; d++) {
        size_t used = strlen(shape);
        snprintf(shape + used, sizeof shape - used, d ? ", %d" : "%d", t->shape[d]);
    }
    strcat(shape, t->ndim == 1 ? ",)" : ")");
    const char *descr = sizeof(real) == 4 ? "<f4" : "<f8";
    int n = snprintf(header, SAVE_HEADER_BYTES,
                     "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    if (t->ndim > 0) {
        char first[16];
        int growth = 21 - snprintf(first, sizeof first, "%d", t->shape[0]);
        n += snprintf(header + n, SAVE_HEADER_BYTES - (size_t)n, "%*s", growth, "");
    }
    int padding = 64 - (10 + n + 1) % 64;
    n += snprintf(header + n, SAVE_HEADER_BYTES - (size_t)n, "%*s\n", padding, "");
    return (size_t)n;
}

/* Writes t->data little-endian, a chunk at a time. Returns 0 or -1 (check ferror). */
static int write_data(FILE *fp, const Tensor *t) {
    unsigned char chunk[8192];
    const long per_chunk = (long)(sizeof chunk / sizeof(real));
    for (long first = 0; first < t->size; first += per_chunk) {
        long count = t->size - first < per_chunk ? t->size - first : per_chunk;
        for (long i = 0; i < count; i++) {
            real value = t->data[first + i];
            if (sizeof(real) == 4) {
                uint32_t bits;
                memcpy(&bits, &value, 4);
                store_le32(chunk + 4 * i, bits);
            } else {
                uint64_t bits;
                memcpy(&bits, &value, 8);
                store_le64(chunk + 8 * i, bits);
            }
        }
        size_t bytes = (size_t)count * sizeof(real);
        if (fwrite(chunk, 1, bytes, fp) != bytes) return -1;
    }
    return 0;
}

int npy_save(const char *path, const Tensor *t, char *err, size_t err_len) {
    char header[SAVE_HEADER_BYTES];
    size_t header_bytes = format_header(t, header);
    unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    preamble[8] = (unsigned char)(header_bytes & 0xff);
    preamble[9] = (unsigned char)(header_bytes >> 8);

    AtomicFile file;
    if (atomic_open(&file, path, err, err_len) != 0) return -1;
    if (fwrite(preamble, 1, sizeof preamble, file.fp) != sizeof preamble ||
        fwrite(header, 1, header_bytes, file.fp) != header_bytes || write_data(file.fp, t) != 0) {
        int saved_errno = errno;
        atomic_abort(&file);
        return report(err, err_len, path, "write failed: %s", strerror(saved_errno));
    }
    return atomic_close(&file, err, err_len);
}
