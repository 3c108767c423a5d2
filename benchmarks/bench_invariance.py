"""What batch invariance costs: the same forecast with the batch-invariant kernels on (the default) and off.

    python benchmarks/bench_invariance.py                      # Kronos-small arch, 64 series x 8 paths, 256/24
    python benchmarks/bench_invariance.py --size mini --repeat 3

Both modes run in their own subprocesses, alternating (on, off, on, off, ...), on the same inputs and random
weights, sampled (T 1.0, top_p 0.9); the medians are compared. "Off" is the plain path the kernels replace
(one sgemm over whatever rows come, ``scaled_dot_product_attention``): equal up to float rounding, so a
few sampled tokens may differ between the modes (reported). Then a batch-invariance check in each mode: the
first series forecast alone vs inside the batch (bit-identical paths expected with the kernels on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from kronos_core import KronosPredictor, SamplingParams
    from kronos_core.invariant import set_batch_invariant
    from kronos_core.testing import synthetic_universe

    torch.set_num_threads(args.threads)
    pred = KronosPredictor.from_pretrained(
        f"random:{args.size}", f"random:{args.size}", max_context=args.context, batch_size=args.batch * args.paths
    )
    on = args.mode == "on"
    set_batch_invariant(pred.model, on)
    set_batch_invariant(pred.tokenizer, on)
    series = synthetic_universe(args.batch, args.lookback, args.lookback, args.pred_len, seed=11)
    sp = SamplingParams(temperature=1.0, top_k=0, top_p=0.9, sample_count=args.paths, seed=3)
    pred.forecast(series[:2], args.pred_len, sampling=SamplingParams(sample_count=2), quantiles=[0.5])  # warm-up
    t0 = time.perf_counter()
    res = pred.forecast(series, args.pred_len, sampling=sp)
    seconds = time.perf_counter() - t0
    alone = pred.forecast(series[:1], args.pred_len, sampling=sp)
    np.save(args.out, res.tokens)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "alone_tokens_equal": bool(np.array_equal(alone.tokens[0], res.tokens[0])),
                "alone_paths_equal": bool(np.array_equal(alone.paths[0], res.paths[0])),
            }
        )
    )


def run(mode: str, args, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--out", str(out)]
    for name in ("size", "batch", "paths", "lookback", "pred_len", "context", "threads"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--size", default="small", help="random:<size> architecture (default small)")
    ap.add_argument("--batch", type=int, default=64, help="series per call")
    ap.add_argument("--paths", type=int, default=8, help="sample paths per series")
    ap.add_argument("--lookback", type=int, default=256)
    ap.add_argument("--pred-len", type=int, default=24)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="runs per mode (medians compared)")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import numpy as np
    import torch

    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads, "
        f"float32, random:{args.size}, {args.batch} series x {args.paths} paths, lookback {args.lookback}, "
        f"pred {args.pred_len}, T 1.0 top_p 0.9"
    )
    import tempfile

    times: dict[str, list[float]] = {"on": [], "off": []}
    checks: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for mode in ("on", "off"):
                rec = run(mode, args, Path(tmp) / f"{mode}.npy")
                times[mode].append(rec["seconds"])
                checks[mode] = rec
                print(f"run {r + 1} {mode:>3}: {rec['seconds']:.2f} s", flush=True)
        tok_on, tok_off = np.load(Path(tmp) / "on.npy"), np.load(Path(tmp) / "off.npy")
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(
        f"\n| invariant kernels | median s | series/s | first series alone = in batch (tokens, paths) |\n"
        f"|---|---:|---:|---|\n"
        f"| on (default) | {on:.2f} | {args.batch / on:.2f} | "
        f"{checks['on']['alone_tokens_equal']}, {checks['on']['alone_paths_equal']} |\n"
        f"| off | {off:.2f} | {args.batch / off:.2f} | "
        f"{checks['off']['alone_tokens_equal']}, {checks['off']['alone_paths_equal']} |\n"
    )
    print(f"cost of invariance: {on / off - 1:+.1%} (on / off = {on / off:.3f})")
    print(f"tokens equal between the modes: {float((tok_on == tok_off).all(-1).mean()):.4f} of (series, path, step)")


if __name__ == "__main__":
    main()
