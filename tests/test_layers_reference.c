/* test_layers_reference.c - every layer against PyTorch 1.13 (float64), on the fixtures that
 * tests/reference/make_layer_fixtures.py writes to tests/reference/layers/.
 *
 * Each line of layers/cases.txt is "<case> <layer> key=value ...": the layer is built through the
 * lab's table (tools/lab_layers.c, the same code `cpool lab` runs) from those keys, its
 * parameters are loaded from <case>/params.safetensors by name - so the names must be exactly the
 * torch module's state_dict names, or loading fails - and then:
 *   y       = layer(x)                    compared with y.npy (and attn.npy for the probabilities)
 *   grad_in = d(sum(y * gy))/dx           compared with grad_in.npy
 *   grads   = d(sum(y * gy))/dparameter   compared with grad_params.safetensors
 *
 * Error measure, per element: |ours - torch| <= TOL * max(1, |torch|), i.e. relative for values
 * above 1 and absolute below. Inputs, parameters and gy are float32 numbers, so in the float32
 * build the error is the float32 arithmetic alone: TOL = 1e-5 (observed: at most 5e-7). In float64
 * TOL = 1e-12 (observed: at most 2e-14, most cases 0 to 7e-16). Each case prints its largest
 * error. */
#include "test_util.h"

#include <stdlib.h>

#include "../tools/lab_layers.c"

#include "npy.h"
#include "safetensors.h"

#define FIXTURES "tests/reference/layers/"

#ifdef CPOOL_DOUBLE
static const double TOL = 1e-12;
#else
static const double TOL = 1e-5;
#endif

typedef struct Case {
    char name[64], layer[32];
    char keys[LAB_MAX_KEYS][64];
    int n_keys;
} Case;

/* Every case of a cases.txt (at most max_cases). */
static int read_cases_from(const char *path, Case *cases, int max_cases) {
    FILE *fp = fopen(path, "r");
    if (!fp) fail_msg("cannot open %s (run from the repository root)", path);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, fp) && n < max_cases) {
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

static int read_cases(Case *cases, int max_cases) {
    return read_cases_from(FIXTURES "cases.txt", cases, max_cases);
}

static void fixture_path(char *out, size_t len, const Case *c, const char *file) {
    snprintf(out, len, FIXTURES "%s/%s", c->name, file);
}

/* The largest |got - expected| / max(1, |expected|) over the elements. */
static double compare(const Case *c, const char *file, const Tensor *got) {
    char path[256], err[256], want[64], have[64];
    double *expected;
    int ndim, shape[TENSOR_MAX_DIMS];
    fixture_path(path, sizeof path, c, file);
    if (npy_load_doubles(path, &expected, &ndim, shape, err, sizeof err) != 0) fail_msg("%s", err);
    if (ndim != got->ndim || memcmp(shape, got->shape, (size_t)ndim * sizeof(int)) != 0)
        fail_msg("%s %s: torch shape %s, ours %s", c->name, file,
                 shape_string(ndim, shape, want, sizeof want), TENSOR_SHAPE_STR(got, have));
    double worst = 0;
    for (long i = 0; i < got->size; i++) {
        double error = fabs((double)got->data[i] - expected[i]) / fmax(1, fabs(expected[i]));
        if (!(error <= TOL))
            fail_msg("%s %s: element %ld: torch %.17g, ours %.17g (error %.3g > %.1g)", c->name,
                     file, i, expected[i], (double)got->data[i], error, TOL);
        worst = fmax(worst, error);
    }
    free(expected);
    return worst;
}

/* Every parameter's gradient against grad_params.safetensors. */
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
        for (long k = 0; k < expected->size; k++) {
            double e = expected->data[k];
            double error = fabs((double)p->tensor->grad[k] - e) / fmax(1, fabs(e));
            if (!(error <= TOL))
                fail_msg("%s grad %s: element %ld: torch %.17g, ours %.17g (error %.3g > %.1g)",
                         c->name, p->name, k, e, (double)p->tensor->grad[k], error, TOL);
            worst = fmax(worst, error);
        }
    }
    safetensors_file_free(&file);
    return worst;
}

