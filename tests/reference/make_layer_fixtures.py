#!/usr/bin/python3
"""Write the PyTorch reference fixtures that tests/test_layers_reference.c checks every layer against.

Run from anywhere with Debian's Python (numpy and torch 1.13; the C tests need neither):

    /usr/bin/python3 tests/reference/make_layer_fixtures.py

For every case this writes a directory tests/reference/layers/<case>/ holding exactly what
`cpool lab` reads and writes, so a case can also be replayed through the lab:

    x.npy                      the input (float64), or ids.npy (int64) for embedding
    params.safetensors         the parameters (F64), named as the module's state_dict
    gy.npy                     an upstream gradient dL/dy, the shape of y
    y.npy                      the output, computed by torch in float64
    attn.npy                   attention and block: the probabilities (B, heads, N, N)
    grad_in.npy                dL/dx = the vector-Jacobian product for gy (float inputs only)
    grad_params.safetensors    dL/dparameter (F64), same names as params.safetensors

and one line per case in tests/reference/layers/cases.txt:

    <case> <layer> key=value ...

with every key of the layer's `cpool lab` config given explicitly. It also writes
python_written.safetensors, a file made with struct + json by the format's rules only, for
tests/test_safetensors.c.

The modules below have exactly the parameter names of our layers (layers/*.h), so their
state_dicts are the params.safetensors files. Every input, parameter and gy is exactly
representable in float32 (rounded to float32, stored as float64), so the float32 build computes on
the very same numbers and its error measures float32 arithmetic, not the rounding of the inputs.
The seed is fixed: running this again rewrites the same files.
"""
import json
import math
import os
import shutil
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers")
SEED = 20220718

torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)


def f32(a):
    """Round to float32 and back: the value both builds see exactly."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


# ----------------------------------------------------------------------------------------------
# The modules: one per layer, parameter names as in layers/*.h.


class Attention(nn.Module):
    """layers/attention.h: qkv (3 dim, dim), proj (dim, dim); heads split the dim columns."""

    def __init__(self, dim, heads, causal):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        H, dh = self.heads, D // self.heads
        q, k, v = self.qkv(x).split(D, dim=-1)
        q, k, v = (t.reshape(B, N, H, dh).transpose(1, 2) for t in (q, k, v))  # (B, H, N, dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)  # (B, H, N, N)
        if self.causal:
            scores = scores.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), float("-inf"))
        p = scores.softmax(dim=-1)
        o = (p @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(o), p


class Ffn(nn.Module):
    """layers/ffn.h: fc2(GELU(fc1(x))), exact erf GELU."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class CausalConv1d(nn.Conv1d):
    """layers/conv.h with causal = 1: kernel-1 zeros on the left, none on the right."""

    def forward(self, x):
        x = F.pad(x, (self.kernel_size[0] - 1, 0))
        return F.conv1d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class Block(nn.Module):
    """layers/block.h: x + attn(ln1(x)), then + ffn(ln2(x))."""

    def __init__(self, dim, heads, ffn_hidden, causal):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = Ffn(dim, ffn_hidden or 4 * dim)

    def forward(self, x):
        a, p = self.attn(self.ln1(x))
        x = x + a
        return x + self.ffn(self.ln2(x)), p


def make_module(layer, c):
    """The torch module for a lab layer and its config (the keys of `cpool lab --help`)."""
    if layer == "linear":
        return nn.Linear(c["in"], c["out"], bias=bool(c["bias"]))
    if layer == "layernorm":
        return nn.LayerNorm(c["dim"], eps=c["eps"])
    if layer == "embedding":
        return nn.Embedding(c["vocab"], c["dim"])
    if layer == "attention":
        return Attention(c["dim"], c["heads"], c["causal"])
    if layer == "ffn":
        return Ffn(c["dim"], c["hidden"] or 4 * c["dim"])
    if layer == "conv1d":
        kind = CausalConv1d if c["causal"] else nn.Conv1d
        return kind(c["in"], c["out"], c["kernel"], stride=c["stride"],
                    padding=0 if c["causal"] else c["padding"], groups=c["groups"],
                    bias=bool(c["bias"]))
    if layer == "conv2d":
        return nn.Conv2d(c["in"], c["out"], c["kernel"], stride=c["stride"], padding=c["padding"],
                         groups=c["groups"], bias=bool(c["bias"]))
    if layer == "block":
        return Block(c["dim"], c["heads"], c["ffn_hidden"], c["causal"])
    raise ValueError(layer)


