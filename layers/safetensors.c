/* safetensors.c - see safetensors.h.
 *
 * Reading goes in stages, each of which may stop with one error line:
 *   1. the 8-byte header length, checked against the file size before anything is allocated;
 *   2. the header bytes: no NUL, valid UTF-8, a JSON object with only whitespace after it;
 *   3. every entry: "__metadata__" (string -> string) or a tensor {dtype, shape, data_offsets};
 *   4. names unique; the tensors, sorted by offset, tile the data part exactly;
 *   5. the payload checksum, if the metadata has one: the CRC-32 of the data part as stored;
 *   6. the data, converted to `real` chunk by chunk.
 * A Reader holds everything allocated on the way, so reader_free() cleans up on every path. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "util.h"

static const char *const dtype_names[] = {"F32", "F64"};
static const int dtype_bytes[] = {4, 8};

/* The other dtypes of the format: recognised, so the error can say "not supported". */
static const char *const other_dtypes[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
                                           "I16",  "U16", "F16", "BF16",    "I32",
                                           "U32",  "I64", "U64"};

enum { CHUNK_BYTES = 1 << 14 }; /* data is converted through a buffer of this size */

/* ------------------------------------------------------------------------------------------ */
/* Small helpers: errors, printable names, little-endian bytes                                */

/* A name as it may appear in a one-line message: control characters become '?', long names are
 * cut at 80 bytes. */
static const char *shown(const char *name, char buffer[96]) {
    size_t n = 0;
    for (; n < 80 && name[n]; n++)
        buffer[n] = (unsigned char)name[n] < 0x20 || name[n] == 0x7f ? '?' : name[n];
    strcpy(buffer + n, name[n] ? "..." : "");
    return buffer;
}

