#!/usr/bin/python3
"""torch_bench.py - the rows of `cpool bench`, done in PyTorch: the same work, shapes, threads.

    /usr/bin/python3 bench/torch_bench.py [--threads T] [--repeats R] NAME...
    /usr/bin/python3 bench/torch_bench.py [--threads T] [--repeats R] -     (names on stdin)

The first line describes the run: {"torch_version", "blas", "threads"}. Then one JSON line per
row: {"name", "threads", "ms_median", "ms_min", "ms_max", "cpu_ms_median", "variant",
"variants"}. Each variant of a row gets one warm-up run, then R timed runs (default 5); the
row reports the wall times (milliseconds) of the variant with the smallest median CPU time (the
steadier measure on a shared machine; on one thread of an idle machine the two agree), and
"variants" maps every variant to its {"ms_median", "cpu_ms_median"}; "timed_once" lists the
variants too slow to repeat (time_variants). A row torch cannot run here is {"name", "threads",
"skipped": why}; one that failed, {"name", "threads", "error": why}. With "-" the names come
from stdin, one per line, each answered at once (`cpool bench --torch` keeps one process for
all its rows: starting Python and importing torch takes seconds). If torch cannot be imported,
the first line is {"unavailable": why} and the exit status is 1.

The caller sets OPENBLAS_NUM_THREADS=T (torch.set_num_threads does not bound the BLAS library's
own threads) and unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, so OpenBLAS picks its kernel.

The rows (tools/cmd_bench.c has the C side; the constants below are its constants):
  matmul_512, matmul_1024, matmul_MxKxN   c = a @ b, a (M, K), b (K, N), then c.backward(ones):
                                          the forward product and both backward ones
  charlm_step, charlm_step_cp, vit_step_cp  tools/torch/contextpool.py's build_model on the
                                          config cmd_bench's setup_model uses, torch.optim.AdamW
                                          (lr 1e-3, weight decay 0.01 on matrices): zero_grad,
                                          forward, cross-entropy, backward, step
  contextpool_fwd_bwd_N                   causal ContextPool on given w, s: x (1, N, 64), R = 24
  attention_fwd_bwd_N                     causal softmax attention, q, k, v (1, 4, N, 16)
Variants. ContextPool is written two ways a PyTorch user would write it, both timed:
  banded   A (N, N) = exp(-(i - j)^2 / (2 s_i^2)) w_j on the causal band (constants for the
           distances and the band made once), then one batched matmul (contextpool.py's way)
  unfold   the R + 1 causal neighbours of each position gathered with F.pad + Tensor.unfold,
           weighted and summed: R + 1 products per position instead of N
The charlm_step_cp row times the model with each (the pool's method swapped); the ViT's 2-d
pool is banded only: its 7 x 7 token grid lies inside the radius, so the banded matrix is
49 x 49, while unfold's windows would hold (2R + 1)^2 = 2401 taps per token (169 if clipped). Attention is masked_fill + softmax +
matmul ("masked_fill"), as torch 1.13 offers no fused attention.
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# cmd_bench.c's constants.
OP_DIM, ATTN_HEADS, POOL_RADIUS, POOL_EPS = 64, 4, 24, 1e-6
CHARLM_BATCH, CHARLM_LAYERS, VIT_BATCH, STEP_LR, WEIGHT_DECAY = 8, 4, 64, 1e-3, 0.01
MAX_BYTES = 4e9  # rows whose tensors would pass this are skipped, with the estimate
SLOW_FACTOR, SLOW_BUDGET_MS = 5, 2000  # time_variants: when a slow variant is timed once


def describe_blas():
    """The BLAS torch's matmul went to: the OpenBLAS config string when it is OpenBLAS."""
    names = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in os.path.basename(path):
                names.add(path)
    for path in sorted(names):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return "%s (core %s; %s)" % (lib.openblas_get_config().decode().split(" NO_")[0],
                                         lib.openblas_get_corename().decode(), path)
        except (OSError, AttributeError):
            continue
    return ", ".join(sorted(names)) or "unknown"


def time_once(work):
    """-> (wall ms, process CPU ms) of one run of work()."""
    start, cpu_start = time.perf_counter(), time.process_time()
    work()
    return 1e3 * (time.perf_counter() - start), 1e3 * (time.process_time() - cpu_start)


def time_variants(variants, repeats):
    """{variant: work} -> ({variant: (wall ms list, CPU ms list)}, [variants timed once]).
    Every variant's warm-up run first; then `repeats` rounds, each running every variant once
    (so that all see the same moments of a shared machine), except that a variant whose warm-up
    took over SLOW_FACTOR times the fastest warm-up, and whose repeats would take over
    SLOW_BUDGET_MS, keeps its warm-up time alone (it is not the one reported anyway: the banded
    N x N ContextPool at N = 8192 takes seconds where unfold takes a tenth of one)."""
    warm = {v: time_once(work) for v, work in variants.items()}
    fastest = min(wall for wall, _ in warm.values())
    once = [v for v in variants
            if warm[v][0] > SLOW_FACTOR * fastest and warm[v][0] * repeats > SLOW_BUDGET_MS]
    runs = {v: [warm[v]] if v in once else [] for v in variants}
    for _ in range(repeats):
        for v, work in variants.items():
            if v not in once:
                runs[v].append(time_once(work))
    results = {v: ([wall for wall, _ in r], [cpu for _, cpu in r]) for v, r in runs.items()}
    return results, once


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


