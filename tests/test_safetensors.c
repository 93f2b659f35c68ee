/* test_safetensors.c - .safetensors files: round trips, a file written in Python, every malformed
 * header we can think of, loading into a ParamSet by name, and a byte-flipping fuzz loop.
 *
 * Files go to a fresh mkdtemp() directory that the group teardown removes. */
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include "rng.h"
#include "safetensors.h"

static char temp_dir[64];

static int make_temp_dir(void **state) {
    (void)state;
    strcpy(temp_dir, "/tmp/cpool-safetensors-XXXXXX");
    return mkdtemp(temp_dir) ? 0 : -1;
}

static int remove_temp_dir(void **state) {
    (void)state;
    DIR *dir = opendir(temp_dir);
    if (!dir) return -1;
    char path[512];
    for (struct dirent *d; (d = readdir(dir));) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", temp_dir, d->d_name);
        unlink(path);
    }
    closedir(dir);
    return rmdir(temp_dir);
}

static const char *temp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", temp_dir, name);
    return path;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, n, fp), n);
    fclose(fp);
}

/* A file with the given header text (its length in the 8-byte prefix) and data_bytes of data
 * (the bytes 0, 1, 2, ...). Returns the path. */
static const char *write_safetensors(const char *name, const char *header, size_t data_bytes) {
    size_t n = strlen(header);
    unsigned char *bytes = calloc(8 + n + data_bytes + 1, 1);
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(bytes + 8, header, n);
    for (size_t i = 0; i < data_bytes; i++) bytes[8 + n + i] = (unsigned char)i;
    const char *path = temp_path(name);
    write_bytes(path, bytes, 8 + n + data_bytes);
    free(bytes);
    return path;
}

/* A parameter set of two tensors with distinct values (and gradients). */
static void make_params(ParamSet *params) {
    Tensor *w = params_new(params, "blocks.0.fc", "weight", 2, (int[]){3, 4});
    Tensor *b = params_new(params, "blocks.0.fc", "bias", 1, (int[]){3});
    Tensor *s = params_new(params, NULL, "scale", 0, NULL);
    for (long i = 0; i < w->size; i++)
        w->data[i] = (real)(0.1 * (double)i - 0.55), w->grad[i] = (real)i;
    for (long i = 0; i < b->size; i++) b->data[i] = (real)(1.0 / 3.0 * (double)(i + 1));
    for (long i = 0; i < b->size; i++) b->grad[i] = (real)(-2.0 * (double)i);
    s->data[0] = (real)3.14159265358979;
    s->grad[0] = 7;
}

/* The same names and shapes, zeroed. */
static void make_empty_params(ParamSet *params) {
    params_new(params, "blocks.0.fc", "weight", 2, (int[]){3, 4});
    params_new(params, "blocks.0.fc", "bias", 1, (int[]){3});
    params_new(params, NULL, "scale", 0, NULL);
}

static void assert_params_equal(const ParamSet *expected, const ParamSet *got, int use_grad,
                                double tolerance) {
    assert_int_equal(expected->count, got->count);
    for (int i = 0; i < expected->count; i++) {
        const Tensor *e = expected->items[i].tensor, *g = got->items[i].tensor;
        assert_string_equal(expected->items[i].name, got->items[i].name);
        assert_true(tensor_same_shape(e, g));
        for (long k = 0; k < e->size; k++) {
            double want = use_grad ? e->grad[k] : e->data[k];
            assert_close(&want, g->data + k, 1, tolerance, expected->items[i].name);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */

static void round_trip_keeps_every_value_exactly(void **state) {
    (void)state;
    ParamSet params = {0}, back = {0}, grads = {0};
    make_params(&params);
    make_empty_params(&back);
    make_empty_params(&grads);
    char err[256];
    const char *path = temp_path("real.safetensors");
    /* In this build's own precision nothing is rounded: the values come back bit for bit. */
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_REAL,
                                             NULL, err, sizeof err),
                     0);
    assert_int_equal(safetensors_load_params(path, &back, 0, err, sizeof err), 0);
    assert_params_equal(&params, &back, 0, 0);
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_GRAD, SAFETENSORS_REAL,
                                             NULL, err, sizeof err),
                     0);
    assert_int_equal(safetensors_load_params(path, &grads, 0, err, sizeof err), 0);
    assert_params_equal(&params, &grads, 1, 0);
    params_free(&params);
    params_free(&back);
    params_free(&grads);
}

