/* test_npy.c - reading and writing .npy files: round trips, files written by NumPy, and a large
 * set of malformed files (each must be refused with one line that names the file), plus a
 * random byte-flipping loop that must never crash (run it under `make asan`).
 *
 * The NumPy-written files are in tests/reference/npy/ (made by tests/reference/make_fixtures.py);
 * the tests run from the repository root, as `make test` does. Malformed files are written into
 * a fresh temporary directory that is removed afterwards. */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"
#include "rng.h"

#define FIXTURES "tests/reference/npy/"

static char temp_dir[64];

static int make_temp_dir(void **state) {
    (void)state;
    strcpy(temp_dir, "/tmp/test_npy_XXXXXX");
    return mkdtemp(temp_dir) ? 0 : -1;
}

/* Removes everything the tests left in the temporary directory (files and empty directories). */
static int remove_temp_dir(void **state) {
    (void)state;
    DIR *dir = opendir(temp_dir);
    if (!dir) return -1;
    struct dirent *entry;
    char path[512];
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", temp_dir, entry->d_name);
        chmod(path, 0700);
        if (remove(path) != 0) fprintf(stderr, "could not remove %s\n", path);
    }
    closedir(dir);
    return rmdir(temp_dir);
}

/* "TEMP/name" in a static buffer (one at a time is all a test needs). */
static const char *temp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", temp_dir, name);
    return path;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* The whole content of a file into a malloc'd buffer. */
static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s (run the tests from the repository root)", path);
    unsigned char *bytes = NULL;
    size_t used = 0, capacity = 0;
    for (;;) {
        if (used == capacity) bytes = realloc(bytes, capacity = 2 * capacity + 1024);
        size_t got = fread(bytes + used, 1, capacity - used, fp);
        if (got == 0) break;
        used += got;
    }
    fclose(fp);
    *n = used;
    return bytes;
}

/* A .npy file from its parts: magic, version major.0, the header length (uint16 for version 1,
 * uint32 otherwise), the header text as given, then data_bytes bytes of 0x3f. */
static const char *write_npy(const char *name, int major, const char *header, size_t data_bytes) {
    const char *path = temp_path(name);
    size_t header_bytes = strlen(header), preamble_bytes = major == 1 ? 10 : 12;
    size_t total = preamble_bytes + header_bytes + data_bytes;
    unsigned char *file = malloc(total);
    memcpy(file, "\x93NUMPY", 6);
    file[6] = (unsigned char)major;
    file[7] = 0;
    for (size_t i = 0; i < preamble_bytes - 8; i++)
        file[8 + i] = (unsigned char)(header_bytes >> (8 * i));
    memcpy(file + preamble_bytes, header, header_bytes);
    memset(file + preamble_bytes + header_bytes, 0x3f, data_bytes);
    write_bytes(path, file, total);
    free(file);
    return path;
}

/* The error starts with the path and mentions `text`. */
static void assert_error_names_file(const char *err, const char *path, const char *text) {
    if (strncmp(err, path, strlen(path)) != 0 || err[strlen(path)] != ':')
        fail_msg("error \"%s\" does not start with the file name %s", err, path);
    if (!strstr(err, text)) fail_msg("error \"%s\" does not mention \"%s\"", err, text);
    if (strchr(err, '\n')) fail_msg("error \"%s\" is more than one line", err);
}

/* Save errors from util.h's atomic_open name the temp file PATH.tmp.PID: the path comes first. */
static void assert_save_error(const char *err, const char *path, const char *text) {
    if (strncmp(err, path, strlen(path)) != 0)
        fail_msg("error \"%s\" does not start with the file name %s", err, path);
    if (!strstr(err, text)) fail_msg("error \"%s\" does not mention \"%s\"", err, text);
}

static void expect_load_fails(const char *path, const char *text) {
    char err[512] = "";
    Tensor *t = (Tensor *)&err; /* must be reset to NULL */
    if (npy_load(path, &t, err, sizeof err) != -1)
        fail_msg("npy_load(%s) succeeded, expected an error mentioning \"%s\"", path, text);
    assert_null(t);
    assert_error_names_file(err, path, text);
}

/* A problem with the file itself: every loader refuses it with the same message. */
static void expect_all_loaders_fail(const char *path, const char *text) {
    expect_load_fails(path, text);
    char err[512] = "";
    int *ids = (int *)&err, ndim, shape[TENSOR_MAX_DIMS];
    assert_int_equal(npy_load_ints(path, &ids, &ndim, shape, err, sizeof err), -1);
    assert_null(ids);
    assert_error_names_file(err, path, text);
    double *values = (double *)&err;
    assert_int_equal(npy_load_doubles(path, &values, &ndim, shape, err, sizeof err), -1);
    assert_null(values);
    assert_error_names_file(err, path, text);
}

