/* checkpoint.c - see checkpoint.h.
 *
 * Saving lays the model's parameters and the optimizer's moments side by side in one temporary
 * ParamSet "view" (its items point at the existing tensors; nothing is copied) and hands it to
 * safetensors_save_params with the metadata strings. Loading reads the file whole, checks every
 * tensor and key into local variables, and only then copies anything into the caller's model,
 * optimizer and state.
 */
#include "checkpoint.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

static const char *const optimizer_prefix[2] = {"optim.m.", "optim.v."};

static void check_optimizer(const char *who, const ParamSet *params, const AdamW *opt) {
    if (opt && (opt->params != params || opt->count != params->count))
        cpool_fail("%s: the optimizer was made for another parameter set (%d parameters, this "
                   "set has %d)",
                   who, opt->count, params->count);
}

/* --- Saving ---------------------------------------------------------------------------------- */

/* The metadata strings: formatted values, then the NULL-terminated key, value list. */
typedef struct Metadata {
    char step[24], tokens[24], elapsed[32], rng[4][24];
    char optim_step[24], beta1[32], beta2[32], eps[32], weight_decay[32], checksum[16];
    char *decay; /* malloc'd, one character per parameter */
    const char *list[2 * 20 + 1];
    int n;
} Metadata;

static void add(Metadata *md, const char *key, const char *value) {
    md->list[md->n++] = key;
    md->list[md->n++] = value;
    md->list[md->n] = NULL;
}

/* The view is what will be written: its payload's CRC-32 goes into the metadata. */
static void metadata_build(Metadata *md, const ParamSet *view, const AdamW *opt,
                           const TrainState *state) {
    static const char *const rng_keys[4] = {"rng.0", "rng.1", "rng.2", "rng.3"};
    *md = (Metadata){.n = 0};
    add(md, "format", CHECKPOINT_FORMAT);
    add(md, "real", REAL_NAME);
    snprintf(md->checksum, sizeof md->checksum, "0x%08lx",
             safetensors_payload_crc32(view, SAFETENSORS_DATA, SAFETENSORS_REAL));
    add(md, SAFETENSORS_CHECKSUM_KEY, md->checksum);
    if (state) {
        snprintf(md->step, sizeof md->step, "%ld", state->step);
        snprintf(md->tokens, sizeof md->tokens, "%ld", state->tokens);
        snprintf(md->elapsed, sizeof md->elapsed, "%.17g", state->elapsed_seconds);
        add(md, "step", md->step);
        add(md, "tokens", md->tokens);
        add(md, "elapsed_seconds", md->elapsed);
        add(md, "config", state->config ? state->config : "");
        for (int w = 0; w < 4; w++) {
            snprintf(md->rng[w], sizeof md->rng[w], "%" PRIu64, state->rng.state[w]);
            add(md, rng_keys[w], md->rng[w]);
        }
    }
    if (opt) {
        snprintf(md->optim_step, sizeof md->optim_step, "%ld", opt->step);
        snprintf(md->beta1, sizeof md->beta1, "%.17g", opt->config.beta1);
        snprintf(md->beta2, sizeof md->beta2, "%.17g", opt->config.beta2);
        snprintf(md->eps, sizeof md->eps, "%.17g", opt->config.eps);
        snprintf(md->weight_decay, sizeof md->weight_decay, "%.17g", opt->config.weight_decay);
        md->decay = xmalloc((size_t)opt->count + 1);
        for (int i = 0; i < opt->count; i++) md->decay[i] = opt->decay[i] ? '1' : '0';
        md->decay[opt->count] = '\0';
        add(md, "optim", "adamw");
        add(md, "optim.step", md->optim_step);
        add(md, "optim.beta1", md->beta1);
        add(md, "optim.beta2", md->beta2);
        add(md, "optim.eps", md->eps);
        add(md, "optim.weight_decay", md->weight_decay);
        add(md, "optim.decay", md->decay);
    }
}