static uint64_t get_u64_le(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* The value stored at b as a little-endian F32 or F64. */
static double get_value_le(const unsigned char *b, SafetensorsDtype dtype) {
    if (dtype == SAFETENSORS_F64) {
        uint64_t bits = get_u64_le(b);
        double v;
        memcpy(&v, &bits, 8);
        return v;
    }
    uint32_t bits =
        (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void put_u64_le(unsigned char *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

/* 1 if bytes[0..n) is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        int extra = c < 0x80           ? 0
                    : (c >> 5) == 0x06 ? 1
                    : (c >> 4) == 0x0e ? 2
                    : (c >> 3) == 0x1e ? 3
                                       : -1;
        if (extra < 0 || (size_t)extra >= n - i) return 0;
        uint32_t code = extra == 0 ? c : c & (0x3fu >> extra);
        for (int k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            code = code << 6 | (s[i + k] & 0x3fu);
        }
        static const uint32_t min_code[] = {0, 0x80, 0x800, 0x10000};
        if (code < min_code[extra] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
            return 0;
        i += (size_t)extra + 1;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                    */

typedef struct Entry {
    const char *name; /* points into the JSON tree */
    SafetensorsDtype dtype;
    int ndim, shape[TENSOR_MAX_DIMS];
    long count;          /* elements, the product of the shape */
    uint64_t begin, end; /* byte range in the data part */
} Entry;

typedef struct Reader {
    const char *path;
    char *err;
    size_t err_len;
    FILE *fp;
    uint64_t file_bytes, header_bytes, data_bytes; /* data starts at 8 + header_bytes */
    char *header;
    cJSON *json;
    const cJSON *metadata; /* the "__metadata__" object, or NULL */
    Entry *entries;        /* tensors; sorted by offset after check_layout */
    int n_entries;
} Reader;

static void reader_free(Reader *r) {
    if (r->fp) fclose(r->fp);
    free(r->header);
    cJSON_Delete(r->json);
    free(r->entries);
}

static int open_file(Reader *r) {
    r->fp = fopen(r->path, "rb");
    if (!r->fp) return path_error(r->err, r->err_len, r->path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(r->fp), &st) != 0)
        return path_error(r->err, r->err_len, r->path, "cannot stat: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return path_error(r->err, r->err_len, r->path, "not a regular file");
    r->file_bytes = (uint64_t)st.st_size;
    return 0;
}

/* Stage 1 and 2: header length, header bytes, JSON. */
static int read_header(Reader *r) {
    unsigned char length[8];
    if (r->file_bytes < 8 || fread(length, 1, 8, r->fp) != 8)
        return path_error(r->err, r->err_len, r->path,
                          "file is %" PRIu64 " bytes, too short for the 8-byte header length",
                          r->file_bytes);
    r->header_bytes = get_u64_le(length);
    if (r->header_bytes > r->file_bytes - 8)
        return path_error(r->err, r->err_len, r->path,
                          "header length %" PRIu64 " runs past the end of the file (%" PRIu64
                          " bytes)",
                          r->header_bytes, r->file_bytes);
    if (r->header_bytes > (uint64_t)SAFETENSORS_MAX_HEADER_BYTES)
        return path_error(r->err, r->err_len, r->path,
                          "header length %" PRIu64 " exceeds the limit %ld", r->header_bytes,
                          SAFETENSORS_MAX_HEADER_BYTES);
    r->data_bytes = r->file_bytes - 8 - r->header_bytes;
    size_t n = (size_t)r->header_bytes;
    r->header = xmalloc(n + 1);
    if (fread(r->header, 1, n, r->fp) != n)
        return path_error(r->err, r->err_len, r->path, "cannot read the %zu-byte header", n);
    r->header[n] = '\0';
    const char *nul = memchr(r->header, '\0', n);
    if (nul)
        return path_error(r->err, r->err_len, r->path, "header: NUL byte at offset %td",
                          nul - r->header);
    if (!valid_utf8((const unsigned char *)r->header, n))
        return path_error(r->err, r->err_len, r->path, "header: not valid UTF-8");
    if (n == 0 || r->header[0] != '{')
        return path_error(r->err, r->err_len, r->path,
                          "header: does not start with '{' (a JSON object)");
    const char *end = NULL;
    r->json = cJSON_ParseWithLengthOpts(r->header, n, &end, 0);
    if (!r->json || !cJSON_IsObject(r->json)) {
        size_t at = end ? (size_t)(end - r->header) : 0;
        return path_error(r->err, r->err_len, r->path, "header: invalid JSON near byte %zu", at);
    }
    for (const char *p = end; p < r->header + n; p++)
        if (!strchr(" \t\r\n", *p))
            return path_error(r->err, r->err_len, r->path,
                              "header: unexpected text after the JSON object at byte %td",
                              p - r->header);
    return 0;
}

/* A JSON number that is an integer in [0, max]; -1 otherwise. */
static int json_count(const cJSON *item, double max, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= max && v == floor(v))) return -1;
    *out = (uint64_t)v;
    return 0;
}

static const char *json_number_text(const cJSON *item, char buffer[32]) {
    if (!cJSON_IsNumber(item)) return "not a number";
    snprintf(buffer, 32, "%.17g", item->valuedouble);
    return buffer;
}

static int parse_dtype(Reader *r, const char *name, const cJSON *item, Entry *e) {
    char nb[96];
    if (!cJSON_IsString(item))
        return path_error(r->err, r->err_len, r->path, "tensor '%s': 'dtype' is not a string",
                          shown(name, nb));
    for (int d = 0; d < 2; d++)
        if (strcmp(item->valuestring, dtype_names[d]) == 0) return e->dtype = d, 0;
    char db[96];
    for (size_t d = 0; d < sizeof other_dtypes / sizeof *other_dtypes; d++)
        if (strcmp(item->valuestring, other_dtypes[d]) == 0)
            return path_error(r->err, r->err_len, r->path,
                              "tensor '%s': dtype '%s' is not supported (only F32 and F64)",
                              shown(name, nb), item->valuestring);
    return path_error(r->err, r->err_len, r->path, "tensor '%s': unknown dtype '%s'",
                      shown(name, nb), shown(item->valuestring, db));
}

static int parse_shape(Reader *r, const char *name, const cJSON *item, Entry *e) {
    char nb[96], vb[32];
    if (!cJSON_IsArray(item))
        return path_error(r->err, r->err_len, r->path, "tensor '%s': 'shape' is not an array",
                          shown(name, nb));
    int ndim = cJSON_GetArraySize(item);
    if (ndim > TENSOR_MAX_DIMS)
        return path_error(r->err, r->err_len, r->path,
                          "tensor '%s': shape has %d dimensions, at most %d are supported",
                          shown(name, nb), ndim, TENSOR_MAX_DIMS);
    int d = 0, has_zero = 0;
    for (const cJSON *dim = item->child; dim; dim = dim->next, d++) {
        uint64_t size;
        if (json_count(dim, 2147483647.0, &size) != 0)
            return path_error(
                r->err, r->err_len, r->path,
                "tensor '%s': shape[%d] is %s, not a dimension (an integer 0..2147483647)",
                shown(name, nb), d, json_number_text(dim, vb));
        e->shape[d] = (int)size;
        has_zero |= size == 0;
    }
    /* Bounding the product keeps it and its byte count far from overflow; the byte count is
     * compared with data_offsets later. */
    uint64_t max_count = ((uint64_t)1 << 60) / (uint64_t)dtype_bytes[e->dtype], count = 1;
    for (d = 0; d < ndim && !has_zero; d++) {
        if ((uint64_t)e->shape[d] > max_count / count)
            return path_error(r->err, r->err_len, r->path,
                              "tensor '%s': shape has more than 2^60 bytes of elements",
                              shown(name, nb));
        count *= (uint64_t)e->shape[d];
    }
    if (has_zero) count = 0;
    e->ndim = ndim;
    e->count = (long)count;
    return 0;
}

static int parse_offsets(Reader *r, const char *name, const cJSON *item, Entry *e) {
    char nb[96], vb[32];
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
        return path_error(r->err, r->err_len, r->path,
                          "tensor '%s': 'data_offsets' is not an array of two integers",
                          shown(name, nb));
    uint64_t at[2];
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetArrayItem(item, k);
        if (json_count(v, 9007199254740992.0, &at[k]) != 0)
            return path_error(r->err, r->err_len, r->path,
                              "tensor '%s': data_offsets[%d] is %s, not a non-negative integer",
                              shown(name, nb), k, json_number_text(v, vb));
    }
    e->begin = at[0], e->end = at[1];
    if (e->begin > e->end)
        return path_error(r->err, r->err_len, r->path,
                          "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] are reversed",
                          shown(name, nb), e->begin, e->end);
    if (e->end > r->data_bytes)
        return path_error(r->err, r->err_len, r->path,
                          "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                          "] run past the end of the %" PRIu64 "-byte data part",
                          shown(name, nb), e->begin, e->end, r->data_bytes);
    return 0;
}