static Tensor *load_ok(const char *path) {
    char err[512] = "";
    Tensor *t = NULL;
    if (npy_load(path, &t, err, sizeof err) != 0) fail_msg("npy_load: %s", err);
    return t;
}

static void assert_shape(const Tensor *t, int ndim, const int *shape) {
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
}

/* --- Round trips ----------------------------------------------------------------------------- */

static void round_trip(int ndim, const int *shape) {
    char err[512] = "";
    Tensor *t = tensor_create(ndim, shape, 0);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)(0.1 * (double)i - 3.7);
    const char *path = temp_path("round_trip.npy");
    if (npy_save(path, t, err, sizeof err) != 0) fail_msg("npy_save: %s", err);
    Tensor *back = load_ok(path);
    assert_shape(back, ndim, shape);
    assert_int_equal(back->size, t->size);
    assert_int_equal(back->requires_grad, 0);
    for (long i = 0; i < t->size; i++)
        if (back->data[i] != t->data[i])
            fail_msg("element %ld: saved %.17g, loaded %.17g", i, (double)t->data[i],
                     (double)back->data[i]);
    tensor_free(t);
    tensor_free(back);
}

static void save_then_load_gives_the_same_tensor_bit_for_bit(void **state) {
    (void)state;
    round_trip(0, NULL);
    round_trip(1, (int[]){7});
    round_trip(2, (int[]){3, 5});
    round_trip(6, (int[]){2, 1, 3, 1, 2, 4});
    round_trip(1, (int[]){0});
    round_trip(3, (int[]){2, 0, 3});
    round_trip(1, (int[]){5000}); /* more than one 8 KB chunk */
}

static void special_values_survive_a_round_trip(void **state) {
    (void)state;
    char err[512] = "";
    Tensor *t = tensor_create(1, (int[]){5}, 0);
    t->data[0] = (real)INFINITY;
    t->data[1] = -(real)INFINITY;
    t->data[2] = (real)NAN;
    t->data[3] = -(real)0.0;
    t->data[4] = sizeof(real) == 4 ? (real)1e-45 : (real)4.9e-324; /* smallest subnormal */
    const char *path = temp_path("special.npy");
    assert_int_equal(npy_save(path, t, err, sizeof err), 0);
    Tensor *back = load_ok(path);
    assert_true(isinf(back->data[0]) && back->data[0] > 0);
    assert_true(isinf(back->data[1]) && back->data[1] < 0);
    assert_true(isnan(back->data[2]));
    assert_true(back->data[3] == 0 && signbit(back->data[3]));
    assert_true(back->data[4] == t->data[4] && back->data[4] > 0);
    tensor_free(t);
    tensor_free(back);
}

/* np.save of the same array writes the same bytes: same header text, padding and data. */
static void save_writes_exactly_what_numpy_writes(void **state) {
    (void)state;
    const char *numpy_file = sizeof(real) == 4 ? FIXTURES "f4_2x3.npy" : FIXTURES "f8_2x3.npy";
    const char *numpy_files[] = {numpy_file, FIXTURES "f8_scalar.npy", FIXTURES "f8_empty.npy"};
    /* The 0-d and empty fixtures are float64, which only the float64 build writes. */
    int n_files = sizeof(real) == 8 ? 3 : 1;
    for (int f = 0; f < n_files; f++) {
        char err[512] = "";
        Tensor *t = load_ok(numpy_files[f]);
        const char *path = temp_path("resaved.npy");
        assert_int_equal(npy_save(path, t, err, sizeof err), 0);
        size_t n_ours, n_numpy;
        unsigned char *ours = read_bytes(path, &n_ours),
                      *numpy = read_bytes(numpy_files[f], &n_numpy);
        if (n_ours != n_numpy || memcmp(ours, numpy, n_ours) != 0)
            fail_msg("%s: our file (%zu bytes) differs from NumPy's (%zu bytes)", numpy_files[f],
                     n_ours, n_numpy);
        free(ours);
        free(numpy);
        tensor_free(t);
    }
}

/* --- Files written by NumPy ------------------------------------------------------------------- */

static void assert_values(const Tensor *t, const double *expected, const char *what) {
    for (long i = 0; i < t->size; i++)
        if (t->data[i] != (real)expected[i])
            fail_msg("%s: element %ld: expected %.17g, got %.17g", what, i,
                     (double)(real)expected[i], (double)t->data[i]);
}

