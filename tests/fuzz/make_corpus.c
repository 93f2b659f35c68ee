/* make_corpus.c - write the fuzzing seed corpus: a few small valid files per reader, made by the
 * library's own writers wherever it has one (`make fuzz-seeds`, tests/fuzz/fuzz.mk).
 *
 *     make_corpus tests/fuzz/corpus     writes corpus/<reader>/<name> for every reader
 *
 * npy_save writes only this build's float type, so the other dtypes (f8, i4, i8) and a version
 * 2.0 header are written by hand here, with the header npy_save's format uses. The library has
 * no IDX writer either: those files are written with zlib directly. Everything is deterministic
 * (fixed values, fixed seeds), so rerunning it changes no file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "checkpoint.h"
#include "fuzz_readers.h"
#include "image_data.h"
#include "npy.h"
#include "optim.h"
#include "params.h"
#include "rng.h"
#include "run_config.h"
#include "safetensors.h"

static const char *root;

/* root/reader/name, the directory made on the way. */
static const char *seed_path(const char *reader, const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, reader);
    mkdir(root, 0777);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/%s", root, reader, name);
    return path;
}

static void check(int status, const char *err) {
    if (status != 0) {
        fprintf(stderr, "make_corpus: %s\n", err);
        exit(1);
    }
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(bytes, 1, n, fp) != n || fclose(fp) != 0) check(-1, path);
}

/* --- .npy ----------------------------------------------------------------------------------- */

/* A hand-written .npy: version major.0, descr, shape text ("(2, 3)"), raw little-endian bytes
 * (this machine is little-endian, as the fuzz build assumes). */
static void write_npy(const char *name, int major, const char *descr, const char *shape,
                      const void *data, size_t n) {
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                       descr, shape);
    size_t preamble = major == 1 ? 10 : 12, total = (preamble + (size_t)len + 1 + 63) / 64 * 64;
    size_t header_len = total - preamble;
    unsigned char file[512] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major, 0};
    file[8] = (unsigned char)header_len;
    file[9] = (unsigned char)(header_len >> 8);
    memset(file + preamble, ' ', header_len);
    memcpy(file + preamble, dict, (size_t)len);
    file[total - 1] = '\n';
    memcpy(file + total, data, n);
    write_bytes(seed_path("npy", name), file, total + n);
}

static void npy_seeds(void) {
    char err[256];
    Tensor *t = tensor_create(2, (const int[]){2, 3}, 0);
    for (int i = 0; i < 6; i++) t->data[i] = (real)(i - 2) * 0.5f;
    check(npy_save(seed_path("npy", "f4_2x3.npy"), t, err, sizeof err), err);
    tensor_free(t);
    t = tensor_create(0, NULL, 0);
    t->data[0] = 7;
    check(npy_save(seed_path("npy", "f4_scalar.npy"), t, err, sizeof err), err);
    tensor_free(t);
    t = tensor_create(3, (const int[]){1, 0, 2}, 0);
    check(npy_save(seed_path("npy", "f4_empty.npy"), t, err, sizeof err), err);
    tensor_free(t);

    const double f8[3] = {1.5, -2.0, 3.25};
    write_npy("f8_3.npy", 1, "<f8", "(3,)", f8, sizeof f8);
    const int i4[4] = {0, 1, -7, 9};
    write_npy("i4_2x2.npy", 1, "<i4", "(2, 2)", i4, sizeof i4);
    const long long i8[2] = {3, 4};
    write_npy("i8_2x1x1_v2.npy", 2, "<i8", "(2, 1, 1)", i8, sizeof i8);
}

/* --- .safetensors and checkpoints ----------------------------------------------------------- */

static void fill(ParamSet *params, real scale) {
    for (int p = 0; p < params->count; p++) {
        Tensor *t = params->items[p].tensor;
        for (long i = 0; i < t->size; i++) {
            t->data[i] = scale * (real)(i + 1) * (p % 2 ? -1 : 1);
            t->grad[i] = (real)0.25 * (real)(i % 3);
        }
    }
}