# ----------------------------------------------------------------------------------------------
# The work of each row: a function that returns {variant: work()} (set up once, run many times)


def leaf(torch, shape, lo, hi):
    return (torch.rand(*shape) * (hi - lo) + lo).requires_grad_(True)


def backward_of(torch, output, inputs):
    """output.backward(ones), the inputs' gradients cleared first (cmd_bench seeds with ones)."""
    for t in inputs:
        t.grad = None
    output.backward(torch.ones_like(output))


def matmul_work(torch, m, k, n):
    """c = a b, a (M, K), b (K, N); backward: da = dc b^T, db = a^T dc. 6 M K N flops."""
    a, b = leaf(torch, (m, k), -0.5, 0.5), leaf(torch, (k, n), -0.5, 0.5)
    return {"matmul": lambda: backward_of(torch, a @ b, (a, b))}


def pool_banded(torch, n, radius):
    """-> pool(x, w, s): x (B, N, D), w (B, N), s (B, N) -> y (B, N, D),
    y_i = sum_j A_ij x_j / (sum_j A_ij + eps), A_ij = exp(-(i - j)^2 / (2 s_i^2)) w_j for
    i - R <= j <= i, as one (N, N) matrix; the distances and the band are made once, here."""
    d = torch.arange(n)[:, None] - torch.arange(n)[None, :]  # i - j
    dist2 = (d * d).float()
    band = ((d >= 0) & (d <= radius)).float()

    def pool(x, w, s):
        a = torch.exp(-dist2 / (2 * s * s)[:, :, None]) * band * w[:, None, :]  # (B, N, N)
        ones = torch.ones_like(x[:, :, :1])  # (B, N, 1)
        both = a @ torch.cat([x, ones], 2)  # (B, N, D + 1): numerator and normaliser
        return both[:, :, :-1] / (both[:, :, -1:] + POOL_EPS)
    return pool


def pool_unfold_channels_first(torch, F, xt, w, s, radius):
    """xt (B, D, N), w (B, N), s (B, N) -> (B, D, N): window k = 0..R of position i holds
    j = i - R + k (zeros on the left pad, where w = 0 too, so they drop out)."""
    xw = F.pad(xt, (radius, 0)).unfold(2, radius + 1, 1)  # (B, D, N, R + 1), a view
    ww = F.pad(w, (radius, 0)).unfold(1, radius + 1, 1)  # (B, N, R + 1)
    dist2 = (torch.arange(radius, -1, -1, dtype=xt.dtype)) ** 2  # (R + 1): (i - j)^2
    a = torch.exp(-dist2 / (2 * s * s)[:, :, None]) * ww  # (B, N, R + 1)
    num = (xw * a[:, None]).sum(3)  # (B, D, N); faster here than einsum or a batched matmul
    return num / (a.sum(2) + POOL_EPS)[:, None, :]


def contextpool_work(torch, F, n):
    x = leaf(torch, (1, n, OP_DIM), -1, 1)
    w, s = leaf(torch, (1, n), 0.1, 1), leaf(torch, (1, n), 0.5, 8)
    inputs = (x, w, s)
    banded = pool_banded(torch, n, POOL_RADIUS)

    def unfold(x, w, s):
        return pool_unfold_channels_first(torch, F, x.transpose(1, 2), w, s,
                                          POOL_RADIUS).transpose(1, 2)
    return {"banded": lambda: backward_of(torch, banded(x, w, s), inputs),
            "unfold": lambda: backward_of(torch, unfold(x, w, s), inputs)}