static void reads_float_and_int_files_written_by_numpy(void **state) {
    (void)state;
    /* make_fixtures.py wrote [[0.5, -1.25, 3], [4, -5.5, 0.001]] as float32 and float64. */
    const double values[6] = {0.5, -1.25, 3, 4, -5.5, 0.001};
    double as_float32[6];
    for (int i = 0; i < 6; i++) as_float32[i] = (float)values[i];

    Tensor *f4 = load_ok(FIXTURES "f4_2x3.npy");
    assert_shape(f4, 2, (int[]){2, 3});
    assert_values(f4, as_float32, "f4_2x3.npy");
    Tensor *f8 = load_ok(FIXTURES "f8_2x3.npy");
    assert_shape(f8, 2, (int[]){2, 3});
    assert_values(f8, values, "f8_2x3.npy");

    Tensor *i4 = load_ok(FIXTURES "i4_3.npy");
    assert_shape(i4, 1, (int[]){3});
    assert_values(i4, (double[]){-3, 0, 7}, "i4_3.npy");
    Tensor *i8 = load_ok(FIXTURES "i8_2x2.npy");
    assert_shape(i8, 2, (int[]){2, 2});
    assert_values(i8, (double[]){1, -2, 40000, -70000}, "i8_2x2.npy");
    tensor_free(f4);
    tensor_free(f8);
    tensor_free(i4);
    tensor_free(i8);
}

static void reads_versions_2_and_3_scalars_and_empty_arrays(void **state) {
    (void)state;
    const char *versions[] = {FIXTURES "f8_v2.npy", FIXTURES "f8_v3.npy"};
    for (int v = 0; v < 2; v++) {
        Tensor *t = load_ok(versions[v]);
        assert_shape(t, 1, (int[]){3});
        assert_values(t, (double[]){1.5, 2.5, 3.5}, versions[v]);
        tensor_free(t);
    }
    Tensor *scalar = load_ok(FIXTURES "f8_scalar.npy");
    assert_int_equal(scalar->ndim, 0);
    assert_int_equal(scalar->size, 1);
    assert_values(scalar, (double[]){2.75}, "f8_scalar.npy");
    Tensor *empty = load_ok(FIXTURES "f8_empty.npy");
    assert_shape(empty, 3, (int[]){2, 0, 3});
    assert_int_equal(empty->size, 0);
    tensor_free(scalar);
    tensor_free(empty);
}

static void load_ints_reads_int_files_and_reports_the_shape(void **state) {
    (void)state;
    char err[512] = "";
    int *ids, ndim, shape[TENSOR_MAX_DIMS];
    assert_int_equal(npy_load_ints(FIXTURES "i8_2x2.npy", &ids, &ndim, shape, err, sizeof err), 0);
    assert_int_equal(ndim, 2);
    assert_int_equal(shape[0], 2);
    assert_int_equal(shape[1], 2);
    assert_int_equal(shape[2], 1); /* unused entries are 1, as in Tensor */
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], -2);
    assert_int_equal(ids[2], 40000);
    assert_int_equal(ids[3], -70000);
    free(ids);
    assert_int_equal(npy_load_ints(FIXTURES "i4_3.npy", &ids, &ndim, shape, err, sizeof err), 0);
    assert_int_equal(ndim, 1);
    assert_int_equal(ids[0], -3);
    assert_int_equal(ids[2], 7);
    free(ids);
}

static void load_doubles_keeps_full_precision_in_either_build(void **state) {
    (void)state;
    char err[512] = "";
    double *values;
    int ndim, shape[TENSOR_MAX_DIMS];
    assert_int_equal(
        npy_load_doubles(FIXTURES "f8_2x3.npy", &values, &ndim, shape, err, sizeof err), 0);
    assert_int_equal(ndim, 2);
    assert_true(values[5] == 0.001); /* not rounded to float32 in the float32 build */
    free(values);
}

/* --- Headers NumPy would accept, written differently -------------------------------------------
 */

static void accepts_any_key_order_quotes_spacing_and_python2_longs(void **state) {
    (void)state;
    const char *headers[] = {
        "{'shape': (2,), 'fortran_order': False, 'descr': '<f8'}",
        "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2,)}\n",
        "{ 'descr' : '<f8' ,\n 'fortran_order' : False ,\t'shape' : ( 2 , ) , }   \n",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }",
    };
    for (int h = 0; h < 4; h++) {
        const char *path = write_npy("variant.npy", 1, headers[h], 16);
        Tensor *t = load_ok(path);
        assert_shape(t, 1, (int[]){2});
        tensor_free(t);
    }
}

