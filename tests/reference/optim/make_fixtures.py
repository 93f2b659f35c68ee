#!/usr/bin/python3
"""Write the PyTorch reference fixtures for train/optim.c (tests/test_train_optim.c).

Run from anywhere with Debian's Python (numpy and torch 1.13; the C tests need neither):

    /usr/bin/python3 tests/reference/optim/make_fixtures.py

AdamW: three parameters, the shapes of a linear weight (decayed), a bias (not decayed) and an
embedding table (decayed), as two torch param groups (weight_decay = WD and 0: our rule "decay
the tensors with 2 or more dimensions"). Six updates with given gradients and learning rates
(one lr is 0, one gradient is all zeros, one is tiny so that eps matters). Written, per
parameter NAME:

    adamw_NAME_p0.npy        the initial values                      (float64)
    adamw_NAME_grads.npy     (steps, *shape): the gradient of each step
    adamw_NAME_p64.npy       (steps, *shape): the values after each step, torch in float64
    adamw_NAME_m64.npy, adamw_NAME_v64.npy     exp_avg, exp_avg_sq after the last step
    adamw_NAME_p32.npy, adamw_NAME_m32.npy, adamw_NAME_v32.npy    the same run in float32
and adamw_lr.npy (steps), adamw_hyper.npy [beta1, beta2, eps, weight_decay].

Clipping: torch.nn.utils.clip_grad_norm_ on three gradients, in float64, once with a max_norm
below their norm (clipped) and once above (untouched):

    clip_NAME_grad.npy       the gradients before
    clip_NAME_clipped.npy    after clip_grad_norm_(max_norm = clip_max[0])
    clip_max.npy             [max_norm that clips, max_norm that does not]
    clip_norm.npy            [the norm clip_grad_norm_ returned]

Every input value is exactly representable in float32 (drawn, rounded to float32, stored as
float64), so the float32 build starts from the very same numbers.
"""
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {"w": (3, 4), "b": (4,), "emb": (5, 2)}
BETA1, BETA2, EPS, WD = 0.9, 0.95, 1e-6, 0.1
LRS = [1e-3, 3e-3, 2e-3, 0.0, 5e-3, 1e-3]


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def save(name, array):
    np.save(os.path.join(HERE, name + ".npy"), np.asarray(array, dtype=np.float64))


def gradients(rng, shape, steps):
    g = rng.standard_normal((steps,) + shape)
    g[2] = 0.0                      # a step without gradient: moments decay, decay still applies
    g[4] *= 1e-6                    # tiny: sqrt(v^) is near eps, so eps matters
    return f32(g)


def run_adamw(p0, grads, dtype):
    params = {k: torch.nn.Parameter(torch.tensor(v, dtype=dtype)) for k, v in p0.items()}
    groups = [{"params": [p for k, p in params.items() if p.dim() >= 2], "weight_decay": WD},
              {"params": [p for k, p in params.items() if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=LRS[0], betas=(BETA1, BETA2), eps=EPS)
    history = {k: [] for k in params}
    for step, lr in enumerate(LRS):
        for group in opt.param_groups:
            group["lr"] = lr
        for k, p in params.items():
            p.grad = torch.tensor(grads[k][step], dtype=dtype)
        opt.step()
        for k, p in params.items():
            history[k].append(p.detach().double().numpy().copy())
    state = {k: opt.state[p] for k, p in params.items()}
    return history, state


def adamw_fixture(rng):
    steps = len(LRS)
    p0 = {k: f32(rng.standard_normal(s)) for k, s in SHAPES.items()}
    grads = {k: gradients(rng, s, steps) for k, s in SHAPES.items()}
    save("adamw_lr", LRS)
    save("adamw_hyper", [BETA1, BETA2, EPS, WD])
    for dtype, bits in ((torch.float64, "64"), (torch.float32, "32")):
        history, state = run_adamw(p0, grads, dtype)
        for k in SHAPES:
            save(f"adamw_{k}_p{bits}", np.stack(history[k]))
            save(f"adamw_{k}_m{bits}", state[k]["exp_avg"].double().numpy())
            save(f"adamw_{k}_v{bits}", state[k]["exp_avg_sq"].double().numpy())
    for k in SHAPES:
        save(f"adamw_{k}_p0", p0[k])
        save(f"adamw_{k}_grads", grads[k])


def clip_fixture(rng):
    grads = {k: f32(rng.standard_normal(s)) for k, s in SHAPES.items()}
    tensors = {k: torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for k, s in SHAPES.items()}
    for k, t in tensors.items():
        t.grad = torch.tensor(grads[k])
    max_norm = 1.5
    norm = torch.nn.utils.clip_grad_norm_(list(tensors.values()), max_norm)
    assert norm > max_norm, "the first max_norm must clip"
    for k, t in tensors.items():
        save(f"clip_{k}_grad", grads[k])
        save(f"clip_{k}_clipped", t.grad.numpy())
    save("clip_max", [max_norm, float(norm) + 1.0])
    save("clip_norm", [float(norm)])


def main():
    rng = np.random.default_rng(20221)
    adamw_fixture(rng)
    clip_fixture(rng)
    print("wrote", len([f for f in os.listdir(HERE) if f.endswith(".npy")]), "files to", HERE)


if __name__ == "__main__":
    main()