/* One tensor entry: exactly the fields dtype, shape and data_offsets (others are ignored, as the
 * reference reader does), each once, consistent with each other. */
static int parse_entry(Reader *r, const cJSON *item, Entry *e) {
    char nb[96], sb[96];
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item))
        return path_error(r->err, r->err_len, r->path, "tensor '%s': entry is not a JSON object",
                          shown(name, nb));
    static const char *const fields[] = {"dtype", "shape", "data_offsets"};
    const cJSON *found[3] = {NULL, NULL, NULL};
    for (const cJSON *field = item->child; field; field = field->next)
        for (int f = 0; f < 3; f++)
            if (strcmp(field->string, fields[f]) == 0) {
                if (found[f])
                    return path_error(r->err, r->err_len, r->path,
                                      "tensor '%s': duplicate field '%s'", shown(name, nb),
                                      fields[f]);
                found[f] = field;
            }
    for (int f = 0; f < 3; f++)
        if (!found[f])
            return path_error(r->err, r->err_len, r->path, "tensor '%s': missing '%s'",
                              shown(name, nb), fields[f]);
    if (parse_dtype(r, name, found[0], e) != 0 || parse_shape(r, name, found[1], e) != 0 ||
        parse_offsets(r, name, found[2], e) != 0)
        return -1;
    uint64_t need = (uint64_t)e->count * (uint64_t)dtype_bytes[e->dtype];
    if (e->end - e->begin != need)
        return path_error(r->err, r->err_len, r->path,
                          "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                          " bytes but shape %s of %s needs %" PRIu64,
                          shown(name, nb), e->begin, e->end, e->end - e->begin,
                          shape_string(e->ndim, e->shape, sb, sizeof sb), dtype_names[e->dtype],
                          need);
    return 0;
}