static void round_trip_f64_is_exact_and_f32_rounds_once(void **state) {
    (void)state;
    ParamSet params = {0}, back = {0};
    make_params(&params);
    make_empty_params(&back);
    char err[256];
    const char *path = temp_path("f64.safetensors");
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F64, NULL,
                                             err, sizeof err),
                     0);
    assert_int_equal(safetensors_load_params(path, &back, 0, err, sizeof err), 0);
    assert_params_equal(&params, &back, 0, 0); /* every real is a double exactly */

    path = temp_path("f32.safetensors");
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F32, NULL,
                                             err, sizeof err),
                     0);
    SafetensorsFile file;
    assert_int_equal(safetensors_read(path, &file, err, sizeof err), 0);
    assert_int_equal(file.count, 3);
    for (int i = 0; i < params.count; i++) {
        const Tensor *p = params.items[i].tensor,
                     *t = safetensors_file_find(&file, params.items[i].name);
        assert_non_null(t);
        assert_int_equal(file.dtypes[i], SAFETENSORS_F32);
        for (long k = 0; k < p->size; k++) assert_true(t->data[k] == (real)(float)p->data[k]);
    }
    safetensors_file_free(&file);
    params_free(&params);
    params_free(&back);
}

static void header_is_padded_and_offsets_tile_the_data(void **state) {
    (void)state;
    ParamSet params = {0};
    make_params(&params);
    char err[256];
    const char *path = temp_path("layout.safetensors");
    const char *metadata[] = {"step", "100", "config",
                              "{\"dim\": 4, \"note\": \"a \\\"quote\\\"\"}", NULL};
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F64,
                                             metadata, err, sizeof err),
                     0);
    FILE *fp = fopen(path, "rb");
    unsigned char bytes[4096];
    size_t n = fread(bytes, 1, sizeof bytes, fp);
    fclose(fp);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | bytes[i];
    assert_int_equal(header_len % 8, 0);
    assert_int_equal(n, 8 + header_len + (12 + 3 + 1) * 8);
    char header[2048];
    memcpy(header, bytes + 8, header_len);
    header[header_len] = '\0';
    assert_non_null(strstr(header, "\"blocks.0.fc.weight\":{\"dtype\":\"F64\",\"shape\":[3,4],"
                                   "\"data_offsets\":[0,96]}"));
    assert_non_null(strstr(header, "\"blocks.0.fc.bias\":{\"dtype\":\"F64\",\"shape\":[3],"
                                   "\"data_offsets\":[96,120]}"));
    assert_non_null(strstr(header, "\"scale\":{\"dtype\":\"F64\",\"shape\":[],"
                                   "\"data_offsets\":[120,128]}"));

    SafetensorsFile file;
    assert_int_equal(safetensors_read(path, &file, err, sizeof err), 0);
    assert_int_equal(file.n_metadata, 2);
    assert_string_equal(safetensors_file_metadata(&file, "step"), "100");
    assert_string_equal(safetensors_file_metadata(&file, "config"), metadata[3]);
    assert_null(safetensors_file_metadata(&file, "missing"));
    assert_int_equal(file.tensors[2]->ndim, 0);
    safetensors_file_free(&file);
    params_free(&params);
}

