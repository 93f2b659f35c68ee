#!/usr/bin/python3
"""contextpool-c's models in PyTorch: the same modules, the same parameter names, the same numbers.

A checkpoint written by `cpool train` loads here, and a model saved here loads there:

    sys.path.insert(0, "tools/torch")
    from contextpool import load_checkpoint, save_state_dict
    model, config_text, metadata = load_checkpoint("runs/charlm/checkpoint.safetensors")
    logits = model(tokens)                      # charlm: tokens (B, N) int64 -> (B, N, 256)
    ...
    save_state_dict("mine.safetensors", model, config_text)   # `cpool eval`, `cpool sample` read it

CharLM, ViT and CNN are the models of train/model.h; ContextPool, Attention and Block the layers
of layers/contextpool.h, attention.h and block.h. Each registers its parameters under the C
names and shapes, so state_dict() IS a checkpoint's list of parameters (its optim.m.* and
optim.v.* tensors are AdamW's moments, which `train` picks up). Written for torch 1.13
(Debian's python3-torch); nothing here needs the `safetensors` package. docs/training.md,
"Continuing in PyTorch", shows the way through.

Command line (from the repository root, where a run config's data paths point):

    python3 tools/torch/contextpool.py logits CKPT INPUT.npy OUT.npy [CKPT INPUT OUT ...]
        float64 forward pass: INPUT is tokens (B, N) for a charlm, images (B, 1, 28, 28)
        otherwise; OUT the logits. Several triples share one start of Python and torch.
    python3 tools/torch/contextpool.py init CONFIG_FILE SEED OUT.safetensors [CONFIG SEED OUT ...]
        a model with torch's own initialisation (torch.manual_seed(SEED)), saved for the C side.
    python3 tools/torch/contextpool.py train CKPT --steps N [--out PATH] [--device cuda] ...
        continue a run to step N with AdamW and the run's own hyperparameters, on a GPU if any.
"""
import argparse
import functools
import gzip
import json
import math
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CHECKPOINT_FORMAT = "contextpool-c checkpoint 1"
CHECKSUM_KEY = "checksum.crc32"  # "0x" + 8 hex digits: zlib.crc32 of the data part (safetensors.h)
POOL_EPS = 1e-6  # added to sum_j g_ij w_j (layers/contextpool.h)
SPAN_TINY = 1e-8  # added to the span-masked probabilities' row sum (layers/attention.h)

# ----------------------------------------------------------------------------------------------
# The run config: lines "key = value", '#' comments (train/run_config.h)

# Every key with its default (train/run_config.c); `model` first, because it picks the defaults
# that differ by model.
COMMON_DEFAULTS = {
    "model": "charlm", "dim": 128, "heads": 4, "layers": 2, "ffn_hidden": 0, "seq_len": 256,
    "tie": 1, "patch": 4, "channels": 16, "pool": "contextpool", "pool_feeds": "kv",
    "weights": "learned", "size": "learned", "s_fixed": 2.0, "s_min": 0.5, "s_max": 8.0,
    "radius": 0, "pred_hidden": 0, "pred_kernel": 0, "window": 0, "span": 0, "span_max": 0,
    "span_ramp": 0, "span_coef": 0.0,
    "data": "data/kjv.txt", "batch": 16, "steps": 2000, "lr": 2e-3, "min_lr": 2e-4,
    "warmup": 100, "weight_decay": 0.1, "clip": 1.0, "eval_every": 250, "eval_batches": 16,
    "checkpoint_every": 500, "seed": 1, "n_valid": 5000,
}
IMAGE_DEFAULTS = {"data": "/usr/share/datasets/fashion-mnist", "batch": 64, "lr": 1e-3,
                  "min_lr": 1e-4, "weight_decay": 0.05, "eval_batches": 20}
MODEL_DEFAULTS = {
    "charlm": {},
    "vit": dict(IMAGE_DEFAULTS, dim=64),
    "cnn": dict(IMAGE_DEFAULTS, dim=64, s_max=2.0),  # a 2x2 pool's stand-in looks a few pixels
}
CHOICES = {"model": ("charlm", "vit", "cnn"), "pool": ("none", "avg", "contextpool"),
           "pool_feeds": ("kv", "qkv", "stream"), "weights": ("learned", "uniform"),
           "size": ("learned", "fixed")}