static void safetensors_seeds(void) {
    char err[256];
    ParamSet params = {0};
    fuzz_model_init(&params);
    fill(&params, 0.5f);
    check(safetensors_save_params(seed_path("safetensors", "model_f32.safetensors"), &params,
                                  SAFETENSORS_DATA, SAFETENSORS_F32, NULL, err, sizeof err),
          err);
    const char *metadata[] = {"step", "100", "note", "grad \xc3\xa9t\xc3\xa9", NULL};
    check(safetensors_save_params(seed_path("safetensors", "grad_f64_meta.safetensors"), &params,
                                  SAFETENSORS_GRAD, SAFETENSORS_F64, metadata, err, sizeof err),
          err);
    params_free(&params);

    ParamSet one = {0};
    params_new(&one, "", "x", 0, NULL);
    check(safetensors_save_params(seed_path("safetensors", "scalar.safetensors"), &one,
                                  SAFETENSORS_DATA, SAFETENSORS_F32, NULL, err, sizeof err),
          err);
    params_free(&one);
}

static void checkpoint_seeds(void) {
    char err[256];
    ParamSet params = {0};
    fuzz_model_init(&params);
    AdamW opt;
    adamw_init(&opt, &params, ADAMW_DEFAULTS);
    TrainState state = {.step = 0, .tokens = 0, .elapsed_seconds = 0, .config = NULL};
    rng_seed(&state.rng, 1);
    check(checkpoint_save(seed_path("checkpoint", "step0.safetensors"), &params, &opt, &state, err,
                          sizeof err),
          err);
    fill(&params, 0.125f);
    for (int i = 0; i < 3; i++) adamw_step(&opt, 1e-2);
    state = (TrainState){.step = 3, .tokens = 384, .elapsed_seconds = 1.25, .config = NULL};
    rng_seed(&state.rng, 2);
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    state.config = run_config_format(&run);
    check(checkpoint_save(seed_path("checkpoint", "step3.safetensors"), &params, &opt, &state, err,
                          sizeof err),
          err);
    free(state.config);
    adamw_free(&opt);
    params_free(&params);
}

/* --- IDX: each file twice, as the .gz file itself (idx/) and uncompressed (idx_gz/) ------------
 */

static void put_u32_be(unsigned char *b, unsigned v) {
    b[0] = (unsigned char)(v >> 24), b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8), b[3] = (unsigned char)v;
}

static void write_idx(const char *name, const unsigned char *bytes, size_t n) {
    write_bytes(seed_path("idx_gz", name), bytes, n);
    char gz_name[256];
    snprintf(gz_name, sizeof gz_name, "%s.gz", name);
    gzFile gz = gzopen(seed_path("idx", gz_name), "wb9");
    if (!gz || gzwrite(gz, bytes, (unsigned)n) != (int)n || gzclose(gz) != Z_OK)
        check(-1, "gzip write failed");
}

static void idx_seeds(void) {
    static unsigned char file[16 + 2 * IMAGE_PIXELS];
    put_u32_be(file, IDX_IMAGES_MAGIC), put_u32_be(file + 4, 2);
    put_u32_be(file + 8, IMAGE_SIZE), put_u32_be(file + 12, IMAGE_SIZE);
    for (int i = 0; i < 2 * IMAGE_PIXELS; i++) file[16 + i] = (unsigned char)(i * 7);
    write_idx("images-2x28x28", file, sizeof file);
    put_u32_be(file + 4, 3), put_u32_be(file + 8, 2), put_u32_be(file + 12, 5);
    write_idx("images-3x2x5", file, 16 + 30);
    put_u32_be(file, IDX_LABELS_MAGIC), put_u32_be(file + 4, 12);
    for (int i = 0; i < 12; i++) file[8 + i] = (unsigned char)(i % IMAGE_CLASSES);
    write_idx("labels-12", file, 8 + 12);
    put_u32_be(file + 4, 0);
    write_idx("labels-0", file, 8);
}

/* --- Config texts ----------------------------------------------------------------------------- */

static void config_seeds(void) {
    const char *kinds[] = {"charlm", "vit", "cnn"};
    for (int k = 0; k < 3; k++) {
        RunConfig run;
        run_config_defaults(&run, (ModelKind)k);
        char *text = run_config_format(&run), name[64];
        snprintf(name, sizeof name, "%s.cfg", kinds[k]);
        write_bytes(seed_path("config", name), text, strlen(text));
        free(text);
    }
    const char *hand = "# a sweep's common keys\nmodel = vit\n\nlayers=4   # deeper\n"
                       "pool = contextpool\nlr = 3e-4\nseed = 18446744073709551615\n"
                       "data = /usr/share/datasets/fashion-mnist\n";
    write_bytes(seed_path("config", "hand.cfg"), hand, strlen(hand));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR   (writes DIR/<reader>/ seed files)\n");
        return 2;
    }
    root = argv[1];
    npy_seeds();
    safetensors_seeds();
    checkpoint_seeds();
    idx_seeds();
    config_seeds();
    return 0;
}
