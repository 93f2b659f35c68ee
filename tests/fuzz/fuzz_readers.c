/* fuzz_readers.c - see fuzz_readers.h. */
#include "fuzz_readers.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "checkpoint.h"
#include "image_data.h"
#include "npy.h"
#include "optim.h"
#include "params.h"
#include "run_config.h"
#include "safetensors.h"
#include "util.h"

/* --- The temp file: one per process, the only place fuzz bytes touch the disk ---------------- */

static char temp_path[4096];

static void remove_temp(void) {
    if (temp_path[0]) remove(temp_path);
}

const char *fuzz_write_temp(const uint8_t *data, size_t size, const char *suffix) {
    if (temp_path[0])
        remove(temp_path); /* the suffix may differ from the last call's */
    else
        atexit(remove_temp);
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(temp_path, sizeof temp_path, "%s/cpool-fuzz-%ld%s", dir ? dir : "/tmp", (long)getpid(),
             suffix);
    FILE *fp = fopen(temp_path, "wb");
    if (!fp) return NULL;
    int ok = fwrite(data, 1, size, fp) == size;
    ok = fclose(fp) == 0 && ok;
    return ok ? temp_path : NULL;
}

int fuzz_gzip(const uint8_t *data, size_t size, uint8_t **out, size_t *out_size) {
    z_stream z = {0};
    /* windowBits 15 + 16: a gzip wrapper rather than zlib's */
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t capacity = deflateBound(&z, (uLong)size) + 32;
    *out = malloc(capacity);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)size;
    z.next_out = *out;
    z.avail_out = (uInt)capacity;
    int status = *out ? deflate(&z, Z_FINISH) : Z_MEM_ERROR;
    *out_size = z.total_out;
    deflateEnd(&z);
    if (status == Z_STREAM_END) return 0;
    free(*out);
    *out = NULL;
    return -1;
}

/* --- The payload checksum, made right ------------------------------------------------------ */

static int is_json_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The 8 value characters after `"checksum.crc32"`, optional JSON whitespace, ':', whitespace and
 * `"0x`, followed by `"`, all inside header[0..n): their offset in header, or -1. */
static long checksum_value_at(const uint8_t *header, size_t n) {
    static const char key[] = "\"checksum.crc32\"";
    const size_t key_len = sizeof key - 1;
    for (size_t at = 0; at + key_len <= n; at++) {
        if (memcmp(header + at, key, key_len) != 0) continue;
        size_t i = at + key_len;
        while (i < n && is_json_space(header[i])) i++;
        if (i >= n || header[i++] != ':') continue;
        while (i < n && is_json_space(header[i])) i++;
        if (i + 12 > n || memcmp(header + i, "\"0x", 3) != 0 || header[i + 11] != '"') continue;
        return (long)(i + 3);
    }
    return -1;
}

uint8_t *fuzz_fix_checksum(const uint8_t *data, size_t size) {
    if (size < 8) return NULL;
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--) header_bytes = header_bytes << 8 | data[i];
    if (header_bytes > size - 8) return NULL;
    long value = checksum_value_at(data + 8, (size_t)header_bytes);
    if (value < 0) return NULL;
    size_t data_start = 8 + (size_t)header_bytes;
    uLong crc = crc32(crc32(0L, Z_NULL, 0), data + data_start, (uInt)(size - data_start));
    char digits[9];
    snprintf(digits, sizeof digits, "%08lx", (unsigned long)crc);
    if (memcmp(data + 8 + value, digits, 8) == 0) return NULL;
    uint8_t *fixed = malloc(size);
    if (!fixed) return NULL;
    memcpy(fixed, data, size);
    memcpy(fixed + 8 + value, digits, 8);
    return fixed;
}

/* --- Outcomes ------------------------------------------------------------------------------- */

/* The outcome of one reader call that returned status, with its message checked. */
static FuzzOutcome judge(int status, const char *message, char *err, size_t err_len,
                         FuzzOutcome worst) {
    FuzzOutcome outcome = FUZZ_ACCEPTED;
    if (status != 0)
        outcome = message[0] == '\0' || strchr(message, '\n') ? FUZZ_BAD_MESSAGE : FUZZ_REFUSED;
    if (outcome > worst) snprintf(err, err_len, "%s", message[0] ? message : "(empty message)");
    return outcome > worst ? outcome : worst;
}

