#!/usr/bin/python3
"""Write the PyTorch reference fixtures for ContextPool, the pooled transformer blocks and the
attention baselines, which tests/test_contextpool_reference.c checks our layers against.

Run from anywhere with Debian's Python (numpy and torch 1.13; the C tests need neither):

    /usr/bin/python3 tests/reference/make_contextpool_fixtures.py

The modules below implement the COMPOSED formula of layers/contextpool.h in plain PyTorch - an
explicit (N_out, N_in) Gaussian matrix, nothing banded - with exactly the parameter names of our
layers, so a state_dict is a params.safetensors file. Where the fused op and the composed
implementation of our library must both agree with it, the C test runs the two (impl=fused and
impl=composed cases). For every case this writes tests/reference/contextpool/<case>/, the files
`cpool lab` reads and writes (so a case can be replayed through the lab):

    x.npy                      the input (float64)
    params.safetensors         the parameters (F64), named as the module's state_dict
    gy.npy                     an upstream gradient dL/dy, the shape of y
    y.npy                      the output, computed by torch in float64
    weights.npy, support.npy   the pool's w (one per input token or pixel) and s (one per output
                               position): contextpool1d/2d, and block with pool=contextpool
    attn.npy                   attention and block: the probabilities (B, heads, N, N), after the
                               window or span mask
    grad_in.npy                dL/dx for gy
    grad_params.safetensors    dL/dparameter (F64), same names as params.safetensors

and one line per case in tests/reference/contextpool/cases.txt, in the format of
tests/reference/layers/cases.txt:

    <case> <layer> key=value ...

with every key of the layer's `cpool lab` config given explicitly (choices by name).

As in make_layer_fixtures.py, every input, parameter and gy is a float32 number stored as float64,
so the float32 build computes on the same numbers. The adaptive span's z is set by hand so that
z L is a half-integer: the mask's clamps are then at least 1/(2R) away from their kinks, where a
float32 rounding could otherwise flip a side. The seed is fixed: running this again rewrites the
same files.
"""
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_layer_fixtures import Ffn, CausalConv1d, write_safetensors, f32  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "contextpool")
SEED = 20220719
POOL_EPS = 1e-6  # added to sum_j g_ij w_j (contextpool.h)
SPAN_TINY = 1e-8  # added to the masked probabilities' row sum (attention.h)

torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)


# ----------------------------------------------------------------------------------------------
# ContextPool, 1-d and 2-d: layers/contextpool.h, composed


