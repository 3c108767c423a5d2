"""What batch invariance costs: the same forecast with the batch-invariant kernels on (the default) and off.

    python benchmarks/bench_invariance.py                  # Kronos-small arch, 64 series x 8 paths, 256/24
    python benchmarks/bench_invariance.py --size mini --repeat 3
    python benchmarks/bench_invariance.py --baseline b78caa1   # also the code before invariance, same run

Both modes run in their own subprocesses, alternating (on, off, on, off, ...), on the same inputs and random
weights, sampled (T 1.0, top_p 0.9); the medians are compared. "Off" is the plain path the kernels replace
(one sgemm over whatever rows come, ``scaled_dot_product_attention``): equal up to float rounding, so a
few sampled tokens may differ between the modes (reported). ``--baseline REF`` adds a third column: the
same forecast with the code at git REF (a temporary worktree), e.g. the commit before batch invariance.
Then a batch-invariance check in each mode: the first series forecast alone vs inside the batch
(bit-identical paths expected with the kernels on)."""

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

    sys.path.insert(0, args.root)
    from kronos_core import KronosPredictor, SamplingParams
    from kronos_core.testing import synthetic_universe

    torch.set_num_threads(args.threads)
    size = f"random:{args.size}"
    pred = KronosPredictor.from_pretrained(
        size, size, max_context=args.context, batch_size=args.batch * args.paths
    )
    if args.mode != "baseline":
        from kronos_core.invariant import set_batch_invariant

        set_batch_invariant(pred.model, args.mode == "on")
        set_batch_invariant(pred.tokenizer, args.mode == "on")
    series = synthetic_universe(args.batch, args.lookback, args.lookback, args.pred_len, seed=11)
    sp = SamplingParams(temperature=1.0, top_k=0, top_p=0.9, sample_count=args.paths, seed=3)
    warm = SamplingParams(sample_count=2)
    pred.forecast(series[:2], args.pred_len, sampling=warm, quantiles=[0.5])  # warm-up
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


def run(mode: str, args, out: Path, root: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--out", str(out), "--root", str(root)]
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
    ap.add_argument("--mode", choices=["on", "off", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument(
        "--baseline", help="also run the code at this git ref (e.g. the commit before invariance)"
    )
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

    modes = ["on", "off"] + (["baseline"] if args.baseline else [])
    times: dict[str, list[float]] = {m: [] for m in modes}
    checks: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"on": ROOT, "off": ROOT}
        if args.baseline:
            roots["baseline"] = Path(tmp) / "baseline"
            git = ["git", "-C", str(ROOT), "worktree"]
            subprocess.run([*git, "add", "--detach", str(roots["baseline"]), args.baseline], check=True)
        try:
            for r in range(args.repeat):
                for mode in modes:
                    rec = run(mode, args, Path(tmp) / f"{mode}.npy", roots[mode])
                    times[mode].append(rec["seconds"])
                    checks[mode] = rec
                    print(f"run {r + 1} {mode:>8}: {rec['seconds']:.2f} s", flush=True)
        finally:
            if args.baseline:
                subprocess.run([*git, "remove", "--force", str(roots["baseline"])], check=False)
        tok_on, tok_off = np.load(Path(tmp) / "on.npy"), np.load(Path(tmp) / "off.npy")
    med = {m: statistics.median(times[m]) for m in modes}
    on, off = med["on"], med["off"]
    labels = {"on": "on (default)", "off": "off", "baseline": f"code at {args.baseline}"}
    print("\n| invariant kernels | median s | series/s | first series alone = in batch (tokens, paths) |")
    print("|---|---:|---:|---|")
    for m in modes:
        c = checks[m]
        print(
            f"| {labels[m]} | {med[m]:.2f} | {args.batch / med[m]:.2f} | "
            f"{c['alone_tokens_equal']}, {c['alone_paths_equal']} |"
        )
    print(f"\ncost of the invariant kernels: {on / off - 1:+.1%} (on / off = {on / off:.3f})")
    if args.baseline:
        print(
            f"default now vs {args.baseline}: {on / med['baseline'] - 1:+.1%} "
            f"(ratio {on / med['baseline']:.3f})"
        )
    same = float((tok_on == tok_off).all(-1).mean())
    print(f"tokens equal between on and off: {same:.4f} of (series, path, step)")


if __name__ == "__main__":
    main()