static void reads_a_file_written_by_python(void **state) {
    (void)state;
    /* tests/reference/make_layer_fixtures.py writes this with struct + json, following the
     * Python writer: tensors sorted by dtype size then name, "__metadata__" first, space
     * padding. F32 and F64 mixed, a 0-d tensor and an empty (0, 3) tensor. */
    const char *path = "tests/reference/layers/python_written.safetensors";
    SafetensorsFile file;
    char err[256];
    if (safetensors_read(path, &file, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(file.count, 4);
    assert_string_equal(safetensors_file_metadata(&file, "format"), "pt");
    Tensor *w = safetensors_file_find(&file, "blocks.0.attn.qkv.weight");
    assert_non_null(w);
    assert_int_equal(w->ndim, 2);
    assert_int_equal(w->shape[0], 3);
    assert_int_equal(w->shape[1], 2);
    for (int i = 0; i < 6; i++) assert_true(w->data[i] == (real)(0.5 * i - 1));
    Tensor *scale = safetensors_file_find(&file, "scale");
    assert_int_equal(scale->ndim, 0);
    assert_true(scale->data[0] == (real)3.14159265358979323846);
    Tensor *empty = safetensors_file_find(&file, "empty");
    assert_int_equal(empty->size, 0);
    assert_int_equal(empty->shape[0], 0);
    assert_int_equal(empty->shape[1], 3);
    Tensor *bias = safetensors_file_find(&file, "bias");
    double expected_bias[] = {1.5, -2.25, 1e10};
    assert_close(expected_bias, bias->data, 3, sizeof(real) == 8 ? 0 : 1e-7, "bias");
    assert_int_equal(file.dtypes[0], SAFETENSORS_F64); /* sorted by offset: bias first */
    safetensors_file_free(&file);
}

/* ------------------------------------------------------------------------------------------ */
/* Malformed files: each one line, naming the file and what is wrong.                        */

typedef struct BadHeader {
    const char *header;
    size_t data_bytes;
    const char *expected; /* a part of the message */
} BadHeader;

static const BadHeader bad_headers[] = {
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", 8, "invalid JSON"},
    {"[1, 2]", 0, "does not start with '{'"},
    {"  {}", 0, "does not start with '{'"},
    {"", 0, "does not start with '{'"},
    {"{} x", 0, "unexpected text after the JSON object"},
    {"{\"a\": 5}", 0, "tensor 'a': entry is not a JSON object"},
    {"{\"a\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "tensor 'a': missing 'dtype'"},
    {"{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8, "tensor 'a': missing 'shape'"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "tensor 'a': missing 'data_offsets'"},
    {"{\"a\": {\"dtype\": 4, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': 'dtype' is not a string"},
    {"{\"a\": {\"dtype\": \"F33\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': unknown dtype 'F33'"},
    {"{\"a\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': dtype 'F16' is not supported (only F32 and F64)"},
    {"{\"a\": {\"dtype\": \"F32\", \"dtype\": \"F64\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
     8, "tensor 'a': duplicate field 'dtype'"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': 'shape' is not an array"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': shape[1] is -1, not a dimension"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': shape[0] is 2.5, not a dimension"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': shape[0] is not a number"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3000000000], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': shape[0] is 3000000000, not a dimension"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1e400], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': shape[0] is inf, not a dimension"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [65536, 65536, 65536], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': data_offsets [0, 8] hold 8 bytes but shape (65536, 65536, 65536) of F32 needs "
     "1125899906842624"},
    {"{\"a\": {\"dtype\": \"F64\", \"shape\": [65536, 65536, 65536, 65536], \"data_offsets\": [0, "
     "8]}}",
     8, "tensor 'a': shape has more than 2^60 bytes of elements"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1, 1, 2], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': shape has 7 dimensions, at most 6"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8,
     "tensor 'a': data_offsets [8, 0] are reversed"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 8,
     "tensor 'a': data_offsets [0, 16] run past the end of the 8-byte data part"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8,
     "tensor 'a': 'data_offsets' is not an array of two integers"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, -8]}}", 8,
     "tensor 'a': data_offsets[1] is -8, not a non-negative integer"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': data_offsets [0, 8] hold 8 bytes but shape (3) of F32 needs 12"},
    {"{\"a\": {\"dtype\": \"F64\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a': data_offsets [0, 8] hold 8 bytes but shape (2) of F64 needs 16"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
     " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
     12, "tensors 'a' [0, 8] and 'b' [4, 12] overlap"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
     " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]}}",
     20, "data bytes [8, 12) belong to no tensor"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
     "data bytes [0, 4) belong to no tensor"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 12,
     "data bytes [8, 12) belong to no tensor (the file is longer than its tensors)"},
    {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
     " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
     16, "duplicate tensor name 'a'"},
    {"{\"__metadata__\": [\"x\"]}", 0, "'__metadata__' is not a JSON object"},
    {"{\"__metadata__\": {\"step\": 100}}", 0, "'__metadata__': value of 'step' is not a string"},
    {"{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}", 0, "'__metadata__': duplicate key 'k'"},
    {"{\"__metadata__\": {}, \"__metadata__\": {}}", 0, "duplicate entry '__metadata__'"},
    {"{\"a\\nb\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'a?b': data_offsets"},
    {"{\"\xff\": 1}", 0, "header: not valid UTF-8"},
    {"{\"\xc0\x80\": 1}", 0, "header: not valid UTF-8"},
};

static void assert_one_line_error(const char *err, const char *path, const char *expected) {
    if (!strstr(err, expected)) fail_msg("error \"%s\" does not mention \"%s\"", err, expected);
    if (strncmp(err, path, strlen(path)) != 0)
        fail_msg("error \"%s\" does not start with the path", err);
    if (strchr(err, '\n')) fail_msg("error \"%s\" is more than one line", err);
}

static void every_malformed_header_is_one_clear_line(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_headers / sizeof *bad_headers; i++) {
        const BadHeader *bad = &bad_headers[i];
        const char *path = write_safetensors("bad.safetensors", bad->header, bad->data_bytes);
        SafetensorsFile file;
        char err[256] = "";
        if (safetensors_read(path, &file, err, sizeof err) == 0)
            fail_msg("case %zu (%s) was accepted", i, bad->header);
        assert_int_equal(file.count, 0);
        assert_one_line_error(err, path, bad->expected);
    }
}