class ContextPool(nn.Module):
    """pred = Sequential(conv, GELU, conv 1x1) -> [a, b]; w = sigmoid(a) (or 1),
    s = s_min + (s_max - s_min) sigmoid(b) (or s_fixed); y_i = sum_j A_ij x_j / (sum_j A_ij + eps)
    with A_ij = exp(-|p_i - q_j|^2 / (2 s_i^2)) w_j inside the window, 0 outside."""

    def __init__(self, c, two_d):
        super().__init__()
        self.c, self.two_d = c, two_d
        dim, hidden = c["dim"], c["hidden"] or max(8, c["dim"] // 4)
        if two_d:
            first = nn.Conv2d(dim, hidden, 3, padding=1)
            second = nn.Conv2d(hidden, 2, 1)
        else:
            k = c["kernel"]
            first = CausalConv1d(dim, hidden, k) if c["causal"] else nn.Conv1d(dim, hidden, k,
                                                                              padding=k // 2)
            second = nn.Conv1d(hidden, 2, 1)
        self.pred = nn.Sequential(first, nn.GELU(), second)  # names pred.0.*, pred.2.*
        self.radius = c["radius"] or math.ceil(3 * c["s_max"])

    def heads(self, ab):
        """ab (B, 2, ...) -> w, s (B, ...)."""
        c = self.c
        a, b = ab[:, 0], ab[:, 1]
        w = torch.ones_like(a) if c["weights"] == "uniform" else torch.sigmoid(a)
        if c["size"] == "fixed":
            s = torch.full_like(b, c["s_fixed"] or 2.0)
        else:
            s = (c["s_max"] - c["s_min"]) * torch.sigmoid(b) + c["s_min"]
        return w, s

    def pool(self, x_flat, w_flat, s_flat, dist2, outside):
        """x_flat (B, P_in, D), w_flat (B, P_in), s_flat (B, P_out); dist2, outside (P_out, P_in)."""
        g = torch.exp(-dist2 / (2 * s_flat * s_flat)[:, :, None]).masked_fill(outside, 0.0)
        A = g * w_flat[:, None, :]  # (B, P_out, P_in)
        return (A @ x_flat) / (A.sum(-1, keepdim=True) + POOL_EPS)  # (B, P_out, D)

    def forward(self, x):
        return self.forward2d(x) if self.two_d else self.forward1d(x)

    def forward1d(self, x):  # x (B, N, D)
        N = x.shape[1]
        w, s = self.heads(self.pred(x.transpose(1, 2)))  # (B, N) each
        i = torch.arange(N)
        d = (i[:, None] - i[None, :]).double()
        outside = (d.abs() > self.radius) | (bool(self.c["causal"]) & (d < 0))
        return self.pool(x, w, s, d * d, outside), w, s

    def forward2d(self, x):  # x (B, C, H, W)
        B, C, H, W = x.shape
        stride = self.c["stride"] or 1
        w, s_full = self.heads(self.pred(x))  # (B, H, W)
        s = s_full[:, ::stride, ::stride]  # (B, Ho, Wo): s at the centres (stride u, stride v)
        Ho, Wo = s.shape[1:]
        cy, cx = torch.meshgrid(torch.arange(Ho) * stride, torch.arange(Wo) * stride,
                                indexing="ij")
        py, px = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        dy = (py.reshape(1, -1) - cy.reshape(-1, 1)).double()  # (P_out, P_in)
        dx = (px.reshape(1, -1) - cx.reshape(-1, 1)).double()
        outside = (dy.abs() > self.radius) | (dx.abs() > self.radius)
        x_flat = x.reshape(B, C, H * W).transpose(1, 2)  # (B, P_in, C)
        y = self.pool(x_flat, w.reshape(B, -1), s.reshape(B, -1), dy * dy + dx * dx, outside)
        return y.transpose(1, 2).reshape(B, C, Ho, Wo), w, s


# ----------------------------------------------------------------------------------------------
# Attention with a window or an adaptive span, and the block: layers/attention.h, block.h


class AdaptiveSpan(nn.Module):
    def __init__(self, heads):
        super().__init__()
        self.z = nn.Parameter(torch.full((heads,), 0.5))


class Attention(nn.Module):
    """make_layer_fixtures.Attention plus window = K (|i - j| <= K) and the adaptive span:
    m_h(d) = clamp(clamp(z_h, 0, 1) L / R + (R - d) / R, 0, 1), P' = P m / (sum_j P m + 1e-8)."""

    def __init__(self, dim, heads, causal, window=0, span="none", span_max=256, span_ramp=32):
        super().__init__()
        self.heads, self.causal, self.window = heads, causal, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.span = AdaptiveSpan(heads) if span == "adaptive" else None
        self.span_max, self.span_ramp = span_max or 256, span_ramp or 32

    def forward(self, x_q, x_kv=None):
        B, N, D = x_q.shape
        H, dh = self.heads, D // self.heads
        if x_kv is None:
            q, k, v = self.qkv(x_q).split(D, dim=-1)
        else:  # rows [0, D) of qkv act on x_q, rows [D, 3D) on x_kv
            q = F.linear(x_q, self.qkv.weight[:D], self.qkv.bias[:D])
            k, v = F.linear(x_kv, self.qkv.weight[D:], self.qkv.bias[D:]).split(D, dim=-1)
        q, k, v = (t.reshape(B, N, H, dh).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
        i = torch.arange(N)
        d = i[:, None] - i[None, :]
        hidden = torch.zeros(N, N, dtype=torch.bool)
        if self.causal:
            hidden |= d < 0
        if self.window:
            hidden |= d.abs() > self.window
        p = scores.masked_fill(hidden, float("-inf")).softmax(dim=-1)
        if self.span is not None:
            L, R = self.span_max, self.span_ramp
            z = self.span.z.clamp(0, 1)
            m = (z[:, None, None] * (L / R) + (R - d.abs().double()) / R).clamp(0, 1)
            p = p * m
            p = p / (p.sum(-1, keepdim=True) + SPAN_TINY)
        o = (p @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(o), p


class Block(nn.Module):
    """layers/block.h: ln1, attn, ln2, ffn and (last) the pool; pool_feeds kv, qkv or stream; a
    grid makes the pool contextpool2d over the (grid_h, grid_w) token image."""

    def __init__(self, c):
        super().__init__()
        dim = c["dim"]
        self.feeds, self.grid = c["pool_feeds"], (c["grid_h"], c["grid_w"])
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, c["heads"], c["causal"], c["window"], c["span"], c["span_max"],
                              c["span_ramp"])
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = Ffn(dim, c["ffn_hidden"] or 4 * dim)
        self.pool = None
        if c["pool"] == "contextpool":
            cp = {k[3:]: v for k, v in c.items() if k.startswith("cp_")}
            cp.update(dim=dim, causal=c["causal"], stride=1)
            self.pool = ContextPool(cp, two_d=self.grid[0] > 0)

    def pool_tokens(self, t):
        if self.grid[0] == 0:
            return self.pool(t)
        B, N, D = t.shape
        image = t.reshape(B, *self.grid, D).permute(0, 3, 1, 2)  # (B, D, H, W)
        y, w, s = self.pool(image)
        return y.permute(0, 2, 3, 1).reshape(B, N, D), w, s

    def forward(self, x):
        h = self.ln1(x)
        w = s = None
        if self.pool is not None and self.feeds == "kv":
            kv, w, s = self.pool_tokens(h)
            a, p = self.attn(h, kv)
        elif self.pool is not None and self.feeds == "qkv":
            t, w, s = self.pool_tokens(h)
            a, p = self.attn(t)
        else:
            a, p = self.attn(h)
        x = x + a
        x = x + self.ffn(self.ln2(x))
        if self.pool is not None and self.feeds == "stream":
            x, w, s = self.pool_tokens(x)
        return x, p, w, s


# ----------------------------------------------------------------------------------------------
# The cases

POOL_KEYS = {"hidden": 0, "kernel": 3, "s_min": 0.5, "s_max": 8.0, "radius": 0,
             "weights": "learned", "size": "adaptive", "s_fixed": 2.0, "impl": "fused"}
REACH_KEYS = {"window": 0, "span": "none", "span_max": 256, "span_ramp": 32, "span_coef": 2e-6}
# Every key of every lab layer, in the lab's order, with its default.
DEFAULTS = {
    "contextpool1d": {"dim": None, **{k: POOL_KEYS[k] for k in
                                      ("hidden", "kernel", "s_min", "s_max", "radius")},
                      "causal": 0, **{k: POOL_KEYS[k] for k in
                                      ("weights", "size", "s_fixed", "impl")}},
    "contextpool2d": {"dim": None, **POOL_KEYS, "stride": 1},
    "attention": {"dim": None, "heads": 1, "causal": 0, **REACH_KEYS},
    "block": {"dim": None, "heads": 1, "ffn_hidden": 0, "causal": 0, "pool": "none",
              "pool_feeds": "kv", **{"cp_" + k: v for k, v in POOL_KEYS.items()},
              "grid_h": 0, "grid_w": 0, **REACH_KEYS},
}

SMALL_POOL = {"hidden": 4, "s_max": 3.0, "radius": 3}
CP_SMALL = {"cp_hidden": 4, "cp_s_max": 3.0, "cp_radius": 3}

# (case, layer, config, input shape, span z or None). Small odd sizes, B = 1 and N = 1, causal and
# not, radius below and above N, both implementations, both ablations, stride 2 on odd sizes.
CASES = [
    ("cp1d_defaults", "contextpool1d", {"dim": 6}, (2, 7, 6), None),
    ("cp1d_causal_radius2", "contextpool1d",
     {"dim": 4, "hidden": 3, "kernel": 2, "s_max": 3.0, "radius": 2, "causal": 1}, (2, 9, 4), None),
    ("cp1d_causal_composed", "contextpool1d",
     {"dim": 4, "hidden": 3, "kernel": 2, "s_max": 3.0, "radius": 2, "causal": 1,
      "impl": "composed"}, (2, 9, 4), None),
    ("cp1d_uniform_weights", "contextpool1d",
     {"dim": 3, "hidden": 5, "kernel": 5, "s_min": 1.0, "s_max": 2.5, "weights": "uniform"},
     (1, 8, 3), None),
    ("cp1d_fixed_size", "contextpool1d",
     {"dim": 5, "radius": 4, "size": "fixed", "s_fixed": 1.5, "impl": "composed"}, (2, 6, 5),
     None),
    # N = 1 pools a token with itself alone: y = x w / (w + 1e-6), whose gradient in w is the
    # pure eps term (~1e-7), computed through a cancellation of O(1) terms and so good to only
    # ~1e-10 relative on either side. weights=uniform makes the predictor's gradient exactly 0
    # instead (s cannot matter: g_00 = 1), leaving y and dL/dx to compare.
    ("cp1d_n1", "contextpool1d", {"dim": 3, "causal": 1, "weights": "uniform"}, (1, 1, 3), None),
    ("cp2d_stride1", "contextpool2d", {"dim": 3, **SMALL_POOL, "radius": 2}, (2, 3, 5, 4), None),
    ("cp2d_stride1_composed", "contextpool2d",
     {"dim": 3, **SMALL_POOL, "radius": 2, "impl": "composed"}, (2, 3, 5, 4), None),
    ("cp2d_stride2_odd", "contextpool2d", {"dim": 2, **SMALL_POOL, "stride": 2}, (2, 2, 5, 7),
     None),
    ("cp2d_stride2_composed_uniform", "contextpool2d",
     {"dim": 4, "hidden": 3, "s_max": 2.0, "radius": 2, "stride": 2, "weights": "uniform",
      "impl": "composed"}, (1, 4, 4, 5), None),
    ("cp2d_fixed_size", "contextpool2d",
     {"dim": 3, "hidden": 2, "radius": 1, "size": "fixed", "s_fixed": 0.75}, (1, 3, 3, 3), None),
    ("block_pool_kv_causal", "block",
     {"dim": 6, "heads": 2, "causal": 1, "pool": "contextpool", **CP_SMALL, "cp_kernel": 2},
     (2, 7, 6), None),
    ("block_pool_kv_composed", "block",
     {"dim": 4, "heads": 2, "ffn_hidden": 6, "pool": "contextpool", **CP_SMALL,
      "cp_impl": "composed"}, (2, 5, 4), None),
    ("block_pool_qkv", "block",
     {"dim": 6, "heads": 3, "pool": "contextpool", "pool_feeds": "qkv", **CP_SMALL,
      "cp_weights": "uniform"}, (1, 6, 6), None),
    ("block_pool_stream_causal", "block",
     {"dim": 4, "heads": 1, "causal": 1, "pool": "contextpool", "pool_feeds": "stream",
      **CP_SMALL, "cp_size": "fixed", "cp_s_fixed": 1.25}, (2, 6, 4), None),
    ("block_pool2d_kv", "block",
     {"dim": 4, "heads": 2, "pool": "contextpool", "grid_h": 2, "grid_w": 3, **CP_SMALL,
      "cp_radius": 1}, (2, 6, 4), None),
    ("block_pool2d_stream_composed", "block",
     {"dim": 3, "heads": 1, "pool": "contextpool", "pool_feeds": "stream", "grid_h": 3,
      "grid_w": 3, **CP_SMALL, "cp_impl": "composed"}, (1, 9, 3), None),
    ("block_pool2d_qkv", "block",
     {"dim": 4, "heads": 1, "pool": "contextpool", "pool_feeds": "qkv", "grid_h": 2, "grid_w": 2,
      **CP_SMALL}, (2, 4, 4), None),
    ("block_window_causal", "block", {"dim": 4, "heads": 2, "causal": 1, "window": 2}, (2, 6, 4),
     None),
    ("block_span_pool_kv", "block",
     {"dim": 4, "heads": 2, "causal": 1, "span": "adaptive", "span_max": 4, "span_ramp": 2,
      "pool": "contextpool", **CP_SMALL}, (1, 7, 4), [0.375, 0.625]),
    ("attention_window1", "attention", {"dim": 4, "heads": 2, "window": 1}, (2, 5, 4), None),
    ("attention_window2_causal", "attention", {"dim": 3, "heads": 1, "causal": 1, "window": 2},
     (1, 6, 3), None),
    ("attention_span", "attention",
     {"dim": 4, "heads": 2, "span": "adaptive", "span_max": 4, "span_ramp": 2}, (2, 6, 4),
     [0.125, 0.625]),
    ("attention_span_causal_window", "attention",
     {"dim": 6, "heads": 3, "causal": 1, "window": 3, "span": "adaptive", "span_max": 3,
      "span_ramp": 1}, (1, 7, 6), [0.5, 1 / 6, 0.8333333]),
]


def make_module(layer, c):
    if layer == "contextpool1d":
        return ContextPool(c, two_d=False)
    if layer == "contextpool2d":
        return ContextPool(c, two_d=True)
    if layer == "attention":
        return Attention(c["dim"], c["heads"], c["causal"], c["window"], c["span"], c["span_max"],
                         c["span_ramp"])
    return Block(c)


def randomise(module, span_z):
    """torch's initialisation, noise on LayerNorm, z by hand; every value rounded to float32."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                for p in (m.weight, m.bias):
                    p.add_(torch.from_numpy(rng.normal(0, 0.3, tuple(p.shape))))
            if isinstance(m, AdaptiveSpan):
                m.z.copy_(torch.tensor(span_z))
        for p in module.parameters():
            p.copy_(torch.from_numpy(f32(p.numpy())))


def check_span_away_from_kinks(module):
    """Every z L is at least 0.1 from an integer: the mask (R + z L - d) / R is then at least
    0.1 / R from the clamp's kinks 0 and 1 for every integer distance d."""
    for m in module.modules():
        if isinstance(m, Attention) and m.span is not None:
            reach = m.span.z.detach().numpy() * m.span_max
            assert np.all(np.abs(reach - np.round(reach)) >= 0.1), reach
            assert bool(((m.span.z > 0) & (m.span.z < 1)).all())


def config_text(config):
    def value(v):
        return repr(v) if isinstance(v, float) else str(v)
    return " ".join(f"{k}={value(v)}" for k, v in config.items())


def write_case(case, layer, given, shape, span_z, manifest):
    config = dict(DEFAULTS[layer], **given)
    assert set(config) == set(DEFAULTS[layer]), case
    assert all(v is not None for v in config.values()), case
    module = make_module(layer, config)
    randomise(module, span_z)
    check_span_away_from_kinks(module)
    directory = os.path.join(HERE, case)
    os.makedirs(directory)
    x = torch.from_numpy(f32(rng.uniform(-2, 2, shape))).requires_grad_()
    out = module(x)
    p = w = s = None
    if layer.startswith("contextpool"):
        y, w, s = out
    elif layer == "attention":
        y, p = out
    else:
        y, p, w, s = out
    gy = torch.from_numpy(f32(rng.uniform(-1, 1, tuple(y.shape))))
    y.backward(gy)

    def save(name, t):
        np.save(os.path.join(directory, name), t.detach().numpy())

    write_safetensors(os.path.join(directory, "params.safetensors"),
                      {n: t.detach().numpy() for n, t in module.state_dict().items()})
    write_safetensors(os.path.join(directory, "grad_params.safetensors"),
                      {n: t.grad.numpy() for n, t in module.named_parameters()})
    for name, t in (("x.npy", x), ("gy.npy", gy), ("y.npy", y), ("attn.npy", p),
                    ("weights.npy", w), ("support.npy", s), ("grad_in.npy", x.grad)):
        if t is not None:
            save(name, t)
    manifest.append(f"{case} {layer} {config_text(config)}")


def main():
    shutil.rmtree(HERE, ignore_errors=True)  # everything in contextpool/ is generated here
    os.makedirs(HERE)
    manifest = []
    for case in CASES:
        write_case(*case, manifest)
    with open(os.path.join(HERE, "cases.txt"), "w") as f:
        f.write("# Written by make_contextpool_fixtures.py (seed %d, torch %s): case layer "
                "key=value ...\n" % (SEED, torch.__version__))
        f.write("\n".join(manifest) + "\n")
    size = sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(HERE) for name in names)
    print(f"{len(manifest)} cases, {size / 1024:.0f} KB in {HERE}")


if __name__ == "__main__":
    main()