/* --- The readers ---------------------------------------------------------------------------- */

static FuzzOutcome read_npy(const char *path, char *err, size_t err_len) {
    char e[512] = "";
    FuzzOutcome worst = FUZZ_ACCEPTED;
    Tensor *t = NULL;
    int status = npy_load(path, &t, e, sizeof e);
    if (status == 0) tensor_free(t);
    worst = judge(status, e, err, err_len, worst);

    int *ids = NULL, ndim, shape[TENSOR_MAX_DIMS];
    e[0] = '\0';
    status = npy_load_ints(path, &ids, &ndim, shape, e, sizeof e);
    if (status == 0) free(ids);
    worst = judge(status, e, err, err_len, worst);

    double *values = NULL;
    e[0] = '\0';
    status = npy_load_doubles(path, &values, &ndim, shape, e, sizeof e);
    if (status == 0) free(values);
    return judge(status, e, err, err_len, worst);
}

static FuzzOutcome read_safetensors(const char *path, char *err, size_t err_len) {
    char e[512] = "";
    SafetensorsFile file;
    int status = safetensors_read(path, &file, e, sizeof e);
    if (status == 0) safetensors_file_free(&file);
    FuzzOutcome worst = judge(status, e, err, err_len, FUZZ_ACCEPTED);

    ParamSet params = {0};
    fuzz_model_init(&params);
    e[0] = '\0';
    status = safetensors_load_params(path, &params, 1, e, sizeof e);
    params_free(&params);
    return judge(status, e, err, err_len, worst);
}

void fuzz_model_init(ParamSet *params) {
    params_new(params, "fc", "weight", 2, (const int[]){3, 4});
    params_new(params, "fc", "bias", 1, (const int[]){3});
    params_new(params, "emb", "weight", 2, (const int[]){5, 2});
}

static FuzzOutcome read_checkpoint(const char *path, char *err, size_t err_len) {
    char e[512] = "";
    ParamSet params = {0};
    fuzz_model_init(&params);
    AdamW opt;
    adamw_init(&opt, &params, ADAMW_DEFAULTS);
    TrainState state;
    int status = checkpoint_load(path, &params, &opt, &state, e, sizeof e);
    if (status == 0) free(state.config);
    FuzzOutcome worst = judge(status, e, err, err_len, FUZZ_ACCEPTED);
    adamw_free(&opt);

    e[0] = '\0';
    status = checkpoint_load(path, &params, NULL, NULL, e, sizeof e);
    worst = judge(status, e, err, err_len, worst);
    params_free(&params);

    char *config = NULL;
    e[0] = '\0';
    status = checkpoint_read_config(path, &config, e, sizeof e);
    if (status == 0) free(config);
    return judge(status, e, err, err_len, worst);
}

static FuzzOutcome read_idx(const char *path, char *err, size_t err_len) {
    char e[512] = "";
    unsigned char *pixels = NULL, *labels = NULL;
    int count, rows, cols;
    int status = idx_read_images(path, &pixels, &count, &rows, &cols, e, sizeof e);
    if (status == 0) free(pixels);
    FuzzOutcome worst = judge(status, e, err, err_len, FUZZ_ACCEPTED);

    e[0] = '\0';
    status = idx_read_labels(path, IMAGE_CLASSES, &labels, &count, e, sizeof e);
    if (status == 0) free(labels);
    return judge(status, e, err, err_len, worst);
}

/* The config text, and if it is accepted, the round trip: its formatted text must parse back to
 * a config that formats to the same text. */
static FuzzOutcome read_config(const char *text, char *err, size_t err_len) {
    char e[512] = "";
    RunConfig run;
    int status = run_config_parse(&run, text, "fuzz.cfg", e, sizeof e);
    FuzzOutcome worst = judge(status, e, err, err_len, FUZZ_ACCEPTED);
    if (status != 0) return worst;
    char *formatted = run_config_format(&run);
    RunConfig back;
    e[0] = '\0';
    status = run_config_parse(&back, formatted, "formatted", e, sizeof e);
    char *again = status == 0 ? run_config_format(&back) : NULL;
    if (status != 0 || strcmp(formatted, again) != 0) {
        snprintf(err, err_len, "format + parse changed the config: %s", status ? e : again);
        worst = FUZZ_MISMATCH;
    }
    free(again);
    free(formatted);
    return worst;
}

