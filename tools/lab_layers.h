/* lab_layers.h - the layers `cpool lab` knows: one table row per layer.
 *
 * A row says everything the lab needs to run a layer from the command line: its name, its config
 * keys (type, default, one line of help), what input it takes, the size of its struct, and three
 * small functions that turn the resolved config into the layer (init), run it (forward) and name
 * its auxiliary outputs. The lab itself never mentions a layer by name, so adding one is adding a
 * row to lab_layers[] in lab_layers.c (the ContextPool layers came that way):
 *
 *     {.name = "linear", .summary = "y = x W^T + b over the last axis",
 *      .input = "x (..., in)", .min_ndim = 1, .max_ndim = TENSOR_MAX_DIMS,
 *      .keys = {{"in", LAB_INT, 0, LAB_FROM_LAST_AXIS, "input features"},
 *               {"out", LAB_INT, 0, LAB_REQUIRED, "output features"},
 *               {"bias", LAB_BOOL, 1, LAB_DEFAULT, "1: add a bias"}},
 *      .layer_bytes = sizeof(Linear), .init = linear_lab_init, .forward = linear_lab_forward},
 *
 * Configs are read through the same table, so tests can build any layer from "key=value" text:
 *
 *     LabConfig config;
 *     lab_config_init(&config, lab_layer_find("attention"));
 *     if (lab_config_set(&config, "heads=2", err, sizeof err) != 0) ...   // usage error
 *     if (lab_config_resolve(&config, &input, err, sizeof err) != 0) ... // infer dim from x
 *     int heads = lab_int(&config, "heads");
 */
#ifndef CPOOL_LAB_LAYERS_H
#define CPOOL_LAB_LAYERS_H

#include <stddef.h>
#include <stdio.h>

#include "params.h"
#include "rng.h"
#include "tape.h"

#define LAB_MAX_KEYS 24
#define LAB_MAX_AUX  4

typedef enum LabKeyType {
    LAB_INT,    /* an integer */
    LAB_BOOL,   /* 0 or 1 */
    LAB_REAL,   /* a finite number, e.g. 1e-5 */
    LAB_CHOICE, /* one of the names in `choices` ("kv|qkv|stream"); its value is the name's index */
} LabKeyType;

/* Where a key's value comes from when --set does not give it. */
typedef enum LabDefault {
    LAB_DEFAULT,        /* the row's default value */
    LAB_REQUIRED,       /* nothing: --set must give it */
    LAB_FROM_LAST_AXIS, /* the size of the input's last axis */
    LAB_FROM_AXIS_1,    /* the size of the input's axis 1 (channels of (B, C, ...)) */
} LabDefault;

typedef struct LabKey {
    const char *name;
    LabKeyType type;
    double value; /* the default (LAB_DEFAULT); for LAB_CHOICE the index of its name */
    LabDefault source;
    const char *help;     /* one line for --help */
    const char *shown_as; /* --help's default, when the value alone does not say it ("4*dim") */
    const char *choices;  /* LAB_CHOICE: the allowed names, separated by '|' */
} LabKey;

/* The input the lab feeds a layer: floats (x) or integer ids, never both. */
typedef struct LabInput {
    Tensor *x; /* float input (B, ...), or NULL */
    int *ids;  /* integer input of shape ids_shape[0..ids_ndim-1], or NULL */
    int ids_ndim;
    int ids_shape[TENSOR_MAX_DIMS];
} LabInput;

typedef struct LabLayer LabLayer;

/* A layer's config: the value of each key of the row, and whether --set gave it. */
typedef struct LabConfig {
    const LabLayer *layer;
    double values[LAB_MAX_KEYS];
    int given[LAB_MAX_KEYS];
} LabConfig;

struct LabLayer {
    const char *name;
    const char *summary; /* one line for --help */
    const char *input;   /* the input's shape, "x (B, N, dim)" */
    int integer_input;   /* 1: the input .npy holds token ids */
    int min_ndim, max_ndim;
    LabKey keys[LAB_MAX_KEYS];    /* terminated by a key with a NULL name */
    const char *aux[LAB_MAX_AUX]; /* auxiliary outputs, written as DIR/<name>.npy; NULL-ended */
    /* Auxiliary outputs only some configs produce (the block's pool weights and support, with
     * pool=contextpool), written when the forward returned them; NULL-ended. */
    const char *optional_aux[LAB_MAX_AUX];
    size_t layer_bytes; /* sizeof the layer's struct */
    /* Create the layer in `layer` (layer_bytes, zeroed) with its parameters in `params`, named
     * without a prefix ("weight", "qkv.bias"), drawn from rng. Bad configs: cpool_fail. */
    void (*init)(void *layer, const LabConfig *config, ParamSet *params, Rng *rng);
    /* Run it: returns y; aux[i] receives the auxiliary output named aux[i] of the row, and
     * aux[n + k] (n names in aux) the one named optional_aux[k], or NULL when not produced. At
     * most LAB_MAX_AUX in all. */
    Tensor *(*forward)(Tape *tape, const void *layer, const LabInput *input, Tensor **aux);
};

extern const LabLayer lab_layers[];
extern const int lab_layer_count;
const LabLayer *lab_layer_find(const char *name); /* NULL if unknown */

void lab_config_init(LabConfig *config, const LabLayer *layer);
/* Apply one "key=value" (an unknown key, a missing value, a malformed number or a key given
 * twice is a usage error): 0, or -1 with one line in err. */
int lab_config_set(LabConfig *config, const char *assignment, char *err, size_t err_len);
/* Fill the keys --set did not give: defaults and sizes read from the input. A required key left
 * unset is an error: 0, or -1 with one line in err. */
int lab_config_resolve(LabConfig *config, const LabInput *input, char *err, size_t err_len);
/* A key's value (the key must belong to the row; anything else is a programming error). A
 * LAB_CHOICE key's lab_int is the index of its name in `choices`. */
int lab_int(const LabConfig *config, const char *key);
double lab_real(const LabConfig *config, const char *key);
/* "in=4 out=8 bias=1": every key and its value (a choice by name), for messages and metadata. */
void lab_config_string(const LabConfig *config, char *out, size_t out_len);
/* The name of a LAB_CHOICE key's value `index` into out, which it returns. */
const char *lab_choice_name(const LabKey *key, int index, char *out, size_t out_len);

/* The whole `cpool lab` command (cmd_lab.c) as a function: argv starts at "lab"; progress lines
 * and --help go to report (NULL: none); returns the exit status (0, 1 data error, 2 usage
 * error) with the error as one line in err. */
int lab_run(int argc, char **argv, FILE *report, char *err, size_t err_len);

#endif