/* --- Malformed files ----------------------------------------------------------------------------
 */

typedef struct BadHeader {
    const char *header;
    size_t data_bytes;
    const char *message;
} BadHeader;

#define GOOD_2x3 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"

static const BadHeader bad_headers[] = {
    /* descr */
    {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24,
     "header: 'descr' is '>f4' but only little-endian f4, f8, i4, i8 are supported"},
    {"{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }", 12, "'descr' is '<f2'"},
    {"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", 6, "'descr' is '|u1'"},
    {"{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", 48, "'descr' is '<c8'"},
    {"{'descr': 'float32', 'fortran_order': False, 'shape': (2, 3), }", 24, "'descr' is 'float32'"},
    {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }", 24,
     "'descr' must be a string"},
    {"{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3), }", 24, "header:"},
    {"{'descr': '<f4\\x00', 'fortran_order': False, 'shape': (2, 3), }", 24, "escaped string"},
    {"{'descr': '<f4AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'fortran_order': False, "
     "'shape': (2, 3), }",
     24, "too long"},
    {"{'fortran_order': False, 'shape': (2, 3), }", 24, "missing key 'descr'"},
    /* fortran_order */
    {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
     "'fortran_order' is True but only C order is supported"},
    {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }", 24, "must be True or False"},
    {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3), }", 24, "must be True or False"},
    {"{'descr': '<f4', 'shape': (2, 3), }", 24, "missing key 'fortran_order'"},
    /* shape */
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 4, "entry 0 is negative (-1)"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2.5), }", 20,
     "entry 1 is not an integer"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1e3,), }", 4000, "not an integer"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (0x10,), }", 64, "not an integer"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (03,), }", 12, "leading zero"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': ('2',), }", 8,
     "not a non-negative integer"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1), }", 4,
     "more than 6 dimensions"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648,), }", 0, "larger than"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 0,
     "larger than"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 2147483647, 2147483647), }", 0,
     "too many elements"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 12, "a number, not a tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': [3], }", 12, "must be a tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': 3, }", 12, "must be a tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", 24, "expected ',' or ')'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,,), }", 8, "not a non-negative integer"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", 24, "header:"},
    {"{'descr': '<f4', 'fortran_order': False}", 24, "missing key 'shape'"},
    /* data size */
    {GOOD_2x3, 23, "data is 23 bytes but shape (2, 3) of '<f4' needs 24 (file truncated)"},
    {GOOD_2x3, 0, "data is 0 bytes"},
    {GOOD_2x3, 25, "data is 25 bytes but shape (2, 3) of '<f4' needs 24 (extra bytes at the end)"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 0, "needs 4 (file truncated)"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0), }", 4, "extra bytes"},
    /* the dict itself */
    {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24,
     "key 'descr' appears twice"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'shape': (2, 3)}", 24,
     "key 'shape' appears twice"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'align': False}", 24,
     "unknown key 'align'"},
    {"{descr: '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, "expected a quoted string"},
    {"{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, "expected ':'"},
    {"{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3), }", 24, "expected ',' or '}'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } junk", 24,
     "unexpected text after the closing '}'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }}", 24, "unexpected text"},
    {"'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", 24, "expected '{'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ", 24, "expected a quoted string"},
    {"{}", 24, "missing key 'descr'"},
    {"", 24, "expected '{'"},
    {"   \n", 0, "expected '{'"},
    {"hello, world", 24, "expected '{'"},
    {"\xff\xfe\x00\x01", 0, "expected '{'"},
};

static void refuses_every_malformed_header_naming_file_and_problem(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof bad_headers / sizeof bad_headers[0]; c++) {
        char name[32];
        snprintf(name, sizeof name, "bad_header_%02zu.npy", c);
        const char *path = write_npy(name, 1, bad_headers[c].header, bad_headers[c].data_bytes);
        expect_all_loaders_fail(path, bad_headers[c].message);
        /* The same header in a version 2.0 file fails the same way. */
        snprintf(name, sizeof name, "bad_header_v2_%02zu.npy", c);
        path = write_npy(name, 2, bad_headers[c].header, bad_headers[c].data_bytes);
        expect_all_loaders_fail(path, bad_headers[c].message);
    }
}

static void python2_long_suffix_is_refused_in_version_3(void **state) {
    (void)state;
    const char *path = write_npy("long_v3.npy", 3,
                                 "{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }", 16);
    expect_all_loaders_fail(path, "'shape' entry 0 is not an integer");
}