const FuzzReader FUZZ_READERS[] = {
    {"npy", ".npy", 0, 0, 0, read_npy},
    {"safetensors", ".safetensors", 0, 0, 1, read_safetensors},
    {"checkpoint", ".safetensors", 0, 0, 1, read_checkpoint},
    {"idx", ".gz", 0, 0, 0, read_idx},    /* the bytes are the .gz file */
    {"idx_gz", ".gz", 1, 0, 0, read_idx}, /* the bytes are the IDX file, gzipped for the reader */
    {"config", "", 0, 1, 0, read_config},
};
const int FUZZ_READER_COUNT = (int)(sizeof FUZZ_READERS / sizeof FUZZ_READERS[0]);

const FuzzReader *fuzz_reader_find(const char *name) {
    for (int i = 0; i < FUZZ_READER_COUNT; i++)
        if (strcmp(FUZZ_READERS[i].name, name) == 0) return &FUZZ_READERS[i];
    return NULL;
}

/* --- One input, with cpool_fail() caught ---------------------------------------------------- */

static jmp_buf escape;

static void catch_failure(const char *message, void *user) {
    (void)message;
    longjmp(*(jmp_buf *)user, 1);
}

/* The reader's input (path or text) made from the bytes, or NULL with err set. *owned is what
 * the caller frees. */
static const char *make_input(const FuzzReader *reader, const uint8_t *data, size_t size,
                              void **owned, char *err, size_t err_len) {
    *owned = NULL;
    if (reader->text_input) {
        char *text = malloc(size + 1);
        if (text) memcpy(text, data, size), text[size] = '\0';
        *owned = text;
        return text;
    }
    uint8_t *gz = NULL;
    size_t gz_size = 0;
    if (reader->gzip_input && fuzz_gzip(data, size, &gz, &gz_size) != 0) {
        snprintf(err, err_len, "fuzz harness: gzip failed");
        return NULL;
    }
    const char *path = reader->gzip_input ? fuzz_write_temp(gz, gz_size, reader->suffix)
                                          : fuzz_write_temp(data, size, reader->suffix);
    free(gz);
    if (!path) snprintf(err, err_len, "fuzz harness: cannot write the temp file");
    return path;
}

/* reader->read(input) with cpool_fail() caught (kept apart from the caller, so no local of the
 * caller lives across the setjmp). */
static FuzzOutcome guarded_read(const FuzzReader *reader, const char *input, char *err,
                                size_t err_len) {
    void *previous_user = cpool_error_handler_user();
    ErrorHandler previous = cpool_set_error_handler(catch_failure, &escape);
    FuzzOutcome outcome;
    if (setjmp(escape) == 0) {
        outcome = reader->read(input, err, err_len);
    } else {
        snprintf(err, err_len, "cpool_fail: %s", cpool_last_error());
        outcome = FUZZ_CPOOL_FAIL;
    }
    cpool_set_error_handler(previous, previous_user);
    return outcome;
}

/* One run of the reader on data, as it is. */
static FuzzOutcome run_once(const FuzzReader *reader, const uint8_t *data, size_t size, char *err,
                            size_t err_len) {
    err[0] = '\0';
    void *owned;
    const char *input = make_input(reader, data, size, &owned, err, err_len);
    if (!input) {
        fprintf(stderr, "%s\n", err);
        abort(); /* the harness itself is broken: stop rather than fuzz nothing */
    }
    FuzzOutcome outcome = guarded_read(reader, input, err, err_len);
    free(owned);
    return outcome;
}

FuzzOutcome fuzz_run_input(const FuzzReader *reader, const uint8_t *data, size_t size, char *err,
                           size_t err_len) {
    FuzzOutcome outcome = run_once(reader, data, size, err, err_len);
    uint8_t *fixed =
        reader->fix_checksum && outcome < FUZZ_CPOOL_FAIL ? fuzz_fix_checksum(data, size) : NULL;
    if (fixed) {
        char fixed_err[1024];
        FuzzOutcome fixed_outcome = run_once(reader, fixed, size, fixed_err, sizeof fixed_err);
        if (fixed_outcome > outcome) {
            outcome = fixed_outcome;
            snprintf(err, err_len, "with the checksum made right: %s", fixed_err);
        }
        free(fixed);
    }
    return outcome;
}
