/* test_contextpool_reference.c - ContextPool (1-d, 2-d, stride 2, causal, both ablations, fused
 * and composed), the pooled blocks (pool_feeds kv, qkv, stream; on a sequence and on a grid) and
 * the attention baselines (window, adaptive span) against PyTorch 1.13 in float64, on the fixtures
 * tests/reference/make_contextpool_fixtures.py writes to tests/reference/contextpool/.
 *
 * As in test_layers_reference.c, each line of contextpool/cases.txt is "<case> <layer>
 * key=value ...": the layer is built through the lab's table (tools/lab_layers.c), its parameters
 * loaded from <case>/params.safetensors by name, and then
 *   y, and the auxiliary outputs     compared with y.npy, attn.npy, weights.npy, support.npy
 *   grad_in = d(sum(y * gy))/dx      compared with grad_in.npy
 *   grads = d(sum(y * gy))/dparam    compared with grad_params.safetensors
 * An auxiliary output the layer produces must have its fixture and one it does not must not (a
 * block writes weights and support only with pool=contextpool).
 *
 * Error measure, per array: max_i |ours_i - torch_i| / max_i |torch_i| - the worst error relative
 * to the array's scale (gradcheck's measure), so that the small gradients of the pool's predictor
 * are held to the same relative standard as everything else; an all-zero array (the unused half
 * of pred.2 under weights=uniform) is compared absolutely. Tolerances: float64 1e-10 (observed at
 * most ~1e-14: both sides compute the same formula in double, differing in the order of sums and
 * in libm's exp and erf); float32 1e-4 (observed at most ~1e-6: the inputs, parameters and gy
 * are float32 numbers, so this is float32 arithmetic alone). Each case prints its worst error. */
#include "test_util.h"

#include <stdlib.h>
#include <unistd.h>

#include "../tools/lab_layers.c"

#include "npy.h"
#include "safetensors.h"

#define FIXTURES "tests/reference/contextpool/"

#ifdef CPOOL_DOUBLE
static const double TOL = 1e-10;
#else
static const double TOL = 1e-4;
#endif

typedef struct Case {
    char name[64], layer[32];
    char keys[LAB_MAX_KEYS][64];
    int n_keys;
} Case;

enum { MAX_CASES = 64 };

static int read_cases(Case *cases) {
    FILE *fp = fopen(FIXTURES "cases.txt", "r");
    if (!fp) fail_msg("cannot open " FIXTURES "cases.txt (run from the repository root)");
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, fp) && n < MAX_CASES) {
        if (line[0] == '#' || line[0] == '\n') continue;
        Case *c = &cases[n++];
        memset(c, 0, sizeof *c);
        char *save = NULL, *word = strtok_r(line, " \n", &save);
        snprintf(c->name, sizeof c->name, "%s", word);
        snprintf(c->layer, sizeof c->layer, "%s", strtok_r(NULL, " \n", &save));
        while ((word = strtok_r(NULL, " \n", &save)) && c->n_keys < LAB_MAX_KEYS)
            snprintf(c->keys[c->n_keys++], sizeof c->keys[0], "%s", word);
    }
    fclose(fp);
    return n;
}

static void fixture_path(char *out, size_t len, const Case *c, const char *file) {
    snprintf(out, len, FIXTURES "%s/%s", c->name, file);
}

/* The worst array of the case being run, for its summary line. */
static struct {
    double error;
    char what[96];
} worst_array;

/* max |got - expected| / max |expected| over n values (absolute if expected is all zero). */
static double array_error(const Case *c, const char *what, const double *expected, const real *got,
                          long n) {
    double worst = 0, scale = 0;
    long at = 0;
    for (long i = 0; i < n; i++) {
        scale = fmax(scale, fabs(expected[i]));
        double error = fabs((double)got[i] - expected[i]);
        if (!(error <= worst)) worst = error, at = i; /* NaN becomes the worst */
    }
    double relative = scale > 0 ? worst / scale : worst;
    if (!(relative <= TOL))
        fail_msg("%s %s: error %.3g > %.0e relative to the array's scale %.3g, worst at element "
                 "%ld: torch %.17g, ours %.17g",
                 c->name, what, relative, TOL, scale, at, expected[at], (double)got[at]);
    if (relative >= worst_array.error) {
        worst_array.error = relative;
        snprintf(worst_array.what, sizeof worst_array.what, "%s", what);
    }
    return relative;
}