def config_defaults(model):
    if model not in MODEL_DEFAULTS:
        raise ValueError(f"model={model}: expected one of charlm, vit, cnn")
    config = dict(COMMON_DEFAULTS, **MODEL_DEFAULTS[model])
    config["model"] = model
    return config


def parse_value(key, text, default):
    """The value text of a key, typed as its default."""
    if key in CHOICES and text not in CHOICES[key]:
        raise ValueError(f"{key}={text}: expected one of {'|'.join(CHOICES[key])}")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def load_config(text):
    """A run config text -> dict of every key (the model's defaults, then the text's lines).
    Raises ValueError naming the line for an unknown key or a malformed value."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, equals, value = (part.strip() for part in line.partition("="))
        if not equals or not key:
            raise ValueError(f"config line {number}: expected 'key = value', got '{line}'")
        lines.append((number, key, value))
    model = lines[0][2] if lines and lines[0][1] == "model" else "charlm"
    config = config_defaults(model)
    for index, (number, key, value) in enumerate(lines):
        if key not in config:
            raise ValueError(f"config line {number}: unknown key '{key}'")
        if key == "model" and index > 0:
            raise ValueError(f"config line {number}: model must be the first key")
        try:
            config[key] = parse_value(key, value, config[key])
        except ValueError as e:
            raise ValueError(f"config line {number}: {e}") from None
    return config


def format_config(config):
    """The dict back as text, one "key = value" per line, model first (as run_config_format)."""
    def show(v):
        return repr(v) if isinstance(v, float) else str(v)
    return "".join(f"{k} = {show(v)}\n" for k, v in config.items())


# ----------------------------------------------------------------------------------------------
# ContextPool: layers/contextpool.h. The pooling as a banded (N_out, N_in) matrix A_ij = g_ij w_j
# and one batched matmul - the same numbers as the C fused op, which only visits the band.


class CausalConv1d(nn.Conv1d):
    """Conv1d with kernel-1 zeros on the left and none on the right (layers/conv.h, causal=1)."""

    def forward(self, x):
        return F.conv1d(F.pad(x, (self.kernel_size[0] - 1, 0)), self.weight, self.bias)


@functools.lru_cache(maxsize=64)
def pool_window(out_shape, in_shape, stride, radius, causal, device, dtype):
    """Constants (P_out, P_in): dist2 = |p_i - q_j|^2 from centre i (stride u[, stride v]) to
    input j, and band = 1 inside the window (|dy|, |dx| <= radius; j <= i when causal), else 0."""
    def axis(n_out, n_in):
        return torch.arange(n_in)[None, :] - stride * torch.arange(n_out)[:, None]  # (out, in)
    if len(in_shape) == 1:
        d = axis(out_shape[0], in_shape[0])
        dist2, inside = d * d, d.abs() <= radius
        if causal:
            inside &= d <= 0
    else:  # flattened pixels: i = (u, v), j = (y, x); dy (Ho, 1, H, 1), dx (1, Wo, 1, W)
        dy = axis(out_shape[0], in_shape[0])[:, None, :, None]
        dx = axis(out_shape[1], in_shape[1])[None, :, None, :]
        dist2 = (dy * dy + dx * dx).reshape(math.prod(out_shape), math.prod(in_shape))
        inside = ((dy.abs() <= radius) & (dx.abs() <= radius)).reshape(dist2.shape)
    return dist2.to(device, dtype), inside.to(device, dtype)


class ContextPool(nn.Module):
    """pred = Sequential(conv_k, GELU, conv_1) reads x -> [a, b] per position;
    w = sigmoid(a) (or 1), s = s_min + (s_max - s_min) sigmoid(b) (or s_fixed);
    y_i = sum_j A_ij x_j / (sum_j A_ij + 1e-6),  A_ij = exp(-|p_i - q_j|^2 / (2 s_i^2)) w_j in the
    window. Parameters pred.0.weight, pred.0.bias, pred.2.weight, pred.2.bias (pred.1 is GELU)."""

    def __init__(self, dim, two_d=False, causal=False, stride=1, hidden=0, kernel=0, s_min=0.5,
                 s_max=8.0, radius=0, weights_uniform=False, size_fixed=False, s_fixed=2.0):
        super().__init__()
        hidden, kernel = hidden or max(8, dim // 4), kernel or 3
        if two_d:
            first, second = nn.Conv2d(dim, hidden, 3, padding=1), nn.Conv2d(hidden, 2, 1)
        else:
            first = CausalConv1d(dim, hidden, kernel) if causal else nn.Conv1d(
                dim, hidden, kernel, padding=kernel // 2)
            second = nn.Conv1d(hidden, 2, 1)
        self.pred = nn.Sequential(first, nn.GELU(), second)
        self.two_d, self.causal, self.stride = two_d, causal, stride
        self.s_min, self.s_max, self.s_fixed = s_min, s_max, s_fixed or 2.0
        self.radius = radius or math.ceil(3 * s_max)
        self.weights_uniform, self.size_fixed = weights_uniform, size_fixed

    def heads(self, ab):
        """ab (B, 2, ...) -> w, s (B, ...)."""
        a, b = ab[:, 0], ab[:, 1]
        w = torch.ones_like(a) if self.weights_uniform else torch.sigmoid(a)
        if self.size_fixed:
            s = torch.full_like(b, self.s_fixed)
        else:
            s = (self.s_max - self.s_min) * torch.sigmoid(b) + self.s_min
        return w, s

    def pool(self, x_flat, w_flat, s_flat, out_shape, in_shape):
        """x_flat (B, D, P_in) channels first, w_flat (B, P_in), s_flat (B, P_out) -> (B, D, P_out).
        One batched matmul gives the numerator and, from a row of ones, the normaliser."""
        dist2, band = pool_window(out_shape, in_shape, self.stride, self.radius, self.causal,
                                  x_flat.device, x_flat.dtype)
        g = torch.exp(-dist2 / (2 * s_flat * s_flat)[:, :, None]) * band  # (B, P_out, P_in)
        A = g * w_flat[:, None, :]
        ones = torch.ones_like(x_flat[:, :1])  # (B, 1, P_in)
        both = torch.cat([x_flat, ones], 1) @ A.transpose(1, 2)  # (B, D + 1, P_out)
        return both[:, :-1] / (both[:, -1:] + POOL_EPS)

    def forward(self, x):
        """1-d: x (B, N, D) -> (B, N, D); 2-d: x (B, C, H, W) -> (B, C, ceil(H/s), ceil(W/s)).
        Returns y, w (one per input position), s (one per output position)."""
        if not self.two_d:
            channels_first = x.transpose(1, 2)  # (B, D, N)
            w, s = self.heads(self.pred(channels_first))  # (B, N) each
            N = x.shape[1]
            return self.pool(channels_first, w, s, (N,), (N,)).transpose(1, 2), w, s
        B, C, H, W = x.shape
        w, s_full = self.heads(self.pred(x))  # (B, H, W)
        s = s_full[:, ::self.stride, ::self.stride]  # (B, Ho, Wo): s at the centres
        Ho, Wo = s.shape[1:]
        y = self.pool(x.reshape(B, C, H * W), w.reshape(B, -1), s.reshape(B, -1), (Ho, Wo),
                      (H, W))
        return y.reshape(B, C, Ho, Wo), w, s


def pool_from_config(dim, config, two_d=False, causal=False, stride=1):
    """The ContextPool the run config's pool keys describe."""
    return ContextPool(dim, two_d, causal, stride, config["pred_hidden"], config["pred_kernel"],
                       config["s_min"], config["s_max"], config["radius"],
                       config["weights"] == "uniform", config["size"] == "fixed",
                       config["s_fixed"])