static void a_nul_byte_in_the_header_is_garbage(void **state) {
    (void)state;
    const char header[] = "{'descr': '<f4',\0'fortran_order': False, 'shape': (2, 3), }";
    const char *path = temp_path("nul.npy");
    unsigned char file[10 + sizeof header - 1 + 24] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, sizeof header - 1, 0};
    memcpy(file + 10, header, sizeof header - 1);
    write_bytes(path, file, sizeof file);
    expect_all_loaders_fail(path, "expected a quoted string");
}

static void refuses_bad_magic_version_and_header_length(void **state) {
    (void)state;
    size_t n;
    unsigned char *good = read_bytes(FIXTURES "f8_2x3.npy", &n);
    unsigned char *file = malloc(n + 4);
    struct {
        size_t at;
        unsigned char value;
        const char *message;
    } edits[] = {
        {0, 0x92, "not a .npy file (it does not start with \\x93NUMPY)"},
        {1, 'n', "not a .npy file"},
        {5, 'X', "not a .npy file"},
        {6, 0, "format version 0.0 is not supported (only 1.0, 2.0, 3.0)"},
        {6, 4, "format version 4.0 is not supported"},
        {7, 1, "format version 1.1 is not supported"},
        {9, 0x01, "header length 374 runs past the end of the file (176 bytes)"},
        {9, 0xff, "header length 65398 is more than the 10000 bytes allowed"},
        {8, 0x77, "header: unexpected text after the closing '}'"}, /* one byte into the data */
        {8, 0x75, "data is 49 bytes but shape (2, 3) of '<f8' needs 48 (extra bytes at the end)"},
        {8, 0x50, "data is 86 bytes but shape (2, 3) of '<f8' needs 48"},
        {8, 0x00, "expected '{'"}, /* a zero-length header */
    };
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        memcpy(file, good, n);
        file[edits[e].at] = edits[e].value;
        const char *path = temp_path("edited.npy");
        write_bytes(path, file, n);
        expect_all_loaders_fail(path, edits[e].message);
    }
    /* A version 2.0 preamble with a uint32 header length of 4 GB. */
    memcpy(file, "\x93NUMPY\x02\x00\xff\xff\xff\xff", 12);
    write_bytes(temp_path("huge_header.npy"), file, 12);
    expect_all_loaders_fail(temp_path("huge_header.npy"), "header length 4294967295 is more than");
    /* Too short for the preamble. */
    write_bytes(temp_path("short.npy"), "\x93NUMPY\x02\x00\x00\x00", 10);
    expect_all_loaders_fail(temp_path("short.npy"),
                            "too short for the 12-byte version 2.0 preamble");
    write_bytes(temp_path("empty.npy"), "", 0);
    expect_all_loaders_fail(temp_path("empty.npy"), "file is 0 bytes, too short");
    free(good);
    free(file);
}

/* Every proper prefix of a valid file, and the file plus one byte, is refused. */
static void refuses_a_valid_file_cut_at_every_byte_or_extended(void **state) {
    (void)state;
    const char *sources[] = {FIXTURES "f8_2x3.npy", FIXTURES "f8_v2.npy", FIXTURES "i4_3.npy"};
    for (int s = 0; s < 3; s++) {
        size_t n;
        unsigned char *good = read_bytes(sources[s], &n);
        good = realloc(good, n + 1);
        const char *path = temp_path("cut.npy");
        for (size_t length = 0; length < n; length++) {
            write_bytes(path, good, length);
            expect_all_loaders_fail(path, ": ");
        }
        good[n] = 0;
        write_bytes(path, good, n + 1);
        expect_all_loaders_fail(path, "extra bytes at the end");
        free(good);
    }
}

static void refuses_directories_and_missing_or_unreadable_files(void **state) {
    (void)state;
    expect_all_loaders_fail(temp_dir, "is a directory");
    expect_all_loaders_fail(temp_path("no_such_file.npy"), "cannot open: No such file");
    expect_all_loaders_fail("/dev/null", "is not a regular file");
    /* Permission bits do not stop root, so this part only runs as an ordinary user. */
    if (geteuid() != 0) {
        const char *path = write_npy("unreadable.npy", 1, GOOD_2x3, 24);
        chmod(path, 0);
        expect_all_loaders_fail(path, "cannot open: Permission denied");
    }
}

/* --- Conversions: exact or refused -------------------------------------------------------------
 */