/* The parameters, then optim.m.*, then optim.v.*: a ParamSet whose items point at the tensors. */
static int build_view(ParamSet *view, const char *path, const ParamSet *params, const AdamW *opt,
                      char *err, size_t err_len) {
    int n = params->count, parts = opt ? 3 : 1;
    *view = (ParamSet){.count = n * parts, .capacity = n * parts};
    view->items = xmalloc((size_t)(n * parts + 1) * sizeof(Param));
    for (int i = 0; i < n; i++) view->items[i] = params->items[i];
    for (int part = 1; part < parts; part++)
        for (int i = 0; i < n; i++) {
            Param *item = &view->items[part * n + i];
            int length = snprintf(item->name, sizeof item->name, "%s%s", optimizer_prefix[part - 1],
                                  params->items[i].name);
            if (length < 0 || length >= PARAM_NAME_MAX) {
                free(view->items);
                return path_error(err, err_len, path,
                                  "parameter '%s' is too long to be saved as '%s%s' (at most %d "
                                  "characters)",
                                  params->items[i].name, optimizer_prefix[part - 1],
                                  params->items[i].name, PARAM_NAME_MAX - 1);
            }
            item->tensor = part == 1 ? opt->m[i] : opt->v[i];
        }
    return 0;
}

int checkpoint_save(const char *path, const ParamSet *params, const AdamW *opt,
                    const TrainState *state, char *err, size_t err_len) {
    check_optimizer("checkpoint_save", params, opt);
    ParamSet view;
    if (build_view(&view, path, params, opt, err, err_len) != 0) return -1;
    Metadata md;
    metadata_build(&md, &view, opt, state);
    int status = safetensors_save_params(path, &view, SAFETENSORS_DATA, SAFETENSORS_REAL, md.list,
                                         err, err_len);
    free(md.decay);
    free(view.items);
    return status;
}

/* --- Loading: checks ---------------------------------------------------------------------------
 */

/* The loading context: the file and where errors go. */
typedef struct Loader {
    const char *path;
    SafetensorsFile file;
    char *err;
    size_t err_len;
} Loader;

/* A value as shown in messages: quoted, at most 40 characters, control characters as '?' (so
 * the message stays one line). */
static const char *shown(const char *value, char buffer[64]) {
    snprintf(buffer, 64, "'%.40s%s'", value, strlen(value) > 40 ? "..." : "");
    for (char *c = buffer; *c; c++)
        if (iscntrl((unsigned char)*c)) *c = '?';
    return buffer;
}

static const char *metadata(Loader *ld, const char *key) {
    const char *value = safetensors_file_metadata(&ld->file, key);
    if (!value) path_error(ld->err, ld->err_len, ld->path, "missing metadata '%s'", key);
    return value;
}

static int bad_value(Loader *ld, const char *key, const char *expected, const char *value) {
    char b[64];
    return path_error(ld->err, ld->err_len, ld->path, "metadata '%s': expected %s, got %s", key,
                      expected, shown(value, b));
}

/* An unsigned decimal integer: digits only (no sign, no spaces), at most UINT64_MAX. */
static int parse_u64(Loader *ld, const char *key, uint64_t *out) {
    const char *text = metadata(ld, key);
    if (!text) return -1;
    size_t n = strlen(text);
    int digits_only = n > 0 && n <= 20;
    for (size_t i = 0; i < n && digits_only; i++) digits_only = isdigit((unsigned char)text[i]);
    errno = 0;
    unsigned long long value = digits_only ? strtoull(text, NULL, 10) : 0;
    if (!digits_only || errno == ERANGE)
        return bad_value(ld, key, "an unsigned 64-bit decimal integer", text);
    *out = (uint64_t)value;
    return 0;
}

static int parse_count(Loader *ld, const char *key, long *out) {
    uint64_t value;
    if (parse_u64(ld, key, &value) != 0) return -1;
    if (value > LONG_MAX) return bad_value(ld, key, "a count that fits a long", metadata(ld, key));
    *out = (long)value;
    return 0;
}