# ----------------------------------------------------------------------------------------------
# Attention with a window or an adaptive span, the feed-forward net, the block


class Span(nn.Module):
    """The adaptive span's z, one per head ("attn.span.z"), starting at 0.5."""

    def __init__(self, heads):
        super().__init__()
        self.z = nn.Parameter(torch.full((heads,), 0.5))


class Attention(nn.Module):
    """layers/attention.h: qkv (3 dim, dim), proj (dim, dim); queries from x_q, keys and values
    from x_kv (rows [0, dim) of qkv act on x_q, rows [dim, 3 dim) on x_kv)."""

    def __init__(self, dim, heads, causal=False, window=0, span=False, span_max=0, span_ramp=0,
                 span_coef=0.0):
        super().__init__()
        self.heads, self.causal, self.window = heads, causal, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.span = Span(heads) if span else None
        self.span_max, self.span_ramp = span_max or 256, span_ramp or 32
        self.span_coef = span_coef or 2e-6

    def forward(self, x_q, x_kv=None):
        B, N, D = x_q.shape
        H, dh = self.heads, D // self.heads
        if x_kv is None or x_kv is x_q:
            q, k, v = self.qkv(x_q).split(D, dim=-1)
        else:
            q = F.linear(x_q, self.qkv.weight[:D], self.qkv.bias[:D])
            k, v = F.linear(x_kv, self.qkv.weight[D:], self.qkv.bias[D:]).split(D, dim=-1)
        q, k, v = (t.reshape(B, N, H, dh).transpose(1, 2) for t in (q, k, v))  # (B, H, N, dh)
        scores = (q / math.sqrt(dh)) @ k.transpose(-2, -1)  # (B, H, N, N)
        d = torch.arange(N, device=x_q.device)
        d = d[:, None] - d[None, :]  # i - j
        hidden = torch.zeros(N, N, dtype=torch.bool, device=x_q.device)
        if self.causal:
            hidden |= d < 0
        if self.window:
            hidden |= d.abs() > self.window
        p = scores.masked_fill(hidden, float("-inf")).softmax(dim=-1)
        if self.span is not None:  # m_h(d) = clamp(z_h L / R + (R - |d|) / R, 0, 1), renormalised
            L, R = self.span_max, self.span_ramp
            ramp = (R - d.abs().to(p.dtype)) / R
            m = (self.span.z.clamp(0, 1)[:, None, None] * (L / R) + ramp).clamp(0, 1)
            p = p * m
            p = p / (p.sum(-1, keepdim=True) + SPAN_TINY)
        o = (p @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(o)

    def span_loss(self):
        """span_coef L mean_h(clamp(z_h, 0, 1)), or 0 without a span."""
        if self.span is None:
            return 0.0
        return self.span_coef * self.span_max * self.span.z.clamp(0, 1).mean()


class Ffn(nn.Module):
    """layers/ffn.h: fc2(GELU(fc1(x))), exact erf GELU."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """layers/block.h: x + attn(ln1(x)), then x + ffn(ln2(x)); with a pool, pool_feeds says where
    it sits: kv (keys and values from pool(ln1 x)), qkv (everything from it) or stream (after the
    block). grid (H, W): the N = H W tokens are an image, pooled by contextpool2d."""

    def __init__(self, dim, heads, ffn_hidden=0, causal=False, pool=None, pool_feeds="kv",
                 grid=None, **reach):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal, **reach)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = Ffn(dim, ffn_hidden or 4 * dim)
        self.pool = pool  # a ContextPool or None, registered last as in C
        self.pool_feeds, self.grid = pool_feeds, grid

    def pool_tokens(self, t):
        if self.grid is None:
            return self.pool(t)[0]
        B, N, D = t.shape
        image = t.reshape(B, *self.grid, D).permute(0, 3, 1, 2)  # (B, D, H, W)
        return self.pool(image)[0].permute(0, 2, 3, 1).reshape(B, N, D)

    def forward(self, x):
        h = self.ln1(x)
        if self.pool is not None and self.pool_feeds == "kv":
            a = self.attn(h, self.pool_tokens(h))
        elif self.pool is not None and self.pool_feeds == "qkv":
            a = self.attn(self.pool_tokens(h))
        else:
            a = self.attn(h)
        x = x + a
        x = x + self.ffn(self.ln2(x))
        if self.pool is not None and self.pool_feeds == "stream":
            x = self.pool_tokens(x)
        return x


def blocks_from_config(config, causal, grid=None):
    def block():
        pool = None
        if config["pool"] == "contextpool":
            pool = pool_from_config(config["dim"], config, two_d=grid is not None, causal=causal)
        return Block(config["dim"], config["heads"], config["ffn_hidden"], causal, pool,
                     config["pool_feeds"], grid, window=config["window"],
                     span=bool(config["span"]), span_max=config["span_max"],
                     span_ramp=config["span_ramp"], span_coef=config["span_coef"])
    return nn.ModuleList(block() for _ in range(config["layers"]))


# ----------------------------------------------------------------------------------------------
# The models: train/model.h


class Model(nn.Module):
    """What the three models share: the training loss (cross-entropy in nats, plus the adaptive
    spans' penalty) and the clamp of span.z after each optimizer step."""

    def loss(self, logits, targets):
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        for m in self.modules():
            if isinstance(m, Attention):
                loss = loss + m.span_loss()
        return loss

    @torch.no_grad()
    def after_step(self):
        for m in self.modules():
            if isinstance(m, Span):
                m.z.clamp_(0, 1)


class CharLM(Model):
    """tokens (B, N) -> logits (B, N, 256): tok + pos, causal blocks, ln_f, head (tied: tok)."""

    def __init__(self, config):
        super().__init__()
        dim = config["dim"]
        self.tok = nn.Embedding(256, dim)
        self.pos = nn.Embedding(config["seq_len"], dim)
        self.blocks = blocks_from_config(config, causal=True)
        self.ln_f = nn.LayerNorm(dim)
        self.head = None if config["tie"] else nn.Linear(dim, 256, bias=False)
        for table in (self.tok, self.pos):
            nn.init.normal_(table.weight, std=0.02)  # GPT-2's start (model.h)

    def forward(self, tokens):
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return x @ self.tok.weight.t() if self.head is None else self.head(x)


class ViT(Model):
    """images (B, 1, 28, 28) -> logits (B, 10): patch conv, + pos, blocks on the (G, G) token grid,
    ln_f, mean over tokens, head."""

    def __init__(self, config):
        super().__init__()
        dim, p = config["dim"], config["patch"]
        if 28 % p:
            raise ValueError(f"vit: patch={p} does not divide 28")
        self.grid = (28 // p, 28 // p)
        self.patch = nn.Conv2d(1, dim, p, stride=p)
        self.pos = nn.Embedding(self.grid[0] * self.grid[1], dim)
        self.blocks = blocks_from_config(config, causal=False, grid=self.grid)
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, images):
        x = self.patch(images).flatten(2).transpose(1, 2)  # (B, G*G, dim), row-major tokens
        x = x + self.pos.weight
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x).mean(1))


