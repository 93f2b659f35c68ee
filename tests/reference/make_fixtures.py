#!/usr/bin/python3
"""Write the PyTorch reference fixtures that tests/test_reference.c compares every op against.

Run from anywhere with Debian's Python (numpy and torch 1.13; the C tests need neither):

    /usr/bin/python3 tests/reference/make_fixtures.py

For each case of each op in autograd/ops.h this writes, under tests/reference/<op>/:

    <case>_<input>.npy       each input (float64; integer ids and targets as int64)
    <case>_y.npy             the op's output, computed by torch in float64
    <case>_gy.npy            a random upstream gradient, the shape of y
    <case>_grad_<input>.npy  d/d input of sum(y * gy), by torch autograd (the vector-Jacobian
                             product tape_backward_from computes)

and one line per case in tests/reference/cases.txt:

    <op> <case> key=value ... grads=<input>,<input>

where the keys are the op's parameters (axis, keepdim, stride, ...) and grads lists the
differentiable inputs, in the order the op takes them. It also writes tests/reference/npy/, a few
tiny files in every format variant npy.c reads (tests/test_npy.c).

Choices that make the comparison meaningful:
  - Every float input and every gy is exactly representable in float32 (drawn, rounded to
    float32, stored as float64), so the float32 build computes on the very same numbers and its
    error measures the op's float32 arithmetic only, not the rounding of the inputs.
  - Where our semantics intentionally differ from torch, the inputs avoid the difference:
      * max / max_all / maxpool2d: our gradient goes to the first maximum, torch's max_all splits
        it among ties: inputs are continuous random values, so there are no ties.
      * cross_entropy: we return 0 when every row is ignored, torch NaN: every case keeps at
        least one row.
      * relu, abs, clamp: the derivative at the kink (0, or the bounds) is a convention: inputs
        stay at least 0.05 away from it.
      * dropout: our mask comes from our own rng and cannot match torch's; only p = 0 (the
        identity) is compared with torch; case "mask_property" carries no y and the C test
        checks that y is x * m / (1 - p) and that the gradient is gy * m / (1 - p) for the same
        mask m.
      * softplus: torch returns x itself above its threshold 20 (we compute log(1 + e^x) stably);
        the two differ by e^-x < 2e-9 relative, far below the tolerances, so the large-x case
        checks that we do not overflow.
  - The seed is fixed: running this script again rewrites the same files.
"""
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20220717

torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(SEED)
manifest = []


# --- Inputs ---------------------------------------------------------------------------------


