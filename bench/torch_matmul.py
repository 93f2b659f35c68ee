"""torch_matmul.py - PyTorch's matmul GFLOP/s on square float32 matrices, for bench_matmul.

    /usr/bin/python3 torch_matmul.py --sizes 256,512,1024 --threads 1,2

prints one line per (threads, n):  "threads n forward_gflops forward_backward_gflops", after a
comment line "# torch VERSION". Forward is c = a @ b (2 n^3 flops); forward+backward also runs
c.backward(ones), which computes da = dc b^T and db = a^T dc (2 n^3 + 4 n^3 = 6 n^3 flops).
Timings are the best of several runs after a warm-up, as in bench_matmul.c. If torch cannot be
imported it prints "unavailable" and bench_matmul shows n/a.
"""
import argparse
import sys
import time


def best_seconds(work, budget_seconds=0.4, min_runs=3, max_runs=200):
    """Best wall time of work() over repeated runs, after one warm-up run."""
    work()
    best, spent, runs = float("inf"), 0.0, 0
    while runs < min_runs or (spent < budget_seconds and runs < max_runs):
        start = time.perf_counter()
        work()
        elapsed = time.perf_counter() - start
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--threads", default="1")
    args = parser.parse_args()
    try:
        import torch
    except Exception:  # not installed, or broken: the bench prints n/a
        print("unavailable")
        return 0
    print(f"# torch {torch.__version__}")
    torch.manual_seed(0)
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for n in [int(s) for s in args.sizes.split(",")]:
            a = torch.rand(n, n) - 0.5
            b = torch.rand(n, n) - 0.5
            with torch.no_grad():
                forward = best_seconds(lambda: torch.matmul(a, b))
            a.requires_grad_(True)
            b.requires_grad_(True)
            ones = torch.ones(n, n)

            def forward_backward():
                a.grad = None
                b.grad = None
                torch.matmul(a, b).backward(ones)

            both = best_seconds(forward_backward)
            print(f"{threads} {n} {2 * n**3 / forward / 1e9:.2f} {6 * n**3 / both / 1e9:.2f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