class AvgPool(nn.Module):
    """2x2 average pooling (no parameters), returning (y,) as ContextPool returns (y, w, s)."""

    def forward(self, x):
        return (F.avg_pool2d(x, 2),)


class CNN(Model):
    """images (B, 1, 28, 28) -> logits (B, 10): three 3x3 convs (c, 2c, 4c) with ReLU, 2x2 average
    pooling or contextpool2d stride 2 after the first two, mean over pixels, head."""

    def __init__(self, config):
        super().__init__()
        c = config["channels"]
        widths = [1, c, 2 * c, 4 * c]
        self.conv = nn.ModuleList(nn.Conv2d(widths[k], widths[k + 1], 3, padding=1)
                                  for k in range(3))
        if config["pool"] == "contextpool":
            self.pool = nn.ModuleList(pool_from_config(widths[k + 1], config, two_d=True, stride=2)
                                      for k in range(2))
        else:
            self.pool = nn.ModuleList(AvgPool() for _ in range(2))
        self.head = nn.Linear(4 * c, 10)

    def forward(self, images):
        x = images
        for k in range(2):
            x = self.pool[k](F.relu(self.conv[k](x)))[0]
        x = F.relu(self.conv[2](x))
        return self.head(x.mean((2, 3)))


def build_model(config):
    """The model a config dict (load_config) describes, with torch's own initialisation."""
    kind, pool = config["model"], config["pool"]
    if kind == "cnn" and pool not in ("avg", "contextpool"):
        raise ValueError(f"model: pool={pool}: the cnn pools with avg or contextpool")
    if kind != "cnn" and pool not in ("none", "contextpool"):
        raise ValueError(f"model: pool={pool}: a {kind}'s blocks take none or contextpool")
    if kind != "cnn" and config["dim"] % config["heads"]:
        raise ValueError(f"model: heads={config['heads']} does not divide dim={config['dim']}")
    return {"charlm": CharLM, "vit": ViT, "cnn": CNN}[kind](config)