static void load_input(const Case *c, const LabLayer *layer, LabInput *input) {
    char path[256], err[256];
    *input = (LabInput){0};
    if (layer->integer_input) {
        fixture_path(path, sizeof path, c, "ids.npy");
        if (npy_load_ints(path, &input->ids, &input->ids_ndim, input->ids_shape, err, sizeof err))
            fail_msg("%s", err);
        return;
    }
    fixture_path(path, sizeof path, c, "x.npy");
    if (npy_load(path, &input->x, err, sizeof err) != 0) fail_msg("%s", err);
    input->x->requires_grad = 1;
    input->x->grad = calloc((size_t)input->x->size, sizeof(real));
}

static void run_case(const Case *c) {
    const LabLayer *layer = lab_layer_find(c->layer);
    if (!layer) fail_msg("%s: unknown layer '%s'", c->name, c->layer);
    char err[256], path[256];
    LabConfig config;
    lab_config_init(&config, layer);
    for (int k = 0; k < c->n_keys; k++)
        if (lab_config_set(&config, c->keys[k], err, sizeof err) != 0) fail_msg("%s", err);
    LabInput input;
    load_input(c, layer, &input);
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
    double worst = compare(c, "y.npy", y);
    for (int i = 0; i < LAB_MAX_AUX && layer->aux[i]; i++) {
        char file[64];
        snprintf(file, sizeof file, "%s.npy", layer->aux[i]);
        worst = fmax(worst, compare(c, file, aux[i]));
    }
    Tensor *gy;
    fixture_path(path, sizeof path, c, "gy.npy");
    if (npy_load(path, &gy, err, sizeof err) != 0) fail_msg("%s", err);
    tape_backward_from(tape, y, gy->data);
    if (input.x) {
        Tensor grad_in = *input.x;
        grad_in.data = input.x->grad;
        worst = fmax(worst, compare(c, "grad_in.npy", &grad_in));
    }
    worst = fmax(worst, compare_grads(c, &params));
    print_message("%-30s max error %.2e\n", c->name, worst);

    tensor_free(gy);
    tape_free(tape);
    free(storage);
    params_free(&params);
    tensor_free(input.x);
    free(input.ids);
}

/* Every case of one layer; at least two per layer. */
static void run_layer_cases(const char *layer) {
    static Case cases[64];
    int n = read_cases(cases, 64), ran = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(cases[i].layer, layer) == 0) run_case(&cases[i]), ran++;
    if (ran < 2) fail_msg("%s: only %d fixture cases", layer, ran);
}

static void linear_matches_torch(void **state) {
    (void)state;
    run_layer_cases("linear");
}
static void layernorm_matches_torch(void **state) {
    (void)state;
    run_layer_cases("layernorm");
}
static void embedding_matches_torch(void **state) {
    (void)state;
    run_layer_cases("embedding");
}
static void attention_matches_torch(void **state) {
    (void)state;
    run_layer_cases("attention");
}
static void ffn_matches_torch(void **state) {
    (void)state;
    run_layer_cases("ffn");
}
static void conv1d_matches_torch(void **state) {
    (void)state;
    run_layer_cases("conv1d");
}
static void conv2d_matches_torch(void **state) {
    (void)state;
    run_layer_cases("conv2d");
}
static void block_matches_torch(void **state) {
    (void)state;
    run_layer_cases("block");
}

/* A layer added to the lab's table needs fixtures too: here, or in tests/reference/contextpool/
 * (the ContextPool layers, test_contextpool_reference.c). */
static void every_lab_layer_has_fixtures(void **state) {
    (void)state;
    static Case cases[128];
    int n = read_cases(cases, 64);
    n += read_cases_from("tests/reference/contextpool/cases.txt", cases + n, 64);
    for (int l = 0; l < lab_layer_count; l++) {
        int found = 0;
        for (int i = 0; i < n; i++) found |= strcmp(cases[i].layer, lab_layers[l].name) == 0;
        if (!found) fail_msg("layer '%s' has no fixture case", lab_layers[l].name);
    }
}

int main(void) {
    (void)test_catch_error; /* no bad-input paths here: test_lab.c and test_layers.c have them */
    (void)test_escape;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_matches_torch),
        cmocka_unit_test(layernorm_matches_torch),
        cmocka_unit_test(embedding_matches_torch),
        cmocka_unit_test(attention_matches_torch),
        cmocka_unit_test(ffn_matches_torch),
        cmocka_unit_test(conv1d_matches_torch),
        cmocka_unit_test(conv2d_matches_torch),
        cmocka_unit_test(block_matches_torch),
        cmocka_unit_test(every_lab_layer_has_fixtures),
    };
    return cmocka_run_group_tests_name("layers vs PyTorch (" REAL_NAME ")", tests, NULL, NULL);
}
