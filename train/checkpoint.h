/* checkpoint.h - save and resume a training run: one .safetensors file holds it all.
 *
 *     TrainState state = {.step = step, .tokens = tokens, .elapsed_seconds = elapsed,
 *                         .rng = rng, .config = config_text};
 *     char err[256];
 *     if (checkpoint_save("runs/kjv/checkpoint.safetensors", &params, &opt, &state, err,
 *                         sizeof err) != 0) fprintf(stderr, "%s\n", err);
 *
 *     // resume: the config first (it says which model to build), then everything else
 *     char *config;
 *     if (checkpoint_read_config(path, &config, err, sizeof err) != 0) ...
 *     ... build the model from config: params; adamw_init(&opt, &params, ADAMW_DEFAULTS) ...
 *     TrainState state;
 *     if (checkpoint_load(path, &params, &opt, &state, err, sizeof err) != 0) ...
 *     ... continue at step state.step with state.rng; free(state.config); free(config);
 *
 *     // evaluation or sampling: the parameters only (opt and state NULL)
 *     if (checkpoint_load(path, &params, NULL, NULL, err, sizeof err) != 0) ...
 *
 * The file is a plain safetensors file (safetensors.h), written atomically, with the tensors
 *
 *     <name>              every model parameter, under its own name ("blocks.0.attn.qkv.weight")
 *     optim.m.<name>      AdamW's first moment for that parameter (same shape)
 *     optim.v.<name>      AdamW's second moment
 *
 * all in this build's precision (F32, or F64 for cpool64), and the "__metadata__" strings
 *
 *     format              "contextpool-c checkpoint 1"
 *     real                "float32" or "float64": the build that wrote it
 *     checksum.crc32      the CRC-32 (zlib's crc32()) of the whole tensor payload, the bytes
 *                         after the header, as "0x" and 8 lowercase hex digits (safetensors.h)
 *     step                training steps completed ("1200")
 *     tokens              tokens (or images) trained on so far
 *     elapsed_seconds     training wall-clock time so far, %.17g
 *     config              the run's configuration text, verbatim (any text; JSON is the habit)
 *     rng.0 .. rng.3      the four 64-bit words of the Rng, decimal
 *     optim               "adamw"
 *     optim.step          updates taken (AdamW's t)
 *     optim.beta1, optim.beta2, optim.eps, optim.weight_decay    %.17g (exact round trip)
 *     optim.decay         one character per parameter, in order: '1' decayed, '0' not
 *
 * Because every value is stored exactly (floats bit for bit, doubles with 17 digits), a run
 * saved at step k, loaded and continued computes the same bits as a run never interrupted.
 * PyTorch reads it with load_checkpoint() of tools/torch/contextpool.py (a plain safetensors
 * reader: it builds the model from the config and load_state_dicts the parameters, leaving the
 * optim.* tensors aside); docs/training.md, section 9. Its writer adds the checksum and its reader
 * verifies it, as here.
 *
 * The checksum catches what the atomic write cannot: bits that change after the file was written
 * (a bad disk, a copy cut short and padded, a hand edit of the data). A checkpoint without it
 * (written before the checksum existed, or by another tool) is refused with the missing key
 * named; such a file's parameters still load with safetensors_load_params().
 *
 * Loading checks everything before it changes anything: the payload checksum, the format, every
 * tensor's presence and shape, no unexpected tensors, every metadata key present and parsed in
 * full. The first problem comes back as one line naming the file and the tensor or key:
 *
 *     run.safetensors: payload checksum mismatch (stored 0x1c291ca3, computed 0x0a8b5e21): the
 *     file is damaged or was edited
 *     run.safetensors: missing metadata 'checksum.crc32' (every checkpoint carries the CRC-32 of
 *     its tensor data)
 *     run.safetensors: metadata 'rng.2': expected an unsigned 64-bit decimal integer, got '-5'
 *     run.safetensors: missing tensor 'optim.v.fc.bias' (the model expects shape (4))
 *
 * On success the parameters hold the saved values, the optimizer its moments, step, decay flags
 * and hyperparameters (the checkpoint's, replacing those given to adamw_init), and *state the
 * step, counters, rng and a malloc'd copy of the config (free(state->config)). Resuming needs the
 * precision of the build that saved; loading the parameters alone (opt NULL) takes either, and
 * ignores the optimizer tensors.
 */
#ifndef CPOOL_CHECKPOINT_H
#define CPOOL_CHECKPOINT_H

#include <stddef.h>

#include "optim.h"
#include "params.h"
#include "rng.h"

#define CHECKPOINT_FORMAT "contextpool-c checkpoint 1"

/* Everything a training loop needs to continue, beyond the parameters and the optimizer. */
typedef struct TrainState {
    long step;              /* training steps completed */
    long tokens;            /* tokens (text) or images trained on so far */
    double elapsed_seconds; /* wall-clock training time so far */
    Rng rng;                /* the loop's generator (batches, dropout), as after `step` steps */
    char *config;           /* the run's configuration text; on save NULL means "" */
} TrainState;

int checkpoint_save(const char *path, const ParamSet *params, const AdamW *opt,
                    const TrainState *state, char *err, size_t err_len);

/* opt NULL: parameters only; state NULL: do not read the training state. */
int checkpoint_load(const char *path, ParamSet *params, AdamW *opt, TrainState *state, char *err,
                    size_t err_len);

/* The config text alone, malloc'd into *config (free with free()). */
int checkpoint_read_config(const char *path, char **config, char *err, size_t err_len);

#endif