static void valid_edge_cases_are_accepted(void **state) {
    (void)state;
    static const char *const good[] = {
        "{}",
        "{}      ",
        "{\"__metadata__\": {}}",
        ("{\"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]},"
         " \"y\": {\"dtype\": \"F32\", \"shape\": [2, 0], \"data_offsets\": [0, 0]}}"),
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8], \"extra\": 1}}",
    };
    static const size_t data_bytes[] = {0, 0, 0, 0, 8};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        const char *path = write_safetensors("good.safetensors", good[i], data_bytes[i]);
        SafetensorsFile file;
        char err[256];
        if (safetensors_read(path, &file, err, sizeof err) != 0) fail_msg("case %zu: %s", i, err);
        safetensors_file_free(&file);
    }
}

static void header_length_must_fit_the_file(void **state) {
    (void)state;
    char err[256];
    SafetensorsFile file;
    const char *path = temp_path("short.safetensors");
    write_bytes(path, "\x02\x00\x00", 3);
    assert_int_equal(safetensors_read(path, &file, err, sizeof err), -1);
    assert_one_line_error(err, path, "file is 3 bytes, too short for the 8-byte header length");

    write_bytes(path, "\x10\x00\x00\x00\x00\x00\x00\x00{}", 10);
    assert_int_equal(safetensors_read(path, &file, err, sizeof err), -1);
    assert_one_line_error(err, path, "header length 16 runs past the end of the file (10 bytes)");

    write_bytes(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    assert_int_equal(safetensors_read(path, &file, err, sizeof err), -1);
    assert_one_line_error(err, path, "header length 18446744073709551615 runs past the end");

    write_bytes(path, "\x04\x00\x00\x00\x00\x00\x00\x00{\0}\n", 12);
    assert_int_equal(safetensors_read(path, &file, err, sizeof err), -1);
    assert_one_line_error(err, path, "header: NUL byte at offset 1");

    assert_int_equal(safetensors_read(temp_path("absent.safetensors"), &file, err, sizeof err), -1);
    assert_one_line_error(err, temp_path("absent.safetensors"), "cannot open: No such file");
    assert_int_equal(safetensors_read(temp_dir, &file, err, sizeof err), -1);
    assert_one_line_error(err, temp_dir, "not a regular file");
}

static void truncated_files_are_rejected_at_every_length(void **state) {
    (void)state;
    ParamSet params = {0};
    make_params(&params);
    char err[256];
    const char *path = temp_path("whole.safetensors");
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F32, NULL,
                                             err, sizeof err),
                     0);
    FILE *fp = fopen(path, "rb");
    unsigned char bytes[4096];
    size_t n = fread(bytes, 1, sizeof bytes, fp);
    fclose(fp);
    for (size_t keep = 0; keep < n; keep++) {
        const char *cut = temp_path("cut.safetensors");
        write_bytes(cut, bytes, keep);
        SafetensorsFile file;
        if (safetensors_read(cut, &file, err, sizeof err) == 0)
            fail_msg("a file cut to %zu of %zu bytes was accepted", keep, n);
        assert_null(strchr(err, '\n'));
    }
    params_free(&params);
}