static const char *write_values(const char *name, const char *descr, const void *values,
                                int count) {
    char header[128];
    snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }\n",
             descr, count);
    int itemsize = descr[2] - '0';
    const char *path = write_npy(name, 1, header, (size_t)(itemsize * count));
    /* Replace the 0x3f filler with the values (this host is little-endian, as the format). */
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, -(long)(itemsize * count), SEEK_END);
    assert_int_equal(fwrite(values, (size_t)itemsize, (size_t)count, fp), (size_t)count);
    fclose(fp);
    return path;
}

static void load_ints_refuses_fractions_nan_and_values_outside_int(void **state) {
    (void)state;
    char err[512] = "";
    int *ids, ndim, shape[TENSOR_MAX_DIMS];
    const char *path = write_values("ints_f8.npy", "<f8", (double[]){1, -7, 3e5}, 3);
    assert_int_equal(npy_load_ints(path, &ids, &ndim, shape, err, sizeof err), 0);
    assert_int_equal(ids[1], -7);
    assert_int_equal(ids[2], 300000);
    free(ids);
    path = write_values("ints_f4.npy", "<f4", (float[]){2, 16777216}, 2);
    assert_int_equal(npy_load_ints(path, &ids, &ndim, shape, err, sizeof err), 0);
    assert_int_equal(ids[1], 16777216);
    free(ids);

    struct {
        const char *name, *descr;
        const void *values;
        const char *message;
    } bad[] = {
        {"frac.npy", "<f8", (double[]){1, 2.5}, "element 1 is 2.5, not an integer in int's range"},
        {"nan.npy", "<f4", (float[]){NAN, 1}, "element 0 is nan"},
        {"inf.npy", "<f8", (double[]){1, INFINITY}, "element 1 is inf"},
        {"big_f8.npy", "<f8", (double[]){1, 2147483648.0}, "element 1 is 2147483648"},
        {"big_i8.npy", "<i8", (int64_t[]){-2147483649LL, 0}, "element 0 is -2147483649, outside"},
        {"i8_2_40.npy", "<i8", (int64_t[]){0, 1LL << 40}, "element 1 is 1099511627776"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        path = write_values(bad[b].name, bad[b].descr, bad[b].values, 2);
        ids = (int *)&err;
        assert_int_equal(npy_load_ints(path, &ids, &ndim, shape, err, sizeof err), -1);
        assert_null(ids);
        assert_error_names_file(err, path, bad[b].message);
    }
    /* Both ends of int's range are fine. */
    path = write_values("int_range.npy", "<i8", (int64_t[]){-2147483648LL, 2147483647LL}, 2);
    assert_int_equal(npy_load_ints(path, &ids, &ndim, shape, err, sizeof err), 0);
    assert_int_equal(ids[0], INT32_MIN);
    assert_int_equal(ids[1], INT32_MAX);
    free(ids);
}

static void integers_real_cannot_hold_exactly_are_refused(void **state) {
    (void)state;
    /* 2^53 + 1 is no double (nor float); 2^62 is both (a power of two). */
    const char *path =
        write_values("i8_big.npy", "<i8", (int64_t[]){1LL << 62, (1LL << 53) + 1}, 2);
    expect_load_fails(path, "element 1 is 9007199254740993, which " REAL_NAME " cannot hold");
    char err[512] = "";
    double *values;
    int ndim, shape[TENSOR_MAX_DIMS];
    assert_int_equal(npy_load_doubles(path, &values, &ndim, shape, err, sizeof err), -1);
    assert_error_names_file(err, path, "which float64 cannot hold exactly");
    path = write_values("i8_max.npy", "<i8", (int64_t[]){INT64_MAX, 0}, 2);
    expect_load_fails(path, "element 0 is 9223372036854775807"); /* rounds to 2^63: no int64 */

    /* 2^24 + 1 fits a double but not a float. */
    path = write_values("i4_2_24.npy", "<i4", (int32_t[]){16777217, 1 << 24}, 2);
    if (sizeof(real) == 4) {
        expect_load_fails(path, "element 0 is 16777217, which float32 cannot hold exactly");
    } else {
        Tensor *t = load_ok(path);
        assert_true(t->data[0] == 16777217.0);
        tensor_free(t);
    }
}

static void float64_values_beyond_float32_range_are_refused_in_float32(void **state) {
    (void)state;
    const char *path =
        write_values("f8_huge.npy", "<f8", (double[]){1e300, INFINITY, NAN, -1e-300}, 4);
    if (sizeof(real) == 4) {
        expect_load_fails(path, "element 0 is 1.0000000000000001e+300, beyond the float32 range");
    } else {
        Tensor *t = load_ok(path);
        assert_true(t->data[0] == 1e300);
        tensor_free(t);
    }
    /* Infinities, NaN and values that underflow to zero are representable: they pass. */
    path = write_values("f8_special.npy", "<f8", (double[]){INFINITY, NAN, -1e-300, 1}, 4);
    Tensor *t = load_ok(path);
    assert_true(isinf(t->data[0]) && isnan(t->data[1]) && t->data[2] == (real)-1e-300);
    tensor_free(t);
}

/* --- Atomic writing -----------------------------------------------------------------------------
 */

static int count_temp_files(void) {
    DIR *dir = opendir(temp_dir);
    assert_non_null(dir);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) count += strstr(entry->d_name, ".tmp.") != NULL;
    closedir(dir);
    return count;
}