def attention_work(torch, n):
    """o = softmax(mask(q k^T / sqrt(dh))) v, causal, q, k, v (1, 4, N, 16)."""
    shape = (1, ATTN_HEADS, n, OP_DIM // ATTN_HEADS)
    q, k, v = (leaf(torch, shape, -1, 1) for _ in range(3))
    hidden = torch.ones(n, n, dtype=torch.bool).triu(1)  # j > i
    scale = 1 / math.sqrt(shape[-1])

    def run():
        scores = (q @ k.transpose(-2, -1)) * scale
        p = scores.masked_fill(hidden, float("-inf")).softmax(-1)
        backward_of(torch, p @ v, (q, k, v))
    return {"masked_fill": run}


def model_work(torch, F, cp, name):
    kind = "vit" if name.startswith("vit") else "charlm"
    config = cp.config_defaults(kind)
    config.update(lr=STEP_LR, weight_decay=WEIGHT_DECAY)
    if kind == "charlm":
        config.update(layers=CHARLM_LAYERS, pool="contextpool" if name.endswith("_cp") else "none")
    model = cp.build_model(config)
    opt = cp.make_optimizer(model, config, {}, {}, "cpu")
    if kind == "charlm":
        inputs = torch.randint(256, (CHARLM_BATCH, config["seq_len"]))
        targets = torch.randint(256, (CHARLM_BATCH, config["seq_len"]))
    else:
        inputs, targets = torch.rand(VIT_BATCH, 1, 28, 28), torch.randint(10, (VIT_BATCH,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.loss(model(inputs), targets)
        loss.backward()
        opt.step()
        model.after_step()
    pools = [m for m in model.modules() if isinstance(m, cp.ContextPool)]
    if not pools:
        return {"masked_fill": step}  # the attention's form, contextpool.py's
    if kind == "vit":
        return {"banded": step}

    def with_banded():  # ContextPool.pool as contextpool.py has it
        for m in pools:
            m.__dict__.pop("pool", None)
        step()

    def with_unfold():  # the instances' pool swapped (1-d, causal, stride 1: (B, D, N) both ways)
        for m in pools:
            m.pool = lambda xt, w, s, out_shape, in_shape, m=m: pool_unfold_channels_first(
                torch, F, xt, w, s, m.radius)
        step()
    return {"banded": with_banded, "unfold": with_unfold}


def row_bytes(name, n):
    """A rough peak of torch's tensors for the rows that grow as N^2 (4-byte floats)."""
    if name.startswith("attention"):  # scores, masked, P, and as many gradients: ~6 (H, N, N)
        return 6 * ATTN_HEADS * n * n * 4
    if name.startswith("contextpool"):  # banded: ~8 (N, N) matrices (constants, A, gradients)
        return 8 * n * n * 4
    return 0


def parse_matmul(name):
    """matmul_512 -> (512, 512, 512); matmul_2048x128x128 -> (2048, 128, 128) as M x K x N."""
    sides = [int(t) for t in name[len("matmul_"):].split("x")]
    return sides * 3 if len(sides) == 1 else sides


def make_work(torch, F, cp, name):
    if name.startswith("matmul_"):
        return matmul_work(torch, *parse_matmul(name))
    if name in ("charlm_step", "charlm_step_cp", "vit_step_cp"):
        return model_work(torch, F, cp, name)
    n = int(name.rsplit("_", 1)[1])
    if name.startswith("contextpool_fwd_bwd_"):
        return contextpool_work(torch, F, n)
    return attention_work(torch, n)


def known(name):
    if name in ("charlm_step", "charlm_step_cp", "vit_step_cp"):
        return True
    try:
        if name.startswith("matmul_"):
            return len(parse_matmul(name)) == 3
        prefix, n = name.rsplit("_", 1)
        return prefix in ("contextpool_fwd_bwd", "attention_fwd_bwd") and int(n) > 0
    except ValueError:
        return False


def measure(torch, F, cp, name, threads, repeats):
    row = {"name": name, "threads": threads}
    if not known(name):
        return dict(row, error="unknown row '%s'" % name)
    n = int(name.rsplit("_", 1)[1]) if "fwd_bwd" in name else 0
    if row_bytes(name, n) > MAX_BYTES:
        return dict(row, skipped="torch would need about %.1f GB > %.0f GB"
                    % (row_bytes(name, n) / 1e9, MAX_BYTES / 1e9))
    torch.manual_seed(1)
    try:
        results, once = time_variants(make_work(torch, F, cp, name), repeats)
    except (RuntimeError, MemoryError) as e:
        return dict(row, error="%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200]))
    best = min(results, key=lambda v: median(results[v][1]))  # by CPU time: steadier
    wall, cpu = results[best]
    row.update(ms_median=median(wall), ms_min=min(wall), ms_max=max(wall),
               cpu_ms_median=median(cpu), variant=best,
               variants={v: {"ms_median": round(median(r[0]), 4),
                             "cpu_ms_median": round(median(r[1]), 4)}
                         for v, r in results.items()})
    return dict(row, timed_once=once) if once else row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("names", nargs="+", help="row names, or - to read them from stdin")
    args = parser.parse_args()
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be >= 1")
    try:
        import torch
        import torch.nn.functional as F
        sys.path.insert(0, os.path.join(ROOT, "tools", "torch"))
        import contextpool as cp
    except Exception as e:  # not installed, or broken
        print(json.dumps({"unavailable": "%s: %s" % (type(e).__name__, e)}), flush=True)
        return 1
    torch.set_num_threads(args.threads)
    torch.ones(8, 8) @ torch.ones(8, 8)  # loads the BLAS library, for describe_blas
    print(json.dumps({"torch_version": torch.__version__, "blas": describe_blas(),
                      "threads": torch.get_num_threads()}), flush=True)
    names = (line.strip() for line in sys.stdin) if args.names == ["-"] else args.names
    for name in names:
        if name:
            print(json.dumps(measure(torch, F, cp, name, args.threads, args.repeats)),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