static void f64_beyond_float32_range_is_refused_in_float32(void **state) {
    (void)state;
    /* 1e300 as little-endian F64 bytes. */
    double big = 1e300;
    unsigned char data[8];
    memcpy(data, &big, 8);
    const char *header = "{\"a\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}";
    size_t n = strlen(header);
    unsigned char bytes[256] = {(unsigned char)n};
    memcpy(bytes + 8, header, n);
    memcpy(bytes + 8 + n, data, 8);
    const char *path = temp_path("big.safetensors");
    write_bytes(path, bytes, 8 + n + 8);
    SafetensorsFile file;
    char err[256];
    int status = safetensors_read(path, &file, err, sizeof err);
    if (sizeof(real) == 8) {
        assert_int_equal(status, 0);
        assert_true(file.tensors[0]->data[0] == 1e300);
        safetensors_file_free(&file);
    } else {
        assert_int_equal(status, -1);
        assert_one_line_error(
            err, path,
            "tensor 'a': element 0 (1.0000000000000001e+300) is beyond the float32 range");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Loading into a ParamSet, and writing errors                                                */

static void load_params_checks_names_and_shapes(void **state) {
    (void)state;
    ParamSet params = {0};
    make_params(&params);
    char err[256];
    const char *path = temp_path("model.safetensors");
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F32, NULL,
                                             err, sizeof err),
                     0);

    ParamSet more = {0}; /* the model has a parameter the file lacks */
    make_empty_params(&more);
    params_new(&more, "head", "weight", 1, (int[]){5});
    assert_int_equal(safetensors_load_params(path, &more, 0, err, sizeof err), -1);
    assert_one_line_error(err, path, "missing tensor 'head.weight' (the model expects shape (5))");
    assert_true(params_find(&more, "blocks.0.fc.weight")->data[1] == 0); /* nothing copied */
    params_free(&more);

    ParamSet other = {0}; /* same names, one shape differs */
    params_new(&other, "blocks.0.fc", "weight", 2, (int[]){4, 3});
    params_new(&other, "blocks.0.fc", "bias", 1, (int[]){3});
    params_new(&other, NULL, "scale", 0, NULL);
    assert_int_equal(safetensors_load_params(path, &other, 0, err, sizeof err), -1);
    assert_one_line_error(
        err, path, "tensor 'blocks.0.fc.weight' has shape (3, 4) but the model expects (4, 3)");
    params_free(&other);

    ParamSet fewer = {0}; /* the file has a tensor the model lacks */
    params_new(&fewer, "blocks.0.fc", "bias", 1, (int[]){3});
    assert_int_equal(safetensors_load_params(path, &fewer, 0, err, sizeof err), -1);
    assert_one_line_error(err, path, "unexpected tensor 'blocks.0.fc.weight'");
    assert_int_equal(safetensors_load_params(path, &fewer, 1, err, sizeof err), 0);
    assert_true(params_find(&fewer, "blocks.0.fc.bias")->data[2] == 1);
    params_free(&fewer);
    params_free(&params);
}

static void save_reports_unwritable_paths_and_missing_gradients(void **state) {
    (void)state;
    ParamSet params = {0};
    make_params(&params);
    char err[256];
    const char *bad_path = "/nonexistent-dir/p.safetensors";
    assert_int_equal(safetensors_save_params(bad_path, &params, SAFETENSORS_DATA, SAFETENSORS_F32,
                                             NULL, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "cannot create"));
    assert_null(strchr(err, '\n'));

    const char *path = temp_path("nograd.safetensors");
    params.items[1].tensor->grad = NULL; /* the arena still owns the buffer */
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_GRAD, SAFETENSORS_F32, NULL,
                                             err, sizeof err),
                     -1);
    assert_one_line_error(err, path, "parameter 'blocks.0.fc.bias' has no gradient to save");
    assert_int_equal(access(path, F_OK), -1); /* nothing written */

    const char *odd[] = {"k", NULL};
    params.items[1].tensor->grad = params.items[1].tensor->data;
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F32, odd,
                                             err, sizeof err),
                     -1);
    assert_one_line_error(err, path, "metadata key 'k' has no value");
    const char *twice[] = {"k", "1", "k", "2", NULL};
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F32,
                                             twice, err, sizeof err),
                     -1);
    assert_one_line_error(err, path, "duplicate metadata key 'k'");
    params_free(&params);
}