/* A finite number in [lo, hi] (hi_open: [lo, hi)), the whole text consumed. */
static int parse_real(Loader *ld, const char *key, double lo, double hi, int hi_open, double *out) {
    const char *text = metadata(ld, key);
    if (!text) return -1;
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    int ok = end != text && *end == '\0' && errno != ERANGE && isfinite(value) && value >= lo &&
             (hi_open ? value < hi : value <= hi) && !isspace((unsigned char)text[0]);
    if (!ok) {
        char expected[96];
        snprintf(expected, sizeof expected, "a number in [%g, %g%s", lo, hi, hi_open ? ")" : "]");
        return bad_value(ld, key, expected, text);
    }
    *out = value;
    return 0;
}

static int expect_text(Loader *ld, const char *key, const char *expected, const char *hint) {
    const char *value = metadata(ld, key);
    if (!value) return -1;
    if (strcmp(value, expected) == 0) return 0;
    char b[64], want[96];
    snprintf(want, sizeof want, "'%s'%s", expected, hint);
    return path_error(ld->err, ld->err_len, ld->path, "metadata '%s': expected %s, got %s", key,
                      want, shown(value, b));
}

/* The tensor `name` must be in the file with t's shape. */
static int check_tensor(Loader *ld, const char *name, const Tensor *t) {
    char want[96], got[96];
    const Tensor *saved = safetensors_file_find(&ld->file, name);
    if (!saved)
        return path_error(ld->err, ld->err_len, ld->path,
                          "missing tensor '%s' (the model expects shape %s)", name,
                          TENSOR_SHAPE_STR(t, want));
    if (!tensor_same_shape(saved, t))
        return path_error(ld->err, ld->err_len, ld->path,
                          "tensor '%s' has shape %s but the model expects %s", name,
                          TENSOR_SHAPE_STR(saved, got), TENSOR_SHAPE_STR(t, want));
    return 0;
}

/* Every tensor of the file is a parameter or an optimizer moment of one. */
static int check_no_extra(Loader *ld, const ParamSet *params) {
    for (int k = 0; k < ld->file.count; k++) {
        const char *name = ld->file.names[k];
        for (int part = 0; part < 2; part++) {
            size_t n = strlen(optimizer_prefix[part]);
            if (strncmp(name, optimizer_prefix[part], n) == 0 && params_find(params, name + n))
                goto known;
        }
        if (params_find(params, name)) goto known;
        char b[64];
        return path_error(ld->err, ld->err_len, ld->path,
                          "unexpected tensor %s (the model has no parameter of that name)",
                          shown(name, b));
    known:;
    }
    return 0;
}

/* A contextpool-c checkpoint, with its payload checksum: safetensors_read has verified the
 * checksum already when it is there; a checkpoint must have it. */
static int check_identity(Loader *ld) {
    if (expect_text(ld, "format", CHECKPOINT_FORMAT, " (a contextpool-c checkpoint)") != 0)
        return -1;
    if (!safetensors_file_metadata(&ld->file, SAFETENSORS_CHECKSUM_KEY))
        return path_error(ld->err, ld->err_len, ld->path,
                          "missing metadata '%s' (every checkpoint carries the CRC-32 of its "
                          "tensor data)",
                          SAFETENSORS_CHECKSUM_KEY);
    return 0;
}

static int check_params(Loader *ld, const ParamSet *params) {
    if (check_identity(ld) != 0) return -1;
    for (int i = 0; i < params->count; i++)
        if (check_tensor(ld, params->items[i].name, params->items[i].tensor) != 0) return -1;
    return check_no_extra(ld, params);
}

/* --- Loading: the optimizer and the training state ------------------------------------------ */

/* What the file says about the optimizer, checked; copied into the AdamW at the end. */
typedef struct SavedOptimizer {
    AdamWConfig config;
    long step;
    const char *decay;
} SavedOptimizer;