# ----------------------------------------------------------------------------------------------
# safetensors by hand: <u64 LE header length> <JSON header> <raw little-endian data>

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
          "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
assert sys.byteorder == "little", "the raw data is little-endian; this reader does not swap"


def read_safetensors(path):
    """-> ({name: tensor}, {metadata key: value}). A file that carries a payload checksum
    (metadata "checksum.crc32", as every checkpoint does) must match it, as in layers/safetensors.c."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    data = bytearray(raw[8 + n:])
    if CHECKSUM_KEY in metadata:
        stored = metadata[CHECKSUM_KEY]
        if len(stored) != 10 or not stored.startswith("0x") or \
                any(c not in "0123456789abcdefABCDEF" for c in stored[2:]):
            raise ValueError(f"{path}: metadata '{CHECKSUM_KEY}': expected 0x and 8 hex digits "
                             f"(the CRC-32 of the data part), got {stored!r}")
        computed = zlib.crc32(data)
        if int(stored, 16) != computed:
            raise ValueError(f"{path}: payload checksum mismatch (stored 0x{int(stored, 16):08x}, "
                             f"computed 0x{computed:08x}): the file is damaged or was edited")
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        chunk, dtype = data[begin:end], DTYPES[entry["dtype"]]
        t = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(entry["shape"])
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None, checksum=False):
    """tensors {name: tensor} in that order; metadata {str: str}; checksum: add the payload's
    CRC-32 as metadata "checksum.crc32" (checkpoints do). Written to path.tmp.PID, flushed to the
    disk, then renamed (and the directory synced), so path never holds half a file."""
    header, chunks, offset = {}, [], 0
    if metadata or checksum:
        header["__metadata__"] = {str(k): str(v) for k, v in (metadata or {}).items()}
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        raw = t.numpy().tobytes() if t.dtype != torch.bfloat16 else \
            t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    payload = b"".join(chunks)
    if checksum:
        header["__metadata__"][CHECKSUM_KEY] = f"0x{zlib.crc32(payload):08x}"
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path, dtype=None):
    """A checkpoint (or any file save_state_dict wrote) -> (model, config_text, metadata).
    The model is built from the config stored in the file and holds the saved parameters, in the
    file's precision unless dtype is given; the optim.* tensors (AdamW's moments) are left out."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: metadata 'format' is {metadata.get('format')!r}, expected "
                         f"'{CHECKPOINT_FORMAT}'")
    if CHECKSUM_KEY not in metadata:
        raise ValueError(f"{path}: missing metadata '{CHECKSUM_KEY}' (every checkpoint carries "
                         f"the CRC-32 of its tensor data)")
    config_text = metadata.get("config", "")
    model = build_model(load_config(config_text))
    state = {n: t for n, t in tensors.items() if not n.startswith("optim.")}
    model.to(dtype or next(iter(state.values())).dtype)
    model.load_state_dict(state, strict=True)
    return model, config_text, metadata