static double compare(const Case *c, const char *file, const Tensor *got) {
    char path[256], err[256], want[64], have[64];
    double *expected;
    int ndim, shape[TENSOR_MAX_DIMS];
    fixture_path(path, sizeof path, c, file);
    if (npy_load_doubles(path, &expected, &ndim, shape, err, sizeof err) != 0) fail_msg("%s", err);
    if (ndim != got->ndim || memcmp(shape, got->shape, (size_t)ndim * sizeof(int)) != 0)
        fail_msg("%s %s: torch shape %s, ours %s", c->name, file,
                 shape_string(ndim, shape, want, sizeof want), TENSOR_SHAPE_STR(got, have));
    double error = array_error(c, file, expected, got->data, got->size);
    free(expected);
    return error;
}

static double compare_grads(const Case *c, const ParamSet *params) {
    char path[256], err[256];
    fixture_path(path, sizeof path, c, "grad_params.safetensors");
    SafetensorsFile file;
    if (safetensors_read(path, &file, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(file.count, params->count);
    double worst = 0;
    for (int i = 0; i < params->count; i++) {
        const Param *p = &params->items[i];
        const Tensor *expected = safetensors_file_find(&file, p->name);
        if (!expected) fail_msg("%s: torch has no gradient for '%s'", c->name, p->name);
        assert_int_equal(expected->size, p->tensor->size);
        double *values = malloc((size_t)expected->size * sizeof *values);
        for (long k = 0; k < expected->size; k++) values[k] = expected->data[k];
        char what[PARAM_NAME_MAX + 8];
        snprintf(what, sizeof what, "grad %s", p->name);
        worst = fmax(worst, array_error(c, what, values, p->tensor->grad, expected->size));
        free(values);
    }
    safetensors_file_free(&file);
    return worst;
}

/* Every auxiliary output the row names: present in ours exactly when torch wrote it. */
static double compare_aux(const Case *c, const LabLayer *layer, Tensor *const *aux) {
    const char *names[2 * LAB_MAX_AUX];
    int n = 0, n_required;
    for (int i = 0; i < LAB_MAX_AUX && layer->aux[i]; i++) names[n++] = layer->aux[i];
    n_required = n;
    for (int i = 0; i < LAB_MAX_AUX && layer->optional_aux[i]; i++)
        names[n++] = layer->optional_aux[i];
    double worst = 0;
    for (int i = 0; i < n; i++) {
        char file[64], path[256];
        snprintf(file, sizeof file, "%s.npy", names[i]);
        fixture_path(path, sizeof path, c, file);
        int in_torch = access(path, F_OK) == 0;
        if (!aux[i] && (i < n_required || in_torch))
            fail_msg("%s: the layer gave no %s, torch did", c->name, file);
        if (aux[i] && !in_torch) fail_msg("%s: the layer gave %s, torch did not", c->name, file);
        if (aux[i]) worst = fmax(worst, compare(c, file, aux[i]));
    }
    return worst;
}

static void run_case(const Case *c) {
    const LabLayer *layer = lab_layer_find(c->layer);
    if (!layer) fail_msg("%s: unknown layer '%s'", c->name, c->layer);
    char err[256], path[256];
    LabConfig config;
    lab_config_init(&config, layer);
    for (int k = 0; k < c->n_keys; k++)
        if (lab_config_set(&config, c->keys[k], err, sizeof err) != 0) fail_msg("%s", err);
    LabInput input = {0};
    fixture_path(path, sizeof path, c, "x.npy");
    if (npy_load(path, &input.x, err, sizeof err) != 0) fail_msg("%s", err);
    input.x->requires_grad = 1;
    input.x->grad = calloc((size_t)input.x->size, sizeof(real));
    if (lab_config_resolve(&config, &input, err, sizeof err) != 0) fail_msg("%s", err);

    ParamSet params = {0};
    Rng rng;
    rng_seed(&rng, 0);
    void *storage = calloc(1, layer->layer_bytes);
    layer->init(storage, &config, &params, &rng);
    fixture_path(path, sizeof path, c, "params.safetensors");
    if (safetensors_load_params(path, &params, 0, err, sizeof err) != 0) fail_msg("%s", err);

    Tape *tape = tape_create();
    Tensor *aux[LAB_MAX_AUX] = {NULL};
    Tensor *y = layer->forward(tape, storage, &input, aux);
    worst_array.error = 0;
    compare(c, "y.npy", y);
    compare_aux(c, layer, aux);
    Tensor *gy;
    fixture_path(path, sizeof path, c, "gy.npy");
    if (npy_load(path, &gy, err, sizeof err) != 0) fail_msg("%s", err);
    tape_backward_from(tape, y, gy->data);
    Tensor grad_in = *input.x;
    grad_in.data = input.x->grad;
    compare(c, "grad_in.npy", &grad_in);
    compare_grads(c, &params);
    print_message("%-32s max error %.2e (%s)\n", c->name, worst_array.error, worst_array.what);

    tensor_free(gy);
    tape_free(tape);
    free(storage);
    params_free(&params);
    tensor_free(input.x);
}

/* Every case of one lab layer (at least `least` of them). */
static void run_layer_cases(const char *layer, int least) {
    static Case cases[MAX_CASES];
    int n = read_cases(cases), ran = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(cases[i].layer, layer) == 0) run_case(&cases[i]), ran++;
    if (ran < least) fail_msg("%s: only %d fixture cases", layer, ran);
}

static void contextpool1d_matches_torch(void **state) {
    (void)state;
    run_layer_cases("contextpool1d", 5);
}
static void contextpool2d_matches_torch(void **state) {
    (void)state;
    run_layer_cases("contextpool2d", 5);
}
static void pooled_and_restricted_blocks_match_torch(void **state) {
    (void)state;
    run_layer_cases("block", 8);
}
static void window_and_span_attention_match_torch(void **state) {
    (void)state;
    run_layer_cases("attention", 4);
}

/* Each block pool_feeds, on a sequence and on a grid, and each implementation has a case. */
static void the_cases_cover_every_variant(void **state) {
    (void)state;
    static Case cases[MAX_CASES];
    int n = read_cases(cases);
    const char *wanted[][2] = {
        {"block", "pool_feeds=kv"},      {"block", "pool_feeds=qkv"},
        {"block", "pool_feeds=stream"},  {"block", "grid_h=2"},
        {"block", "window=2"},           {"block", "span=adaptive"},
        {"contextpool1d", "causal=1"},   {"contextpool1d", "impl=composed"},
        {"contextpool2d", "stride=2"},   {"contextpool2d", "impl=composed"},
        {"attention", "span=adaptive"},  {"attention", "window=1"},
        {"contextpool1d", "size=fixed"}, {"contextpool2d", "weights=uniform"},
    };
    for (size_t w = 0; w < sizeof wanted / sizeof wanted[0]; w++) {
        int found = 0;
        for (int i = 0; i < n && !found; i++)
            for (int k = 0; k < cases[i].n_keys && !found; k++)
                found = strcmp(cases[i].layer, wanted[w][0]) == 0 &&
                        strcmp(cases[i].keys[k], wanted[w][1]) == 0;
        if (!found) fail_msg("no %s case with %s", wanted[w][0], wanted[w][1]);
    }
}

int main(void) {
    (void)test_catch_error; /* no bad-input paths here: test_block_pool.c and test_lab.c */
    (void)test_escape;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(contextpool1d_matches_torch),
        cmocka_unit_test(contextpool2d_matches_torch),
        cmocka_unit_test(pooled_and_restricted_blocks_match_torch),
        cmocka_unit_test(window_and_span_attention_match_torch),
        cmocka_unit_test(the_cases_cover_every_variant),
    };
    return cmocka_run_group_tests_name("contextpool vs PyTorch (" REAL_NAME ")", tests, NULL, NULL);
}