static void a_failed_save_keeps_the_old_file(void **state) {
    (void)state;
    ParamSet params = {0};
    make_params(&params);
    char err[256];
    const char *path = temp_path("keep.safetensors");
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F32, NULL,
                                             err, sizeof err),
                     0);
    params.items[0].tensor->grad = NULL;
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_GRAD, SAFETENSORS_F32, NULL,
                                             err, sizeof err),
                     -1);
    ParamSet back = {0};
    make_empty_params(&back);
    assert_int_equal(safetensors_load_params(path, &back, 0, err, sizeof err), 0);
    params.items[0].tensor->grad = params.items[0].tensor->data;
    params_free(&back);
    params_free(&params);
}

/* ------------------------------------------------------------------------------------------ */

/* Random bytes of a valid file flipped, thousands of times: the reader must return 0 or -1 with
 * one line, never crash or read out of bounds (run under `make asan` to be sure). */
static void flipped_bytes_never_crash_the_reader(void **state) {
    (void)state;
    ParamSet params = {0};
    make_params(&params);
    char err[256];
    const char *path = temp_path("fuzz-source.safetensors");
    const char *metadata[] = {"step", "7", NULL};
    assert_int_equal(safetensors_save_params(path, &params, SAFETENSORS_DATA, SAFETENSORS_F64,
                                             metadata, err, sizeof err),
                     0);
    FILE *fp = fopen(path, "rb");
    unsigned char original[4096], bytes[4096];
    size_t n = fread(original, 1, sizeof original, fp);
    fclose(fp);
    Rng rng;
    rng_seed(&rng, 2024);
    int accepted = 0, rejected = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(bytes, original, n);
        int flips = 1 + rng_int(&rng, 4);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)rng_int(&rng, (int)n);
            /* Mostly the header (where the structure is), sometimes the length prefix. */
            if (trial % 4 == 0) at = (size_t)rng_int(&rng, 8);
            bytes[at] = trial % 3 == 0 ? (unsigned char)rng_int(&rng, 256)
                                       : (unsigned char)(bytes[at] ^ (1u << rng_int(&rng, 8)));
        }
        const char *fuzz = temp_path("fuzz.safetensors");
        write_bytes(fuzz, bytes, n);
        SafetensorsFile file;
        err[0] = '\0';
        if (safetensors_read(fuzz, &file, err, sizeof err) == 0) {
            accepted++;
            safetensors_file_free(&file);
        } else {
            rejected++;
            assert_true(err[0] != '\0');
            assert_null(strchr(err, '\n'));
        }
    }
    assert_true(rejected > 1000); /* the loop really exercises the error paths */
    (void)accepted;
    params_free(&params);
}

int main(void) {
    /* Every safetensors error is a return value, never cpool_fail(): EXPECT_FAIL is not needed. */
    (void)test_catch_error;
    (void)test_escape;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_keeps_every_value_exactly),
        cmocka_unit_test(round_trip_f64_is_exact_and_f32_rounds_once),
        cmocka_unit_test(header_is_padded_and_offsets_tile_the_data),
        cmocka_unit_test(reads_a_file_written_by_python),
        cmocka_unit_test(every_malformed_header_is_one_clear_line),
        cmocka_unit_test(valid_edge_cases_are_accepted),
        cmocka_unit_test(header_length_must_fit_the_file),
        cmocka_unit_test(truncated_files_are_rejected_at_every_length),
        cmocka_unit_test(f64_beyond_float32_range_is_refused_in_float32),
        cmocka_unit_test(load_params_checks_names_and_shapes),
        cmocka_unit_test(save_reports_unwritable_paths_and_missing_gradients),
        cmocka_unit_test(a_failed_save_keeps_the_old_file),
        cmocka_unit_test(flipped_bytes_never_crash_the_reader),
    };
    return cmocka_run_group_tests_name("safetensors (" REAL_NAME ")", tests, make_temp_dir,
                                       remove_temp_dir);
}