def save_state_dict(path, model, config_text, metadata=None, extra=None):
    """The model's parameters (in their own precision) as a checkpoint that the C side loads for
    evaluation and sampling (checkpoint_load with the parameters only) and load_checkpoint reads.
    metadata: more "__metadata__" strings; extra: more tensors (the optimizer's moments)."""
    state = model.state_dict()
    real = "float64" if next(iter(state.values())).dtype == torch.float64 else "float32"
    tensors = dict(state, **(extra or {}))
    write_safetensors(path, tensors, dict({"format": CHECKPOINT_FORMAT, "real": real,
                                           "config": config_text}, **(metadata or {})),
                      checksum=True)


# ----------------------------------------------------------------------------------------------
# Training at scale: the run's AdamW, schedule and clipping, on a GPU when there is one


def lr_at(config, step):
    """Linear warm-up to lr, then a half cosine down to min_lr at `steps` (train/optim.h)."""
    peak, low, W, T = config["lr"], config["min_lr"], config["warmup"], config["steps"]
    if step < W:
        return peak * (step + 1) / W
    if step >= T:
        return low
    return low + (peak - low) * (1 + math.cos(math.pi * (step - W) / (T - W))) / 2


class Batches:
    """The run's data, split as train/text_data.h (90/5/5 by bytes) and image_data.h (the last
    n_valid training images held out) do. sample(): a random batch of the train split;
    valid(k): the k-th sequential batch of the valid split."""

    def __init__(self, config, device):
        self.config, self.device, self.kind = config, device, config["model"]
        if self.kind == "charlm":
            with open(config["data"], "rb") as f:
                data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
            n_train, n_valid = int(0.9 * len(data)), int(0.05 * len(data))
            self.train, self.valid_set = data[:n_train], data[n_train:n_train + n_valid]
        else:
            def idx(name, skip):
                with gzip.open(os.path.join(config["data"], name)) as f:
                    return torch.frombuffer(bytearray(f.read()[skip:]), dtype=torch.uint8)
            images = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
            labels = idx("train-labels-idx1-ubyte.gz", 8).long()
            cut = len(labels) - config["n_valid"]
            self.train = (images[:cut], labels[:cut])
            self.valid_set = (images[cut:], labels[cut:])

    def windows(self, data, starts):
        n = self.config["seq_len"]
        rows = torch.stack([data[s:s + n + 1] for s in starts.tolist()])
        return rows[:, :-1].to(self.device), rows[:, 1:].to(self.device)

    def images(self, split, index):
        return (split[0][index].float() / 255).to(self.device), split[1][index].to(self.device)

    def sample(self):
        B = self.config["batch"]
        if self.kind == "charlm":
            return self.windows(self.train, torch.randint(len(self.train) - self.config["seq_len"],
                                                          (B,)))
        return self.images(self.train, torch.randint(len(self.train[1]), (B,)))

    def valid(self, k):
        B, n = self.config["batch"], self.config["seq_len"]
        if self.kind == "charlm":
            starts = torch.arange(k * B, min((k + 1) * B, (len(self.valid_set) - 1) // n)) * n
            return self.windows(self.valid_set, starts) if len(starts) else None
        index = torch.arange(k * B, min((k + 1) * B, len(self.valid_set[1])))
        return self.images(self.valid_set, index) if len(index) else None


@torch.no_grad()
def evaluate(model, batches):
    """Mean loss over eval_batches valid batches (0: all), and bpc (charlm) or accuracy."""
    model.eval()
    total, right, count, k = 0.0, 0, 0, 0
    limit = batches.config["eval_batches"] or float("inf")
    while k < limit:
        batch = batches.valid(k)
        if batch is None:
            break
        inputs, targets = batch
        logits = model(inputs)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction="sum").item()
        right += (logits.argmax(-1) == targets).sum().item()
        count += targets.numel()
        k += 1
    model.train()
    loss = total / max(count, 1)
    return loss, (loss / math.log(2) if batches.kind == "charlm" else right / max(count, 1))


def make_optimizer(model, config, tensors, metadata, device):
    """torch.optim.AdamW with the run's hyperparameters; decay on parameters of 2 or more
    dimensions (train/optim.h). The checkpoint's moments and step, when it has them, are loaded,
    so the first update here is the one the C run would have taken next."""
    named = list(model.named_parameters())
    decay = [p for _, p in named if p.dim() >= 2]
    other = [p for _, p in named if p.dim() < 2]
    betas = (float(metadata.get("optim.beta1", 0.9)), float(metadata.get("optim.beta2", 0.999)))
    wd = float(metadata.get("optim.weight_decay", config["weight_decay"]))
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                             {"params": other, "weight_decay": 0.0}], lr=config["lr"],
                            betas=betas, eps=float(metadata.get("optim.eps", 1e-8)))
    if "optim.step" in metadata:
        for name, p in named:
            opt.state[p] = {"step": torch.tensor(float(metadata["optim.step"])),
                            "exp_avg": tensors["optim.m." + name].to(device, p.dtype),
                            "exp_avg_sq": tensors["optim.v." + name].to(device, p.dtype)}
    return opt