static int read_optimizer(Loader *ld, const ParamSet *params, SavedOptimizer *saved) {
    char name[2 * PARAM_NAME_MAX];
    if (expect_text(ld, "real", REAL_NAME, " (resume with the build that saved the run)") != 0 ||
        expect_text(ld, "optim", "adamw", "") != 0)
        return -1;
    for (int part = 0; part < 2; part++)
        for (int i = 0; i < params->count; i++) {
            snprintf(name, sizeof name, "%s%s", optimizer_prefix[part], params->items[i].name);
            if (check_tensor(ld, name, params->items[i].tensor) != 0) return -1;
        }
    AdamWConfig *c = &saved->config;
    if (parse_count(ld, "optim.step", &saved->step) != 0 ||
        parse_real(ld, "optim.beta1", 0, 1, 1, &c->beta1) != 0 ||
        parse_real(ld, "optim.beta2", 0, 1, 1, &c->beta2) != 0 ||
        parse_real(ld, "optim.eps", 0, HUGE_VAL, 0, &c->eps) != 0 ||
        parse_real(ld, "optim.weight_decay", 0, HUGE_VAL, 0, &c->weight_decay) != 0)
        return -1;
    saved->decay = metadata(ld, "optim.decay");
    if (!saved->decay) return -1;
    size_t n = strlen(saved->decay);
    int ok = n == (size_t)params->count && strspn(saved->decay, "01") == n;
    if (!ok) {
        char expected[96];
        snprintf(expected, sizeof expected, "%d characters '0' or '1' (one per parameter)",
                 params->count);
        return bad_value(ld, "optim.decay", expected, saved->decay);
    }
    return 0;
}

static int read_state(Loader *ld, TrainState *state) {
    static const char *const rng_keys[4] = {"rng.0", "rng.1", "rng.2", "rng.3"};
    *state = (TrainState){0};
    if (parse_count(ld, "step", &state->step) != 0 ||
        parse_count(ld, "tokens", &state->tokens) != 0 ||
        parse_real(ld, "elapsed_seconds", 0, HUGE_VAL, 0, &state->elapsed_seconds) != 0)
        return -1;
    for (int w = 0; w < 4; w++)
        if (parse_u64(ld, rng_keys[w], &state->rng.state[w]) != 0) return -1;
    return metadata(ld, "config") ? 0 : -1;
}

static void copy_values(Tensor *to, const Tensor *from) {
    memcpy(to->data, from->data, (size_t)to->size * sizeof(real));
}

static void apply(Loader *ld, ParamSet *params, AdamW *opt, const SavedOptimizer *saved) {
    char name[2 * PARAM_NAME_MAX];
    for (int i = 0; i < params->count; i++) {
        copy_values(params->items[i].tensor,
                    safetensors_file_find(&ld->file, params->items[i].name));
        if (!opt) continue;
        snprintf(name, sizeof name, "optim.m.%s", params->items[i].name);
        copy_values(opt->m[i], safetensors_file_find(&ld->file, name));
        snprintf(name, sizeof name, "optim.v.%s", params->items[i].name);
        copy_values(opt->v[i], safetensors_file_find(&ld->file, name));
        opt->decay[i] = saved->decay[i] == '1';
    }
    if (opt) {
        opt->config = saved->config;
        opt->step = saved->step;
    }
}

int checkpoint_load(const char *path, ParamSet *params, AdamW *opt, TrainState *state, char *err,
                    size_t err_len) {
    check_optimizer("checkpoint_load", params, opt);
    Loader ld = {.path = path, .err = err, .err_len = err_len};
    if (safetensors_read(path, &ld.file, err, err_len) != 0) return -1;
    SavedOptimizer saved = {0};
    TrainState loaded = {0};
    int status = check_params(&ld, params);
    if (status == 0 && opt) status = read_optimizer(&ld, params, &saved);
    if (status == 0 && state) status = read_state(&ld, &loaded);
    if (status == 0) {
        apply(&ld, params, opt, &saved);
        if (state) {
            *state = loaded;
            const char *config = safetensors_file_metadata(&ld.file, "config");
            state->config = strcpy(xmalloc(strlen(config) + 1), config);
        }
    }
    safetensors_file_free(&ld.file);
    return status;
}

int checkpoint_read_config(const char *path, char **config, char *err, size_t err_len) {
    Loader ld = {.path = path, .err = err, .err_len = err_len};
    if (safetensors_read(path, &ld.file, err, err_len) != 0) return -1;
    const char *text = NULL;
    int status = check_identity(&ld);
    if (status == 0) status = (text = metadata(&ld, "config")) ? 0 : -1;
    if (status == 0) *config = strcpy(xmalloc(strlen(text) + 1), text);
    safetensors_file_free(&ld.file);
    return status;
}
