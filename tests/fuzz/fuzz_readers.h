/* fuzz_readers.h - the file readers under fuzzing, one table, shared by the libFuzzer harnesses
 * (tests/fuzz/fuzz_<reader>.c) and the regression suite (tests/test_fuzz_regressions.c).
 *
 * A fuzz input goes to a reader exactly as a harness gives it: fuzz_run_input() writes the bytes
 * to a per-process temp file (in /dev/shm when it exists) for the readers that take a path,
 * gzip-compresses them first for "idx_gz" (so the IDX parser is reached, not only the gzip check),
 * or hands them over as text for "config". A reader may accept or refuse an input; what it must
 * never do is crash, call cpool_fail() (the library's fatal path, which exits a command-line
 * program), or refuse without exactly one line of explanation:
 *
 *     const FuzzReader *reader = fuzz_reader_find("npy");
 *     char err[512];
 *     FuzzOutcome outcome = fuzz_run_input(reader, data, size, err, sizeof err);
 *     if (outcome >= FUZZ_CPOOL_FAIL) ... a finding: err says what happened ...
 *
 * The payload checksum. A safetensors file may carry the CRC-32 of its data part (metadata
 * "checksum.crc32", layers/safetensors.h), and every checkpoint must: a mutation of the data
 * then only reaches the "payload checksum mismatch" refusal, never the code that converts and
 * checks the values (and for a checkpoint, every check after that). So for "safetensors" and
 * "checkpoint" each input goes to the reader twice: as it is (the checksum check itself is
 * fuzzed), then, if its header holds a value of the form "0x" + 8 characters, with those 8
 * replaced by the CRC-32 its data part really has (the check bypassed; the header keeps its
 * length, so nothing else moves). The worse outcome of the two counts.
 */
#ifndef CPOOL_FUZZ_READERS_H
#define CPOOL_FUZZ_READERS_H

#include <stddef.h>
#include <stdint.h>

/* What one input did, worst first wins when a reader makes several calls. */
typedef enum FuzzOutcome {
    FUZZ_ACCEPTED = 0,    /* every call succeeded */
    FUZZ_REFUSED = 1,     /* some call returned -1 with a one-line message (the right answer) */
    FUZZ_CPOOL_FAIL = 2,  /* a call reached cpool_fail(): a finding (err holds its message) */
    FUZZ_BAD_MESSAGE = 3, /* a call refused with an empty or multi-line message: a finding */
    FUZZ_MISMATCH = 4,    /* an accepted config did not survive format + parse: a finding */
} FuzzOutcome;

/* One reader: its name (the harness, corpus and regression directory name), the temp-file
 * suffix, how the fuzz bytes become its input, and the calls it makes on that input (a path, or
 * the text itself for config). read() returns the worst FuzzOutcome of its calls, with the
 * message of the first refusal in err. */
typedef struct FuzzReader {
    const char *name;
    const char *suffix;
    int gzip_input;   /* 1: the bytes are gzip-compressed before they are written */
    int text_input;   /* 1: read() gets the bytes as a NUL-terminated string, not a path */
    int fix_checksum; /* 1: also run the input with its payload checksum made right */
    FuzzOutcome (*read)(const char *input, char *err, size_t err_len);
} FuzzReader;

extern const FuzzReader FUZZ_READERS[];
extern const int FUZZ_READER_COUNT;

const FuzzReader *fuzz_reader_find(const char *name); /* NULL if unknown */

/* Give data[0..size-1] to the reader as described above. cpool_fail() inside it is caught (a
 * longjmp handler, the caller's handler restored after) and reported as FUZZ_CPOOL_FAIL; memory
 * the reader held at that moment is lost, which is fine for a finding. */
FuzzOutcome fuzz_run_input(const FuzzReader *reader, const uint8_t *data, size_t size, char *err,
                           size_t err_len);

/* The per-process temp file (created on first use, removed at exit): data[0..size-1] written to
 * "<dir>/cpool-fuzz-<pid><suffix>", dir /dev/shm if present else $TMPDIR or /tmp. The path, or
 * NULL if it could not be written. */
const char *fuzz_write_temp(const uint8_t *data, size_t size, const char *suffix);

/* A malloc'd copy of the safetensors bytes data[0..size) whose "checksum.crc32" value is set to
 * the CRC-32 of its data part; NULL if the header has no such value or it is right already. */
uint8_t *fuzz_fix_checksum(const uint8_t *data, size_t size);

/* data gzip-compressed (a gzip header, as gzopen() expects) into a malloc'd buffer. 0 or -1. */
int fuzz_gzip(const uint8_t *data, size_t size, uint8_t **out, size_t *out_size);

/* The small fixed model the checkpoint harness loads into: parameters "fc.weight" (3, 4),
 * "fc.bias" (3), "emb.weight" (5, 2), all zero. Free with params_free(). */
struct ParamSet;
void fuzz_model_init(struct ParamSet *params);

#endif