def save_run(path, model, opt, config, state):
    """A full checkpoint (train/checkpoint.h): the parameters, AdamW's moments and every metadata
    key, so that `cpool train --resume` (the float32 build) continues it too. state: step,
    tokens, elapsed_seconds and the C loop's generator rng.0 .. rng.3, carried through."""
    named = list(model.named_parameters())
    group = opt.param_groups[0]  # the decayed one
    moments = {}
    for name, p in named:
        moments["optim.m." + name] = opt.state[p]["exp_avg"]
        moments["optim.v." + name] = opt.state[p]["exp_avg_sq"]
    metadata = dict(state, **{
        "optim": "adamw", "optim.step": int(opt.state[named[0][1]]["step"]),
        "optim.beta1": repr(group["betas"][0]), "optim.beta2": repr(group["betas"][1]),
        "optim.eps": repr(group["eps"]), "optim.weight_decay": repr(group["weight_decay"]),
        "optim.decay": "".join("1" if p.dim() >= 2 else "0" for _, p in named)})
    save_state_dict(path, model, format_config(config), metadata, moments)


def train(args):
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tensors, metadata = read_safetensors(args.checkpoint)
    model, config_text, _ = load_checkpoint(args.checkpoint, dtype=torch.float32)
    model.to(device).train()
    config = load_config(config_text)
    config["steps"] = args.steps
    for key in ("batch", "data"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    step = int(metadata.get("step", 0))
    torch.manual_seed((config["seed"] + step) % 2**64)  # not the C run's batches: torch's own
    opt = make_optimizer(model, config, tensors, metadata, device)
    batches = Batches(config, device)
    words = [metadata.get(f"rng.{w}") for w in range(4)]
    if None in words:  # a file from `init`: any nonzero state for the C loop's generator
        words = [int(x) for x in torch.randint(1, 2**62, (4,))]
    state = {"step": step, "tokens": int(metadata.get("tokens", 0)),
             "elapsed_seconds": float(metadata.get("elapsed_seconds", 0.0)),
             **{f"rng.{w}": words[w] for w in range(4)}}
    per_step = config["batch"] * (config["seq_len"] if config["model"] == "charlm" else 1)
    out = args.out or args.checkpoint
    print(f"{config['model']}: {sum(p.numel() for p in model.parameters())} parameters on "
          f"{device}, steps {step} -> {args.steps}")
    start = time.time() - state["elapsed_seconds"]
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(config, step)
        inputs, targets = batches.sample()
        loss = model.loss(model(inputs), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config["clip"] > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config["clip"])
        opt.step()
        model.after_step()
        step += 1
        state.update(step=step, tokens=state["tokens"] + per_step,
                     elapsed_seconds=repr(time.time() - start))
        if step % 100 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}  loss {loss.item():.4f}  "
                  f"{time.time() - start:.0f} s", flush=True)
        if (config["eval_every"] and step % config["eval_every"] == 0) or step == args.steps:
            valid, metric = evaluate(model, batches)
            name = "bpc" if config["model"] == "charlm" else "accuracy"
            print(f"step {step}  valid loss {valid:.4f}  {name} {metric:.4f}", flush=True)
        if step % config["checkpoint_every"] == 0 or step == args.steps:
            save_run(out, model, opt, config, state)
    print(f"saved {out}")