def f32(a):
    """Round to float32 and back: the value both builds see exactly."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def uniform(shape, lo=-2.0, hi=2.0):
    return f32(rng.uniform(lo, hi, shape))


def normal(shape, scale=1.0):
    return f32(rng.normal(0.0, scale, shape))


def away_from(shape, kinks, margin, lo=-2.0, hi=2.0):
    """Uniform in [lo, hi) with every value at least margin from each kink."""
    x = uniform(shape, lo, hi)
    for kink in kinks:
        near = np.abs(x - kink) < margin
        x[near] = f32(np.where(x[near] >= kink, kink + margin, kink - margin) + 0.5 * (x[near] - kink))
    for kink in kinks:
        assert np.all(np.abs(x - kink) >= margin * 0.999), "kink avoidance failed"
    return x


def ids(shape, high):
    return rng.integers(0, high, shape).astype(np.int64)


# --- Writing a case -------------------------------------------------------------------------


def fmt(value):
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def save(op, name, array_name, array):
    directory = os.path.join(HERE, op)
    os.makedirs(directory, exist_ok=True)
    array = np.array(array, order="C")  # (not ascontiguousarray: it turns 0-d into 1-d)
    if array.dtype.kind == "f":
        array = array.astype(np.float64)
    np.save(os.path.join(directory, f"{name}_{array_name}.npy"), array)


def case(op, name, fn, inputs, params=None, extra=None):
    """inputs: differentiable arrays, in the op's argument order; extra: arrays without a
    gradient (ids, targets, masks). fn(t, e) computes y from torch tensors t[name], e[name]."""
    params = params or {}
    extra = extra or {}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    extras = {k: torch.tensor(v) for k, v in extra.items()}
    y = fn(tensors, extras)
    gy = normal(tuple(y.shape))
    (y * torch.tensor(gy)).sum().backward()
    for k, v in inputs.items():
        save(op, name, k, v)
    for k, v in extra.items():
        save(op, name, k, v)
    save(op, name, "y", y.detach().numpy())
    save(op, name, "gy", gy)
    for k, t in tensors.items():
        assert t.grad is not None, f"{op}/{name}: no gradient reached {k}"
        save(op, name, "grad_" + k, t.grad.numpy())
    words = [op, name] + [f"{k}={fmt(v)}" for k, v in params.items()]
    words.append("grads=" + ",".join(inputs))
    manifest.append(" ".join(words))


# --- The ops --------------------------------------------------------------------------------


def binary_cases():
    shapes = [
        ("same", (3, 4), (3, 4)),
        ("row", (3, 4), (4,)),  # b broadcast over rows
        ("column", (3, 1), (3, 4)),  # a broadcast over columns
        ("both", (2, 1, 4), (3, 1)),  # each side broadcasts a different axis
        ("scalar", (), (2, 3)),  # a 0-d tensor with a matrix
        ("one", (1,), (5,)),
    ]
    ops = {
        "add": lambda t, e: t["a"] + t["b"],
        "sub": lambda t, e: t["a"] - t["b"],
        "mul": lambda t, e: t["a"] * t["b"],
        "div": lambda t, e: t["a"] / t["b"],
    }
    for op, fn in ops.items():
        for name, shape_a, shape_b in shapes:
            a = uniform(shape_a)
            # The divisor stays in [0.5, 2] in magnitude: away from 0, where 1/b blows up.
            b = away_from(shape_b, [0.0], 0.5) if op == "div" else uniform(shape_b)
            case(op, name, fn, {"a": a, "b": b})


def unary_cases():
    shape_sets = [(5,), (3, 4), (2, 3, 2)]

    def each_shape(op, fn, make, params=None):
        for shape in shape_sets:
            name = "x" + "x".join(str(s) for s in shape)
            case(op, name, fn, {"x": make(shape)}, params)

    each_shape("neg", lambda t, e: -t["x"], uniform)
    for c in (2.5, -0.75):
        case("scale", f"c{c}", lambda t, e, c=c: c * t["x"], {"x": uniform((3, 4))}, {"c": c})
    # Integer powers accept negative x; fractional ones need x > 0.
    for name, p, make in (
        ("square", 2.0, lambda s: uniform(s)),
        ("cube_negative", 3.0, lambda s: uniform(s, -2, -0.5)),
        ("sqrt", 0.5, lambda s: uniform(s, 0.1, 3)),
        ("inverse_power", -1.5, lambda s: uniform(s, 0.5, 3)),
        ("zero", 0.0, lambda s: uniform(s, 0.5, 3)),
    ):
        case("pow", name, lambda t, e, p=p: torch.pow(t["x"], p), {"x": make((3, 4))}, {"p": p})
    each_shape("exp", lambda t, e: torch.exp(t["x"]), uniform)
    each_shape("log", lambda t, e: torch.log(t["x"]), lambda s: uniform(s, 0.05, 5))
    each_shape("sqrt", lambda t, e: torch.sqrt(t["x"]), lambda s: uniform(s, 0.05, 5))
    each_shape("abs", lambda t, e: torch.abs(t["x"]), lambda s: away_from(s, [0.0], 0.05))
    for lo, hi in ((-0.5, 1.0), (0.0, 1.5)):
        x = away_from((4, 5), [lo, hi], 0.05, -1.0, 3.0)
        case("clamp", f"lo{lo}_hi{hi}", lambda t, e, lo=lo, hi=hi: torch.clamp(t["x"], lo, hi),
             {"x": x}, {"lo": lo, "hi": hi})
    each_shape("tanh", lambda t, e: torch.tanh(t["x"]), lambda s: uniform(s, -3, 3))
    each_shape("sigmoid", lambda t, e: torch.sigmoid(t["x"]), lambda s: uniform(s, -6, 6))
    each_shape("softplus", lambda t, e: F.softplus(t["x"]), lambda s: uniform(s, -4, 4))
    # Large |x|: exp(x) overflows in float32 beyond 88, so this checks the stable formula.
    case("softplus", "large", lambda t, e: F.softplus(t["x"]),
         {"x": f32([-100.0, -30.0, -15.5, 15.5, 30.0, 100.0])})
    each_shape("relu", lambda t, e: F.relu(t["x"]), lambda s: away_from(s, [0.0], 0.05))
    each_shape("gelu", lambda t, e: F.gelu(t["x"]), lambda s: uniform(s, -4, 4))


def masked_fill_cases():
    for name, x_shape, mask_shape, value in (
        ("same", (3, 4), (3, 4), -1e9),
        ("row_mask", (2, 3, 4), (4,), 0.0),  # one mask row for every row of x
        ("causal", (2, 4, 4), (4, 4), -1e4),  # the attention pattern: mask above the diagonal
    ):
        if name == "causal":
            mask = np.triu(np.ones(mask_shape), k=1)
        else:
            mask = (rng.uniform(size=mask_shape) < 0.4).astype(np.float64)
        case("masked_fill", name, lambda t, e, v=value: t["x"].masked_fill(e["mask"] != 0, v),
             {"x": uniform(x_shape)}, {"value": value}, extra={"mask": mask})


def dropout_cases():
    case("dropout", "p0_identity", lambda t, e: F.dropout(t["x"], p=0.0, training=True),
         {"x": uniform((3, 5))}, {"p": 0.0, "seed": 1})
    # No torch output: the C test checks the inverted-dropout property for our own mask.
    x = away_from((40, 25), [0.0], 0.05)
    save("dropout", "mask_property", "x", x)
    save("dropout", "mask_property", "gy", normal(x.shape))
    manifest.append("dropout mask_property p=0.25 seed=7 grads=x")


def matmul_cases():
    def mm(t, e, trans_a, trans_b):
        a = t["a"].transpose(-1, -2) if trans_a else t["a"]
        b = t["b"].transpose(-1, -2) if trans_b else t["b"]
        return torch.matmul(a, b)

    M, K, N = 3, 4, 5
    for name, a_shape, b_shape, trans_a, trans_b in (
        ("plain", (M, K), (K, N), 0, 0),
        ("trans_a", (K, M), (K, N), 1, 0),
        ("trans_b", (M, K), (N, K), 0, 1),
        ("trans_both", (K, M), (N, K), 1, 1),
        ("batched", (2, M, K), (2, K, N), 0, 0),
        ("batched_4d_trans_b", (2, 3, M, K), (2, 3, N, K), 0, 1),  # attention's q k^T
        ("shared_b", (2, M, K), (K, N), 0, 0),  # a linear layer on a batch
        ("shared_a", (M, K), (3, K, N), 0, 0),
        ("shared_b_trans", (2, K, M), (N, K), 1, 1),
        ("vector_like", (1, K), (K, 1), 0, 0),
    ):
        case("matmul", name, lambda t, e, ta=trans_a, tb=trans_b: mm(t, e, ta, tb),
             {"a": uniform(a_shape), "b": uniform(b_shape)},
             {"trans_a": trans_a, "trans_b": trans_b})


def reduce_cases():
    # Continuous random values: no ties, so the maximum is unique (our first-maximum rule and
    # torch's agree).
    torch_fns = {
        "sum": (lambda x, a, k: x.sum(dim=a, keepdim=k), lambda x: x.sum()),
        "mean": (lambda x, a, k: x.mean(dim=a, keepdim=k), lambda x: x.mean()),
        "max": (lambda x, a, k: x.max(dim=a, keepdim=k).values, lambda x: x.max()),
    }
    for op, (along, overall) in torch_fns.items():
        for name, shape, axis, keepdim in (
            ("rows", (3, 4), 1, 0),
            ("columns_keepdim", (3, 4), 0, 1),
            ("last_negative", (2, 3, 4), -1, 0),
            ("middle_keepdim", (2, 3, 4), 1, 1),
            ("first_negative", (2, 3, 4), -3, 0),
            ("vector", (7,), 0, 0),  # to a 0-d tensor
        ):
            case(op, name, lambda t, e, a=axis, k=keepdim: along(t["x"], a, bool(k)),
                 {"x": uniform(shape)}, {"axis": axis, "keepdim": keepdim})
        for name, shape in (("all_matrix", (3, 4)), ("all_3d", (2, 3, 2))):
            case(op, name, lambda t, e: overall(t["x"]), {"x": uniform(shape)}, {"axis": "all"})


def nn_cases():
    for op, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        for name, x in (
            ("vector", uniform((6,))),
            ("rows", uniform((4, 5), -3, 3)),
            ("batch", uniform((2, 3, 4))),
            ("large", f32(uniform((3, 4)) + 1000.0)),  # exp(1000) overflows: needs the max shift
            ("spread", uniform((2, 8), -30, 30)),  # probabilities near 0 and 1
        ):
            case(op, name, lambda t, e, fn=fn: fn(t["x"], dim=-1), {"x": x})

    def ce(t, e, ignore_index):
        logits = t["logits"]
        C = logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, C), e["targets"].reshape(-1),
                               ignore_index=ignore_index)

    for name, shape, ignore_index, ignored_rows in (
        ("rows", (5, 4), -100, []),
        ("sequence", (2, 3, 6), -100, []),  # (B, T, C) logits as a language model has
        ("some_ignored", (6, 3), -100, [1, 4]),
        ("ignore_class_2", (8, 4), 2, []),  # ignore_index is a real class id here
        ("large_logits", (3, 5), -100, []),
    ):
        C = shape[-1]
        rows = int(np.prod(shape[:-1]))
        targets = ids((rows,), C)
        if ignore_index == 2:
            targets[[0, 3, 5]] = 2  # some ignored, never all (torch would give NaN, we 0)
            targets[[1, 2]] = [0, 3]
        for r in ignored_rows:
            targets[r] = ignore_index
        assert np.any(targets != ignore_index)
        logits = uniform(shape, -3, 3) * (20 if name == "large_logits" else 1)
        case("cross_entropy", name, lambda t, e, ii=ignore_index: ce(t, e, ii),
             {"logits": f32(logits)}, {"ignore_index": ignore_index},
             extra={"targets": targets.reshape(shape[:-1])})

    for name, shape, has_weight, has_bias, eps in (
        ("affine", (4, 6), 1, 1, 1e-5),
        ("plain", (3, 5), 0, 0, 1e-5),
        ("weight_only", (2, 3, 4), 1, 0, 1e-5),
        ("bias_only", (3, 4), 0, 1, 1e-3),
        ("offset", (3, 8), 1, 1, 1e-5),  # mean 3, std 1: a one-pass variance would lose digits
    ):
        inputs = {"x": uniform(shape) + (3.0 if name == "offset" else 0.0)}
        D = shape[-1]
        if has_weight:
            inputs["weight"] = uniform((D,), 0.5, 1.5)
        if has_bias:
            inputs["bias"] = uniform((D,), -0.5, 0.5)
        inputs["x"] = f32(inputs["x"])
        case("layernorm", name,
             lambda t, e, D=D, eps=eps: F.layer_norm(t["x"], (D,), t.get("weight"),
                                                     t.get("bias"), eps),
             inputs, {"eps": eps, "weight": has_weight, "bias": has_bias})

    for name, V, D, id_shape in (
        ("vector", 7, 3, (5,)),
        ("batch", 6, 4, (2, 3)),  # ids repeat: their gradients add up in the same row
        ("single", 4, 2, ()),  # a 0-d id: result (D)
    ):
        token_ids = ids(id_shape, V)
        if name == "batch":
            token_ids[1, 2] = token_ids[0, 0]
        case("embedding", name, lambda t, e: F.embedding(e["ids"], t["weight"]),
             {"weight": uniform((V, D))}, {}, extra={"ids": token_ids})


def shape_cases():
    for name, shape, new_shape in (
        ("flatten", (2, 3, 4), (6, 4)),
        ("infer", (2, 3, 4), (4, -1)),
        ("to_scalar", (1, 1), ()),
        ("add_axes", (6,), (1, 2, 1, 3)),
    ):
        case("reshape", name, lambda t, e, s=new_shape: t["x"].reshape(s), {"x": uniform(shape)},
             {"shape": list(new_shape)})  # () is written "shape=" (no entries)
    for name, shape, d0, d1 in (
        ("matrix", (3, 4), 0, 1),
        ("last_two_negative", (2, 3, 4), -1, -2),
        ("outer", (2, 3, 4, 5), 0, 2),
        ("same_axis", (2, 3), 1, 1),
    ):
        case("transpose", name, lambda t, e, a=d0, b=d1: t["x"].transpose(a, b),
             {"x": uniform(shape)}, {"dim0": d0, "dim1": d1})
    for name, shape, perm in (
        ("rotate", (2, 3, 4), (2, 0, 1)),
        ("heads", (2, 3, 4, 5), (0, 2, 1, 3)),  # (B, T, H, D) -> (B, H, T, D)
        ("identity", (3, 2), (0, 1)),
    ):
        case("permute", name, lambda t, e, p=perm: t["x"].permute(p), {"x": uniform(shape)},
             {"perm": list(perm)})
    for name, shape, axis, start, end in (
        ("rows", (5, 3), 0, 1, 4),
        ("last_negative", (2, 3, 6), -1, 2, 5),
        ("middle", (2, 4, 3), 1, 0, 1),
        ("empty", (3, 4), 1, 2, 2),
        ("whole", (2, 3), 0, 0, 2),
    ):
        case("slice", name, lambda t, e, a=axis, s=start, n=end: t["x"].narrow(a, s, n - s),
             {"x": uniform(shape)}, {"axis": axis, "start": start, "end": end})
    for name, shapes, axis in (
        ("rows", [(2, 3), (1, 3), (3, 3)], 0),
        ("last_negative", [(2, 2, 1), (2, 2, 3)], -1),
        ("middle", [(2, 1, 3), (2, 2, 3)], 1),
        ("single", [(2, 3)], 0),
    ):
        inputs = {f"x{i}": uniform(s) for i, s in enumerate(shapes)}
        case("concat", name, lambda t, e, a=axis, n=len(shapes): torch.cat(
            [t[f"x{i}"] for i in range(n)], dim=a), inputs, {"n": len(shapes), "axis": axis})


def conv_cases():
    def conv1d(t, e, stride, pad_left, pad_right, groups):
        x = F.pad(t["x"], (pad_left, pad_right))
        return F.conv1d(x, t["w"], t.get("bias"), stride=stride, groups=groups)

    for name, B, C, L, O, K, stride, pad_left, pad_right, groups, has_bias in (
        ("basic", 2, 3, 7, 4, 3, 1, 0, 0, 1, 1),
        ("stride2_padded", 2, 2, 8, 3, 3, 2, 1, 1, 1, 1),
        ("causal", 1, 3, 6, 2, 4, 1, 3, 0, 1, 1),  # pad_left = K - 1: y[t] sees x[..t]
        ("groups", 2, 4, 5, 6, 2, 1, 0, 1, 2, 0),
        ("depthwise", 1, 3, 6, 3, 3, 1, 1, 1, 3, 1),
        ("stride_skips_tail", 1, 2, 9, 2, 2, 3, 0, 0, 1, 0),  # the last x sample is never used
    ):
        inputs = {"x": uniform((B, C, L)), "w": uniform((O, C // groups, K))}
        if has_bias:
            inputs["bias"] = uniform((O,))
        case("conv1d", name,
             lambda t, e, s=stride, pl=pad_left, pr=pad_right, g=groups: conv1d(t, e, s, pl, pr, g),
             inputs, {"stride": stride, "pad_left": pad_left, "pad_right": pad_right,
                      "groups": groups, "bias": has_bias})

    for name, B, C, H, W, O, K, stride, padding, groups, has_bias in (
        ("basic", 2, 2, 5, 4, 3, 3, 1, 0, 1, 1),
        ("padded", 1, 3, 4, 4, 2, 3, 1, 1, 1, 1),
        ("stride2", 2, 2, 7, 6, 2, 3, 2, 1, 1, 0),
        ("groups", 1, 4, 5, 5, 4, 2, 1, 0, 2, 1),
        ("pointwise", 2, 3, 3, 2, 4, 1, 1, 0, 1, 1),
    ):
        inputs = {"x": uniform((B, C, H, W)), "w": uniform((O, C // groups, K, K))}
        if has_bias:
            inputs["bias"] = uniform((O,))
        case("conv2d", name,
             lambda t, e, s=stride, p=padding, g=groups: F.conv2d(t["x"], t["w"], t.get("bias"),
                                                                stride=s, padding=p, groups=g),
             inputs, {"stride": stride, "padding": padding, "groups": groups, "bias": has_bias})

    for op, fn in (("avgpool2d", F.avg_pool2d), ("maxpool2d", F.max_pool2d)):
        for name, shape, kernel, stride in (
            ("k2s2", (2, 3, 4, 6), 2, 2),
            ("overlapping", (1, 2, 5, 5), 3, 1),  # windows share elements: gradients add up
            ("k3s2_tail", (1, 1, 6, 7), 3, 2),  # the last row/column is never in a window
        ):
            case(op, name, lambda t, e, fn=fn, k=kernel, s=stride: fn(t["x"], k, s),
                 {"x": uniform(shape)}, {"kernel": kernel, "stride": stride})


def conv1d_nlc_cases():
    """op_conv1d_nlc: x (B, L, C) channels last, w (O, C, K) as conv1d's -> (B, L_out, O); torch's
    conv1d between transposes. Drawn after every other case, so the earlier files keep their
    bytes."""
    def conv1d_nlc(t, pad_left, pad_right):
        x = F.pad(t["x"].transpose(1, 2), (pad_left, pad_right))
        return F.conv1d(x, t["w"], t.get("bias")).transpose(1, 2)

    for name, B, L, C, O, K, pad_left, pad_right, has_bias in (
        ("causal", 2, 7, 4, 3, 3, 2, 0, 1),  # the ContextPool predictor's first conv
        ("symmetric", 1, 6, 3, 2, 3, 1, 1, 1),
        ("right_only", 2, 5, 2, 3, 2, 0, 1, 0),
        ("pointwise", 2, 4, 3, 2, 1, 0, 0, 1),  # its second conv, 1x1
        ("kernel_over_length", 1, 2, 2, 2, 4, 3, 1, 1),  # L < K: every output row is an edge row
    ):
        inputs = {"x": uniform((B, L, C)), "w": uniform((O, C, K))}
        if has_bias:
            inputs["bias"] = uniform((O,))
        case("conv1d_nlc", name,
             lambda t, e, pl=pad_left, pr=pad_right: conv1d_nlc(t, pl, pr),
             inputs, {"pad_left": pad_left, "pad_right": pad_right, "bias": has_bias})


# --- Fixtures for the .npy reader itself (tests/test_npy.c) --------------------------------


def npy_format_files():
    directory = os.path.join(HERE, "npy")
    os.makedirs(directory, exist_ok=True)
    values = [[0.5, -1.25, 3.0], [4.0, -5.5, 0.001]]
    np.save(os.path.join(directory, "f4_2x3.npy"), np.array(values, np.float32))
    np.save(os.path.join(directory, "f8_2x3.npy"), np.array(values, np.float64))
    np.save(os.path.join(directory, "i4_3.npy"), np.array([-3, 0, 7], np.int32))
    np.save(os.path.join(directory, "i8_2x2.npy"), np.array([[1, -2], [40000, -70000]], np.int64))
    np.save(os.path.join(directory, "f8_scalar.npy"), np.array(2.75))
    np.save(os.path.join(directory, "f8_empty.npy"), np.zeros((2, 0, 3)))
    for version in (2, 3):
        with open(os.path.join(directory, f"f8_v{version}.npy"), "wb") as f:
            np.lib.format.write_array(f, np.array([1.5, 2.5, 3.5]), version=(version, 0))


# The directories this script writes (one per op, plus npy/); it removes only these before
# writing, so other fixtures in tests/reference (layers/) are left alone.
OPS = ("add sub mul div neg scale pow exp log sqrt abs clamp tanh sigmoid softplus relu gelu "
       "matmul sum mean max softmax log_softmax cross_entropy layernorm embedding reshape "
       "transpose permute slice concat masked_fill dropout conv1d conv2d avgpool2d maxpool2d "
       "conv1d_nlc").split()


def main():
    for directory in OPS + ["npy"]:
        shutil.rmtree(os.path.join(HERE, directory), ignore_errors=True)
    npy_format_files()
    binary_cases()
    unary_cases()
    masked_fill_cases()
    dropout_cases()
    matmul_cases()
    reduce_cases()
    nn_cases()
    shape_cases()
    conv_cases()
    conv1d_nlc_cases()
    with open(os.path.join(HERE, "cases.txt"), "w") as f:
        f.write("# Written by make_fixtures.py (seed %d, torch %s): op case key=value ... "
                "grads=inputs\n" % (SEED, torch.__version__))
        f.write("\n".join(manifest) + "\n")
    written = {line.split()[0] for line in manifest}
    assert written == set(OPS), f"ops without cases: {set(OPS) - written}"
    size = sum(os.path.getsize(os.path.join(root, name)) for directory in OPS + ["npy"]
               for root, _, names in os.walk(os.path.join(HERE, directory)) for name in names)
    print(f"{len(manifest)} cases, {size / 1024:.0f} KB of .npy files in {HERE}")


if __name__ == "__main__":
    main()