# Every key of every lab layer with its default: each case line lists them all.
DEFAULTS = {
    "linear": {"in": None, "out": None, "bias": 1},
    "layernorm": {"dim": None, "eps": 1e-5},
    "embedding": {"vocab": None, "dim": None},
    "attention": {"dim": None, "heads": 1, "causal": 0},
    "ffn": {"dim": None, "hidden": 0},
    "conv1d": {"in": None, "out": None, "kernel": None, "stride": 1, "padding": 0, "groups": 1,
               "causal": 0, "bias": 1},
    "conv2d": {"in": None, "out": None, "kernel": None, "stride": 1, "padding": 0, "groups": 1,
               "bias": 1},
    "block": {"dim": None, "heads": 1, "ffn_hidden": 0, "causal": 0},
}

# (case, layer, config, input shape). Small, odd sizes; B = 1 and N = 1; heads = 1; causal and not.
CASES = [
    ("linear_3d", "linear", {"in": 4, "out": 5}, (2, 3, 4)),
    ("linear_1x1_no_bias", "linear", {"in": 3, "out": 1, "bias": 0}, (1, 1, 3)),
    ("linear_2d_odd", "linear", {"in": 7, "out": 3}, (5, 7)),
    ("linear_1d", "linear", {"in": 3, "out": 2}, (3,)),
    ("layernorm_3d", "layernorm", {"dim": 5}, (2, 3, 5)),
    ("layernorm_eps", "layernorm", {"dim": 7, "eps": 1e-3}, (4, 7)),
    ("layernorm_1x1", "layernorm", {"dim": 3}, (1, 1, 3)),
    ("layernorm_dim1", "layernorm", {"dim": 1}, (2, 1)),
    ("embedding_2d", "embedding", {"vocab": 7, "dim": 4}, (2, 3)),
    ("embedding_repeats", "embedding", {"vocab": 3, "dim": 1}, (5,)),
    ("embedding_1x1", "embedding", {"vocab": 1, "dim": 2}, (1, 1)),
    ("attention_b2", "attention", {"dim": 4, "heads": 2}, (2, 3, 4)),
    ("attention_n1", "attention", {"dim": 3, "heads": 1}, (1, 1, 3)),
    ("attention_causal", "attention", {"dim": 6, "heads": 3, "causal": 1}, (2, 5, 6)),
    ("attention_causal_h1", "attention", {"dim": 4, "heads": 1, "causal": 1}, (1, 4, 4)),
    ("ffn_3d", "ffn", {"dim": 4, "hidden": 8}, (2, 3, 4)),
    ("ffn_hidden1", "ffn", {"dim": 3, "hidden": 1}, (1, 1, 3)),
    ("ffn_2d_default_hidden", "ffn", {"dim": 5}, (4, 5)),
    ("conv1d_padding", "conv1d", {"in": 3, "out": 4, "kernel": 3, "padding": 1}, (2, 3, 7)),
    ("conv1d_stride_groups", "conv1d", {"in": 4, "out": 6, "kernel": 2, "stride": 2, "groups": 2},
     (2, 4, 9)),
    ("conv1d_causal", "conv1d", {"in": 2, "out": 3, "kernel": 3, "causal": 1}, (2, 2, 6)),
    ("conv1d_causal_stride_no_bias", "conv1d",
     {"in": 3, "out": 2, "kernel": 4, "stride": 2, "causal": 1, "bias": 0}, (1, 3, 7)),
    ("conv1d_1x1", "conv1d", {"in": 1, "out": 1, "kernel": 1}, (1, 1, 1)),
    ("conv2d_padding", "conv2d", {"in": 3, "out": 2, "kernel": 3, "padding": 1}, (2, 3, 5, 4)),
    ("conv2d_stride_groups_no_bias", "conv2d",
     {"in": 4, "out": 2, "kernel": 2, "stride": 2, "groups": 2, "bias": 0}, (1, 4, 5, 5)),
    ("conv2d_1x1", "conv2d", {"in": 1, "out": 1, "kernel": 1}, (1, 1, 1, 1)),
    ("block_b2", "block", {"dim": 4, "heads": 2, "ffn_hidden": 8}, (2, 3, 4)),
    ("block_n1", "block", {"dim": 3, "heads": 1, "ffn_hidden": 5}, (1, 1, 3)),
    ("block_causal", "block", {"dim": 6, "heads": 3, "causal": 1}, (2, 5, 6)),
]