# ----------------------------------------------------------------------------------------------
# Command line


def logits_command(triples):
    for checkpoint, input_path, output_path in triples:
        model, _, _ = load_checkpoint(checkpoint, dtype=torch.float64)
        model.eval()
        x = np.load(input_path)
        if isinstance(model, CharLM):
            if not np.array_equal(x, np.round(x)):
                raise ValueError(f"{input_path}: tokens must be integers")
            x = torch.from_numpy(x.astype(np.int64))
        else:
            x = torch.from_numpy(x.astype(np.float64))
        with torch.no_grad():
            np.save(output_path, model(x).numpy())


def init_command(triples):
    for config_path, seed, output_path in triples:
        with open(config_path) as f:
            text = f.read()
        torch.manual_seed(int(seed))
        save_state_dict(output_path, build_model(load_config(text)), text)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("logits", help="float64 logits: CKPT INPUT.npy OUT.npy, repeated")
    p.add_argument("files", nargs="+")
    p = sub.add_parser("init", help="a torch-initialised model: CONFIG SEED OUT, repeated")
    p.add_argument("files", nargs="+")
    p = sub.add_parser("train", help="continue training a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--steps", type=int, required=True, help="train until this step")
    p.add_argument("--out", help="where to save (default: over CKPT)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    p.add_argument("--batch", type=int, help="override the config's batch")
    p.add_argument("--data", help="override the config's data path")
    args = parser.parse_args(argv)
    if args.command == "train":
        return train(args)
    if len(args.files) % 3:
        parser.error(f"{args.command}: expected triples of files, got {len(args.files)} names")
    triples = [args.files[i:i + 3] for i in range(0, len(args.files), 3)]
    (logits_command if args.command == "logits" else init_command)(triples)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        sys.exit(f"contextpool.py: {e}")