static int parse_metadata(Reader *r, const cJSON *item) {
    char kb[96];
    if (r->metadata)
        return path_error(r->err, r->err_len, r->path, "duplicate entry '__metadata__'");
    if (!cJSON_IsObject(item))
        return path_error(r->err, r->err_len, r->path, "'__metadata__' is not a JSON object");
    for (const cJSON *v = item->child; v; v = v->next) {
        if (!cJSON_IsString(v))
            return path_error(r->err, r->err_len, r->path,
                              "'__metadata__': value of '%s' is not a string",
                              shown(v->string, kb));
        for (const cJSON *w = item->child; w != v; w = w->next)
            if (strcmp(w->string, v->string) == 0)
                return path_error(r->err, r->err_len, r->path, "'__metadata__': duplicate key '%s'",
                                  shown(v->string, kb));
    }
    r->metadata = item;
    return 0;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Stage 3 and 4a: every entry, then unique names. */
static int parse_entries(Reader *r) {
    int n = cJSON_GetArraySize(r->json);
    r->entries = xcalloc((size_t)n, sizeof *r->entries);
    for (const cJSON *item = r->json->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (parse_metadata(r, item) != 0) return -1;
        } else if (parse_entry(r, item, &r->entries[r->n_entries++]) != 0) {
            return -1;
        }
    }
    const char **names = xmalloc((size_t)(r->n_entries ? r->n_entries : 1) * sizeof *names);
    for (int i = 0; i < r->n_entries; i++) names[i] = r->entries[i].name;
    qsort(names, (size_t)r->n_entries, sizeof *names, compare_names);
    int status = 0;
    char nb[96];
    for (int i = 1; i < r->n_entries && status == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            status = path_error(r->err, r->err_len, r->path, "duplicate tensor name '%s'",
                                shown(names[i], nb));
    free(names);
    return status;
}

static int compare_offsets(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Stage 4b: sorted by offset, each tensor starts where the previous one ended; the last one ends
 * at the end of the file. */
static int check_layout(Reader *r) {
    qsort(r->entries, (size_t)r->n_entries, sizeof *r->entries, compare_offsets);
    uint64_t covered = 0;
    char ab[96], bb[96];
    for (int i = 0; i < r->n_entries; i++) {
        const Entry *e = &r->entries[i];
        if (e->begin > covered)
            return path_error(r->err, r->err_len, r->path,
                              "data bytes [%" PRIu64 ", %" PRIu64 ") belong to no tensor", covered,
                              e->begin);
        if (e->begin < covered) {
            const Entry *p = &r->entries[i - 1];
            return path_error(r->err, r->err_len, r->path,
                              "tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64
                              ", %" PRIu64 "] overlap",
                              shown(p->name, ab), p->begin, p->end, shown(e->name, bb), e->begin,
                              e->end);
        }
        covered = e->end;
    }
    if (covered != r->data_bytes)
        return path_error(r->err, r->err_len, r->path,
                          "data bytes [%" PRIu64 ", %" PRIu64
                          ") belong to no tensor (the file is longer than its tensors)",
                          covered, r->data_bytes);
    return 0;
}

/* Stage 5: the stored checksum, "0x" and exactly 8 hex digits, against the CRC-32 of the data
 * part (read once more, in chunks: a checksum says nothing unless it covers the bytes as they
 * are on the disk, before any conversion). A file without the key passes. */
static int check_checksum(Reader *r) {
    const cJSON *item =
        r->metadata ? cJSON_GetObjectItemCaseSensitive(r->metadata, SAFETENSORS_CHECKSUM_KEY)
                    : NULL;
    if (!item) return 0;
    const char *text = item->valuestring;
    int well_formed = strlen(text) == 10 && text[0] == '0' && text[1] == 'x' &&
                      strspn(text + 2, "0123456789abcdefABCDEF") == 8;
    char vb[96];
    if (!well_formed)
        return path_error(r->err, r->err_len, r->path,
                          "metadata '%s': expected 0x and 8 hex digits (the CRC-32 of the data "
                          "part), got '%s'",
                          SAFETENSORS_CHECKSUM_KEY, shown(text, vb));
    unsigned long stored = strtoul(text + 2, NULL, 16);
    if (fseeko(r->fp, (off_t)(8 + r->header_bytes), SEEK_SET) != 0)
        return path_error(r->err, r->err_len, r->path, "cannot seek to the data part");
    unsigned char chunk[CHUNK_BYTES];
    uLong computed = crc32(0L, Z_NULL, 0);
    for (uint64_t done = 0; done < r->data_bytes;) {
        size_t want = r->data_bytes - done < CHUNK_BYTES ? (size_t)(r->data_bytes - done)
                                                         : (size_t)CHUNK_BYTES;
        if (fread(chunk, 1, want, r->fp) != want)
            return path_error(r->err, r->err_len, r->path, "file ended inside its data part");
        computed = crc32(computed, chunk, (uInt)want);
        done += want;
    }
    if (computed != stored)
        return path_error(r->err, r->err_len, r->path,
                          "payload checksum mismatch (stored 0x%08lx, computed 0x%08lx): the file "
                          "is damaged or was edited",
                          stored, (unsigned long)computed);
    return 0;
}

/* Stage 6: one tensor's bytes, converted to `real`. */
static int read_values(Reader *r, const Entry *e, Tensor *t) {
    char nb[96];
    int width = dtype_bytes[e->dtype];
    if (fseeko(r->fp, (off_t)(8 + r->header_bytes + e->begin), SEEK_SET) != 0)
        return path_error(r->err, r->err_len, r->path, "tensor '%s': cannot seek to its data",
                          shown(e->name, nb));
    unsigned char chunk[CHUNK_BYTES];
    long per_chunk = CHUNK_BYTES / width;
    for (long done = 0; done < e->count; done += per_chunk) {
        long n = e->count - done < per_chunk ? e->count - done : per_chunk;
        if (fread(chunk, (size_t)width, (size_t)n, r->fp) != (size_t)n)
            return path_error(r->err, r->err_len, r->path,
                              "tensor '%s': file ended inside its data", shown(e->name, nb));
        for (long i = 0; i < n; i++) {
            double v = get_value_le(chunk + i * width, e->dtype);
            if (sizeof(real) == 4 && isfinite(v) && fabs(v) > FLT_MAX)
                return path_error(r->err, r->err_len, r->path,
                                  "tensor '%s': element %ld (%.17g) is beyond the float32 range",
                                  shown(e->name, nb), done + i, v);
            t->data[done + i] = (real)v;
        }
    }
    return 0;
}

/* The validated entries (in offset order) and the metadata, copied into the caller's struct. */
static int fill_file(Reader *r, SafetensorsFile *file) {
    file->names = xcalloc((size_t)r->n_entries + 1, sizeof *file->names);
    file->tensors = xcalloc((size_t)r->n_entries + 1, sizeof *file->tensors);
    file->dtypes = xcalloc((size_t)r->n_entries + 1, sizeof *file->dtypes);
    for (int i = 0; i < r->n_entries; i++) {
        const Entry *e = &r->entries[i];
        file->names[i] = strcpy(xmalloc(strlen(e->name) + 1), e->name);
        file->tensors[i] = tensor_create(e->ndim, e->shape, 0);
        file->dtypes[i] = e->dtype;
        file->count = i + 1;
        if (read_values(r, e, file->tensors[i]) != 0) return -1;
    }
    int n = r->metadata ? cJSON_GetArraySize(r->metadata) : 0;
    file->metadata_keys = xcalloc((size_t)n + 1, sizeof(char *));
    file->metadata_values = xcalloc((size_t)n + 1, sizeof(char *));
    for (const cJSON *v = r->metadata ? r->metadata->child : NULL; v; v = v->next) {
        int k = file->n_metadata++;
        file->metadata_keys[k] = strcpy(xmalloc(strlen(v->string) + 1), v->string);
        file->metadata_values[k] = strcpy(xmalloc(strlen(v->valuestring) + 1), v->valuestring);
    }
    return 0;
}

int safetensors_read(const char *path, SafetensorsFile *file, char *err, size_t err_len) {
    *file = (SafetensorsFile){0};
    Reader r = {.path = path, .err = err, .err_len = err_len};
    int status = open_file(&r);
    if (status == 0) status = read_header(&r);
    if (status == 0) status = parse_entries(&r);
    if (status == 0) status = check_layout(&r);
    if (status == 0) status = check_checksum(&r);
    if (status == 0) status = fill_file(&r, file);
    reader_free(&r);
    if (status != 0) safetensors_file_free(file);
    return status;
}

void safetensors_file_free(SafetensorsFile *file) {
    for (int i = 0; i < file->count; i++) {
        free(file->names[i]);
        tensor_free(file->tensors[i]);
    }
    for (int k = 0; k < file->n_metadata; k++) {
        free(file->metadata_keys[k]);
        free(file->metadata_values[k]);
    }
    free(file->names);
    free(file->tensors);
    free(file->dtypes);
    free(file->metadata_keys);
    free(file->metadata_values);
    *file = (SafetensorsFile){0};
}

Tensor *safetensors_file_find(const SafetensorsFile *file, const char *name) {
    for (int i = 0; i < file->count; i++)
        if (strcmp(file->names[i], name) == 0) return file->tensors[i];
    return NULL;
}

const char *safetensors_file_metadata(const SafetensorsFile *file, const char *key) {
    for (int k = 0; k < file->n_metadata; k++)
        if (strcmp(file->metadata_keys[k], key) == 0) return file->metadata_values[k];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                    */

/* The JSON header, padded with spaces to a multiple of 8 bytes (as the reference writer does, so
 * the data part is aligned). Returns a malloc'd string, or NULL on a bad name. */
static char *build_header(const ParamSet *params, SafetensorsDtype dtype,
                          const char *const *metadata) {
    cJSON *root = cJSON_CreateObject();
    if (metadata && metadata[0]) {
        cJSON *map = cJSON_AddObjectToObject(root, "__metadata__");
        for (int k = 0; metadata[k] && metadata[k + 1]; k += 2)
            cJSON_AddStringToObject(map, metadata[k], metadata[k + 1]);
    }
    uint64_t offset = 0;
    for (int i = 0; i < params->count; i++) {
        const Tensor *t = params->items[i].tensor;
        cJSON *entry = cJSON_AddObjectToObject(root, params->items[i].name);
        cJSON_AddStringToObject(entry, "dtype", dtype_names[dtype]);
        cJSON_AddItemToObject(entry, "shape", cJSON_CreateIntArray(t->shape, t->ndim));
        uint64_t end = offset + (uint64_t)t->size * (uint64_t)dtype_bytes[dtype];
        char offsets[64];
        snprintf(offsets, sizeof offsets, "[%" PRIu64 ",%" PRIu64 "]", offset, end);
        cJSON_AddItemToObject(entry, "data_offsets", cJSON_CreateRaw(offsets));
        offset = end;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) cpool_fail("safetensors: out of memory printing the header");
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *header = xmalloc(padded + 1);
    memcpy(header, text, n);
    memset(header + n, ' ', padded - n);
    header[padded] = '\0';
    free(text);
    return header;
}

/* values[0..n) as little-endian dtype into chunk (n * width bytes). */
static void encode_values(unsigned char *chunk, const real *values, long n,
                          SafetensorsDtype dtype) {
    int width = dtype_bytes[dtype];
    for (long i = 0; i < n; i++) {
        uint64_t bits;
        if (dtype == SAFETENSORS_F32) {
            float f = (float)values[i];
            uint32_t b32;
            memcpy(&b32, &f, 4);
            bits = b32;
        } else {
            double v = (double)values[i];
            memcpy(&bits, &v, 8);
        }
        for (int b = 0; b < width; b++) chunk[i * width + b] = (unsigned char)(bits >> (8 * b));
    }
}

/* One tensor's values, encoded chunk by chunk; each chunk goes into *crc and, if fp, the file.
 * Returns -1 if a write fails. */
static int put_values(FILE *fp, const real *values, long count, SafetensorsDtype dtype,
                      uLong *crc) {
    unsigned char chunk[CHUNK_BYTES];
    int width = dtype_bytes[dtype];
    long per_chunk = CHUNK_BYTES / width;
    for (long done = 0; done < count; done += per_chunk) {
        long n = count - done < per_chunk ? count - done : per_chunk;
        encode_values(chunk, values + done, n, dtype);
        *crc = crc32(*crc, chunk, (uInt)(n * width));
        if (fp && fwrite(chunk, (size_t)width, (size_t)n, fp) != (size_t)n) return -1;
    }
    return 0;
}

static const real *values_of(const Tensor *t, SafetensorsWhich which) {
    return which == SAFETENSORS_GRAD ? t->grad : t->data;
}

unsigned long safetensors_payload_crc32(const ParamSet *params, SafetensorsWhich which,
                                        SafetensorsDtype dtype) {
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < params->count; i++) {
        const Tensor *t = params->items[i].tensor;
        if (which == SAFETENSORS_GRAD && !t->grad)
            cpool_fail("safetensors_payload_crc32: parameter '%s' has no gradient",
                       params->items[i].name);
        put_values(NULL, values_of(t, which), t->size, dtype, &crc);
    }
    return (unsigned long)crc;
}

/* The value the caller gave for the checksum key, or NULL. */
static const char *given_checksum(const char *const *metadata) {
    for (int k = 0; metadata && metadata[k]; k += 2)
        if (strcmp(metadata[k], SAFETENSORS_CHECKSUM_KEY) == 0) return metadata[k + 1];
    return NULL;
}

static int check_savable(const char *path, const ParamSet *params, SafetensorsWhich which,
                         const char *const *metadata, char *err, size_t err_len) {
    char nb[96];
    for (int i = 0; i < params->count; i++) {
        if (strcmp(params->items[i].name, "__metadata__") == 0)
            return path_error(err, err_len, path, "a parameter may not be called '__metadata__'");
        if (which == SAFETENSORS_GRAD && !params->items[i].tensor->grad)
            return path_error(err, err_len, path, "parameter '%s' has no gradient to save",
                              shown(params->items[i].name, nb));
    }
    for (int k = 0; metadata && metadata[k]; k += 2) {
        if (!metadata[k + 1])
            return path_error(err, err_len, path, "metadata key '%s' has no value",
                              shown(metadata[k], nb));
        for (int j = 0; j < k; j += 2)
            if (strcmp(metadata[j], metadata[k]) == 0)
                return path_error(err, err_len, path, "duplicate metadata key '%s'",
                                  shown(metadata[k], nb));
    }
    return 0;
}

int safetensors_save_params(const char *path, const ParamSet *params, SafetensorsWhich which,
                            SafetensorsDtype dtype, const char *const *metadata, char *err,
                            size_t err_len) {
    if (check_savable(path, params, which, metadata, err, err_len) != 0) return -1;
    AtomicFile af;
    if (atomic_open(&af, path, err, err_len) != 0) return -1;
    char *header = build_header(params, dtype, metadata);
    unsigned char length[8];
    put_u64_le(length, strlen(header));
    int failed = fwrite(length, 1, 8, af.fp) != 8 ||
                 fwrite(header, 1, strlen(header), af.fp) != strlen(header);
    free(header);
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < params->count && !failed; i++) {
        const Tensor *t = params->items[i].tensor;
        failed = put_values(af.fp, values_of(t, which), t->size, dtype, &crc);
    }
    if (failed) {
        int code = errno;
        atomic_abort(&af);
        return path_error(err, err_len, path, "write failed: %s", strerror(code));
    }
    /* A checksum the caller computed must be the one of the bytes written: a wrong one would
     * make a file that no reader accepts. */
    const char *given = given_checksum(metadata);
    char written[16];
    snprintf(written, sizeof written, "0x%08lx", (unsigned long)crc);
    if (given && strcmp(given, written) != 0) {
        atomic_abort(&af);
        char vb[96];
        return path_error(err, err_len, path,
                          "metadata '%s' is '%s' but the data written has CRC-32 %s",
                          SAFETENSORS_CHECKSUM_KEY, shown(given, vb), written);
    }
    return atomic_close(&af, err, err_len);
}

/* ------------------------------------------------------------------------------------------ */
/* Loading into a parameter set                                                                */

static int check_fits(const char *path, const SafetensorsFile *file, const ParamSet *params,
                      int allow_extra, char *err, size_t err_len) {
    char nb[96], want[96], got[96];
    for (int i = 0; i < params->count; i++) {
        const Param *p = &params->items[i];
        const Tensor *t = safetensors_file_find(file, p->name);
        if (!t)
            return path_error(err, err_len, path,
                              "missing tensor '%s' (the model expects shape %s)",
                              shown(p->name, nb), TENSOR_SHAPE_STR(p->tensor, want));
        if (!tensor_same_shape(t, p->tensor))
            return path_error(
                err, err_len, path, "tensor '%s' has shape %s but the model expects %s",
                shown(p->name, nb), TENSOR_SHAPE_STR(t, got), TENSOR_SHAPE_STR(p->tensor, want));
    }
    for (int i = 0; i < file->count && !allow_extra; i++)
        if (!params_find(params, file->names[i]))
            return path_error(err, err_len, path,
                              "unexpected tensor '%s' (the model has no parameter of that name)",
                              shown(file->names[i], nb));
    return 0;
}

int safetensors_load_params(const char *path, ParamSet *params, int allow_extra, char *err,
                            size_t err_len) {
    SafetensorsFile file;
    if (safetensors_read(path, &file, err, err_len) != 0) return -1;
    int status = check_fits(path, &file, params, allow_extra, err, err_len);
    for (int i = 0; i < params->count && status == 0; i++) {
        Tensor *p = params->items[i].tensor;
        memcpy(p->data, safetensors_file_find(&file, params->items[i].name)->data,
               (size_t)p->size * sizeof(real));
    }
    safetensors_file_free(&file);
    return status;
}