static void save_into_a_missing_directory_fails_cleanly(void **state) {
    (void)state;
    char err[512] = "";
    Tensor *t = tensor_create(1, (int[]){3}, 0);
    char path[600];
    snprintf(path, sizeof path, "%s/no_such_dir/out.npy", temp_dir);
    assert_int_equal(npy_save(path, t, err, sizeof err), -1);
    assert_save_error(err, path, "cannot create");
    /* A path whose "directory" is a regular file. */
    const char *file = write_npy("plain_file", 1, GOOD_2x3, 24);
    snprintf(path, sizeof path, "%s/out.npy", file);
    assert_int_equal(npy_save(path, t, err, sizeof err), -1);
    assert_save_error(err, path, "cannot create");
    /* An unwritable directory (not for root, whom permission bits do not stop). */
    if (geteuid() != 0) {
        const char *locked = temp_path("locked");
        assert_int_equal(mkdir(locked, 0500), 0);
        snprintf(path, sizeof path, "%s/out.npy", locked);
        assert_int_equal(npy_save(path, t, err, sizeof err), -1);
        assert_save_error(err, path, "Permission denied");
    }
    assert_int_equal(count_temp_files(), 0);
    tensor_free(t);
}

/* The rename is the last step: if it fails (the target is a directory) the temp file is gone. */
static void a_failed_rename_leaves_no_temp_file(void **state) {
    (void)state;
    char err[512] = "";
    Tensor *t = tensor_create(1, (int[]){3}, 0);
    const char *target = temp_path("a_directory");
    assert_int_equal(mkdir(target, 0700), 0);
    assert_int_equal(npy_save(target, t, err, sizeof err), -1);
    assert_error_names_file(err, target, "cannot rename temp file into place");
    assert_int_equal(count_temp_files(), 0);
    tensor_free(t);
}

/* Overwriting replaces the file by a rename, never by rewriting it in place: a reader that
 * opened the old file keeps reading the complete old content, the path gives the new one. */
static void overwrite_keeps_the_old_file_intact_until_the_rename(void **state) {
    (void)state;
    char err[512] = "";
    const char *path = temp_path("model.npy");
    Tensor *old_t = tensor_create(1, (int[]){4}, 0), *new_t = tensor_create(2, (int[]){2, 3}, 0);
    tensor_fill(old_t, 1);
    tensor_fill(new_t, 2);
    assert_int_equal(npy_save(path, old_t, err, sizeof err), 0);
    size_t old_bytes;
    unsigned char *old_content = read_bytes(path, &old_bytes);
    FILE *reader = fopen(path, "rb");
    assert_non_null(reader);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);

    assert_int_equal(npy_save(path, new_t, err, sizeof err), 0);
    assert_int_equal(stat(path, &after), 0);
    assert_true(before.st_ino != after.st_ino); /* a new file took the name */
    unsigned char *seen = malloc(old_bytes + 1);
    assert_int_equal(fread(seen, 1, old_bytes + 1, reader), old_bytes);
    assert_memory_equal(seen, old_content, old_bytes);
    fclose(reader);
    Tensor *back = load_ok(path);
    assert_shape(back, 2, (int[]){2, 3});
    assert_true(back->data[5] == 2);
    assert_int_equal(count_temp_files(), 0);
    free(seen);
    free(old_content);
    tensor_free(back);
    tensor_free(old_t);
    tensor_free(new_t);
}

/* --- Fuzz: random corruption never crashes ------------------------------------------------------
 */

/* 2000 corrupted copies of valid files (1 to 4 random bytes each, mostly in the preamble and
 * header where the parser works). Each load must succeed (and return a consistent result) or
 * fail with a message naming the file; under ASan any out-of-bounds read or leak fails too. */
