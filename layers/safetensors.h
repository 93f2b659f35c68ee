/* safetensors.h - read and write parameter sets as .safetensors files.
 *
 * The format (https://github.com/huggingface/safetensors) is three parts:
 *
 *     <N: uint64 little-endian> <N bytes of JSON header> <raw little-endian tensor data>
 *
 *     {"fc.weight": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 32]},
 *      "fc.bias":   {"dtype": "F32", "shape": [2],    "data_offsets": [32, 40]},
 *      "__metadata__": {"step": "100"}}
 *
 * data_offsets are [begin, end) byte offsets into the data part (which starts at 8 + N). The
 * tensors tile the data part exactly: sorted by begin, each starts where the previous ended, the
 * first at 0 and the last at the end of the file. The optional "__metadata__" entry maps strings
 * to strings (configs, training state). Names are our dotted parameter paths
 * ("blocks.0.attn.qkv.weight"), so a PyTorch module with the same structure takes the tensors
 * with load_state_dict. We read and write the dtypes F32 and F64.
 *
 * Reading validates everything (header length against the file size, JSON syntax, every field's
 * type, known dtypes, shapes, offsets in range, no overlaps or gaps, element counts, duplicate
 * names, the metadata map) and reports the first problem as one line that starts with the path
 * and names the tensor or field:
 *
 *     p.safetensors: tensor 'fc.weight': data_offsets [0, 30] hold 30 bytes but shape (2, 4)
 *     of F32 needs 32
 *
 * Every function returns 0 on success, or -1 with that line in err and nothing allocated.
 * Writing is atomic (util.h): the path keeps its old content until the new file is complete.
 *
 * A payload checksum, when a file carries one: the metadata key "checksum.crc32" holds the
 * CRC-32 (zlib's crc32(), the one of gzip and PNG) of the whole data part, the bytes after the
 * header, as "0x" and 8 hex digits ("0x1c291ca3"; a fixed width, so a tool can patch it in place).
 * Reading verifies it whenever it is there and refuses a file whose data does not match:
 *
 *     run.safetensors: payload checksum mismatch (stored 0x1c291ca3, computed 0x0a8b5e21): the
 *     file is damaged or was edited
 *
 * A file without the key (every other writer's, plain parameter files) is read as before;
 * checkpoints (train/checkpoint.h) always carry it. A writer opts in by computing the value with
 * safetensors_payload_crc32() and passing it in the metadata; safetensors_save_params checks it
 * against the bytes it writes and refuses to write a wrong one.
 *
 *     char err[256];
 *     if (safetensors_save_params("p.safetensors", &params, SAFETENSORS_DATA, SAFETENSORS_F32,
 *                                 NULL, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); }
 *     if (safetensors_load_params("p.safetensors", &params, 0, err, sizeof err) != 0) ...
 *
 *     SafetensorsFile file;                          // any file, whatever the tensors
 *     if (safetensors_read("p.safetensors", &file, err, sizeof err) == 0) {
 *         for (int i = 0; i < file.count; i++) tensor_print(stdout, file.names[i],
 * file.tensors[i]); safetensors_file_free(&file);
 *     }
 */
#ifndef CPOOL_SAFETENSORS_H
#define CPOOL_SAFETENSORS_H

#include <stddef.h>

#include "params.h"

typedef enum SafetensorsDtype {
    SAFETENSORS_F32, /* "F32": 4-byte IEEE float */
    SAFETENSORS_F64, /* "F64": 8-byte IEEE double */
} SafetensorsDtype;

/* The dtype that holds this build's `real` exactly: F32, or F64 under -DCPOOL_DOUBLE. */
#ifdef CPOOL_DOUBLE
#define SAFETENSORS_REAL SAFETENSORS_F64
#else
#define SAFETENSORS_REAL SAFETENSORS_F32
#endif

/* Which buffer of each parameter to save: the values or their gradients (same names). */
typedef enum SafetensorsWhich { SAFETENSORS_DATA, SAFETENSORS_GRAD } SafetensorsWhich;

/* The metadata key of the payload checksum (see the top of this file). */
#define SAFETENSORS_CHECKSUM_KEY "checksum.crc32"

/* The largest JSON header accepted, in bytes (the limit of the reference Rust reader). */
#define SAFETENSORS_MAX_HEADER_BYTES 100000000L

/* A whole file in memory: tensors in the order of their data offsets, values converted to
 * `real` (F64 values in the float32 build are rounded to nearest; a finite value beyond the
 * float32 range is an error). Everything is owned by the struct. */
typedef struct SafetensorsFile {
    int count;
    char **names;             /* names[0..count-1] */
    Tensor **tensors;         /* owned tensors (tensor_create, requires_grad 0) */
    SafetensorsDtype *dtypes; /* the dtype each tensor had in the file */
    int n_metadata;
    char **metadata_keys; /* the "__metadata__" map, in file order; */
    char **metadata_values;
} SafetensorsFile;

/* Read and validate a file. On failure *file is left empty (safe to free). */
int safetensors_read(const char *path, SafetensorsFile *file, char *err, size_t err_len);
void safetensors_file_free(SafetensorsFile *file);
/* The tensor called name, or NULL; the metadata value for key, or NULL. */
Tensor *safetensors_file_find(const SafetensorsFile *file, const char *name);
const char *safetensors_file_metadata(const SafetensorsFile *file, const char *key);

/* Write every parameter of the set (its data or its gradient, which then must exist) in the
 * set's order, as dtype. metadata is NULL or a NULL-terminated list of key, value strings:
 * (const char *[]){"step", "100", "config", "{...}", NULL}. */
int safetensors_save_params(const char *path, const ParamSet *params, SafetensorsWhich which,
                            SafetensorsDtype dtype, const char *const *metadata, char *err,
                            size_t err_len);

/* The CRC-32 of the data part safetensors_save_params(path, params, which, dtype, ...) writes,
 * for the SAFETENSORS_CHECKSUM_KEY metadata value:
 *     char crc[16];
 *     snprintf(crc, sizeof crc, "0x%08lx", safetensors_payload_crc32(&params, SAFETENSORS_DATA,
 *                                                                     SAFETENSORS_F32));      */
unsigned long safetensors_payload_crc32(const ParamSet *params, SafetensorsWhich which,
                                        SafetensorsDtype dtype);

/* Copy the file's tensors into the parameters of the same names. Every parameter must be in the
 * file with exactly its shape; a tensor in the file that the set does not have is an error unless
 * allow_extra. Nothing is copied unless everything fits. */
int safetensors_load_params(const char *path, ParamSet *params, int allow_extra, char *err,
                            size_t err_len);

#endif