# ----------------------------------------------------------------------------------------------
# .safetensors by hand


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: float32 or float64 array}. What the Python writer does: tensors sorted by
    dtype size (largest first) then name, a compact JSON header with "__metadata__" first, padded
    with spaces to a multiple of 8 bytes."""
    dtype_name = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64"}
    order = sorted(tensors, key=lambda n: (-tensors[n].dtype.itemsize, n))
    header, offset, chunks = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name in order:
        a = tensors[name].astype(tensors[name].dtype.newbyteorder("<"), order="C")
        raw = a.tobytes()
        header[name] = {"dtype": dtype_name[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def read_safetensors(path):
    """{name: array}, metadata - the reader docs/lab.md shows."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    dtypes = {"F32": "<f4", "F64": "<f8"}
    arrays = {name: np.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]],
                                  dtype=dtypes[e["dtype"]]).reshape(tuple(e["shape"]))
              for name, e in header.items()}
    return arrays, metadata


def python_written_file():
    tensors = {
        "blocks.0.attn.qkv.weight": (np.arange(6, dtype=np.float32) * 0.5 - 1).reshape(3, 2),
        "scale": np.array(np.pi, dtype=np.float64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "bias": np.array([1.5, -2.25, 1e10], dtype=np.float64),
    }
    path = os.path.join(HERE, "python_written.safetensors")
    write_safetensors(path, tensors, {"format": "pt", "written_by": "make_layer_fixtures.py"})
    back, metadata = read_safetensors(path)
    assert all(np.array_equal(back[k], v) for k, v in tensors.items()) and metadata["format"] == "pt"


# ----------------------------------------------------------------------------------------------
# A case


def randomise(module):
    """torch's own initialisation, plus noise on LayerNorm (else weight 1 and bias 0 would not
    test their gradients' placement); every value rounded to float32."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                for p in (m.weight, m.bias):
                    p.add_(torch.from_numpy(rng.normal(0, 0.3, tuple(p.shape))))
        for p in module.parameters():
            p.copy_(torch.from_numpy(f32(p.numpy())))


def write_case(case, layer, given, shape, manifest):
    config = dict(DEFAULTS[layer], **given)
    assert all(v is not None for v in config.values()), case
    module = make_module(layer, config)
    randomise(module)
    directory = os.path.join(HERE, case)
    os.makedirs(directory)
    if layer == "embedding":
        x = torch.from_numpy(rng.integers(0, config["vocab"], shape).astype(np.int64))
        np.save(os.path.join(directory, "ids.npy"), x.numpy())
    else:
        x = torch.from_numpy(f32(rng.uniform(-2, 2, shape))).requires_grad_()
        np.save(os.path.join(directory, "x.npy"), x.detach().numpy())
    out = module(x)
    y, p = out if isinstance(out, tuple) else (out, None)
    gy = torch.from_numpy(f32(rng.uniform(-1, 1, tuple(y.shape))))
    y.backward(gy)

    write_safetensors(os.path.join(directory, "params.safetensors"),
                      {n: t.detach().numpy() for n, t in module.state_dict().items()})
    write_safetensors(os.path.join(directory, "grad_params.safetensors"),
                      {n: t.grad.numpy() for n, t in module.named_parameters()})
    np.save(os.path.join(directory, "gy.npy"), gy.numpy())
    np.save(os.path.join(directory, "y.npy"), y.detach().numpy())
    if p is not None:
        np.save(os.path.join(directory, "attn.npy"), p.detach().numpy())
    if layer != "embedding":
        np.save(os.path.join(directory, "grad_in.npy"), x.grad.numpy())
    keys = " ".join(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())
    manifest.append(f"{case} {layer} {keys}")


def main():
    # Start clean: everything in layers/ is generated by this script.
    shutil.rmtree(HERE, ignore_errors=True)
    os.makedirs(HERE)
    manifest = []
    for case in CASES:
        write_case(*case, manifest)
    python_written_file()
    with open(os.path.join(HERE, "cases.txt"), "w") as f:
        f.write("# Written by make_layer_fixtures.py (seed %d, torch %s): case layer key=value ...\n"
                % (SEED, torch.__version__))
        f.write("\n".join(manifest) + "\n")
    size = sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(HERE) for name in names)
    print(f"{len(manifest)} cases, {size / 1024:.0f} KB in {HERE}")


if __name__ == "__main__":
    main()