static void randomly_corrupted_files_never_crash_the_loader(void **state) {
    (void)state;
    const char *sources[] = {FIXTURES "f8_2x3.npy", FIXTURES "f8_v2.npy", FIXTURES "i4_3.npy",
                             FIXTURES "f8_scalar.npy"};
    Rng rng;
    rng_seed(&rng, 20220717);
    int loaded = 0, refused = 0;
    for (int trial = 0; trial < 2000; trial++) {
        size_t n;
        unsigned char *file = read_bytes(sources[trial % 4], &n);
        int flips = 1 + rng_int(&rng, 4);
        for (int f = 0; f < flips; f++) {
            size_t at =
                rng_int(&rng, 4) ? (size_t)rng_int(&rng, 80) : (size_t)rng_int(&rng, (int)n);
            /* Half random bytes, half bytes the parser cares about. */
            static const char interesting[] = "{}(),:'\" -0123456789LTF\n\x00\xff";
            int n_interesting = (int)sizeof interesting - 1;
            file[at] = rng_int(&rng, 2) ? (unsigned char)rng_int(&rng, 256)
                                        : (unsigned char)interesting[rng_int(&rng, n_interesting)];
        }
        size_t length = rng_int(&rng, 8) ? n : (size_t)rng_int(&rng, (int)n + 8);
        if (length > n) length = n;
        const char *path = temp_path("fuzz.npy");
        write_bytes(path, file, length);
        free(file);

        char err[512] = "";
        Tensor *t = NULL;
        if (npy_load(path, &t, err, sizeof err) == 0) {
            assert_non_null(t);
            assert_true(t->ndim >= 0 && t->ndim <= TENSOR_MAX_DIMS);
            assert_int_equal(shape_size(t->ndim, t->shape), t->size);
            tensor_free(t);
            loaded++;
        } else {
            assert_null(t);
            assert_error_names_file(err, path, ": ");
            refused++;
        }
        int *ids = NULL, ndim, shape[TENSOR_MAX_DIMS];
        if (npy_load_ints(path, &ids, &ndim, shape, err, sizeof err) == 0)
            free(ids);
        else
            assert_error_names_file(err, path, ": ");
    }
    /* Both outcomes happen: corruption in the data bytes leaves a loadable file. */
    assert_true(loaded > 10);    /* 24 with this seed */
    assert_true(refused > 1000); /* 1976 */
}

int main(void) {
    /* Nothing here calls cpool_fail (the loaders report errors by return value), so test_util.h's
     * EXPECT_FAIL machinery goes unused. */
    (void)test_catch_error;
    (void)test_escape;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(save_then_load_gives_the_same_tensor_bit_for_bit),
        cmocka_unit_test(special_values_survive_a_round_trip),
        cmocka_unit_test(save_writes_exactly_what_numpy_writes),
        cmocka_unit_test(reads_float_and_int_files_written_by_numpy),
        cmocka_unit_test(reads_versions_2_and_3_scalars_and_empty_arrays),
        cmocka_unit_test(load_ints_reads_int_files_and_reports_the_shape),
        cmocka_unit_test(load_doubles_keeps_full_precision_in_either_build),
        cmocka_unit_test(accepts_any_key_order_quotes_spacing_and_python2_longs),
        cmocka_unit_test(refuses_every_malformed_header_naming_file_and_problem),
        cmocka_unit_test(python2_long_suffix_is_refused_in_version_3),
        cmocka_unit_test(a_nul_byte_in_the_header_is_garbage),
        cmocka_unit_test(refuses_bad_magic_version_and_header_length),
        cmocka_unit_test(refuses_a_valid_file_cut_at_every_byte_or_extended),
        cmocka_unit_test(refuses_directories_and_missing_or_unreadable_files),
        cmocka_unit_test(load_ints_refuses_fractions_nan_and_values_outside_int),
        cmocka_unit_test(integers_real_cannot_hold_exactly_are_refused),
        cmocka_unit_test(float64_values_beyond_float32_range_are_refused_in_float32),
        cmocka_unit_test(save_into_a_missing_directory_fails_cleanly),
        cmocka_unit_test(a_failed_rename_leaves_no_temp_file),
        cmocka_unit_test(overwrite_keeps_the_old_file_intact_until_the_rename),
        cmocka_unit_test(randomly_corrupted_files_never_crash_the_loader),
    };
    return cmocka_run_group_tests_name("npy (" REAL_NAME ")", tests, make_temp_dir,
                                       remove_temp_dir);
}
