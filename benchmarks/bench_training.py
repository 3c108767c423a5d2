"""Training throughput and memory: Ray Train (1 and 2 workers) vs the same loop in plain torch, and peak
memory with and without gradient checkpointing.

Side by side in one run, on the same windows (a synthetic daily market cut by ``training.data``), the same
weights (``random:<arch>``) and the same loop code (``training.loop.run_worker``):

- plain torch: ``fit_stage_local`` in this process (no Ray), 1 and 2 torch threads;
- Ray Train: ``fit_stage`` (``TorchTrainer``), 1 worker x 1 thread and 2 workers x 1 thread (DDP, gloo).

windows/s = training windows per second of the epoch's training part (steps, data, checkpoint), the mean
over the epochs after the first; Ray Train's start-up is reported separately as the wall-time difference.
Memory: each setting runs ``steps`` predictor steps in a fresh subprocess; "activations" = bytes of the
tensors autograd saves for the backward pass of one step (what checkpointing trades for recompute),
"peak RSS" = resident memory above the level before the first step (the weights, optimiser state
and gradients of the first step included, so it is an upper bound on what checkpointing can save).

    python benchmarks/bench_training.py                 # the README tables (about 10 minutes on 2 cores)
    python benchmarks/bench_training.py --quick         # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _config(url: str, out: str, args, workers: int):
    from training import TrainConfig

    return TrainConfig.model_validate(
        {
            "name": "bench",
            "data": {
                "input": {"url": url},
                "cutoff": args.end,
                "val_start": args.val_start,
                "validation": {"min_history": 16},
            },
            "windows": {"lookback": args.lookback, "pred_len": args.pred_len, "stride": args.stride},
            "base": {"model": f"random:{args.arch}", "tokenizer": f"random:{args.arch}"},
            "predictor": {
                "epochs": args.epochs,
                "batch_size": args.batch,
                "lr": 1e-4,
                "early_stopping_patience": None,
            },
            "compute": {"num_workers": workers, "torch_threads": 1},
            "checkpoint": {"every_n_steps": 10**6},  # one checkpoint per epoch
            "output": out,
        }
    )


def model_params(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def _steady(history: list[dict]) -> float:
    later = history[1:] or history
    return sum(h["windows_per_s"] for h in later) / len(later)


def throughput(args) -> list[dict]:
    import ray
    import torch

    from pipeline import write_synthetic_market
    from training.data import build_windows
    from training.job import fit_stage, fit_stage_local, load_base
    from training.loop import pack_weights

    tmp = Path(tempfile.mkdtemp(prefix="bench_training_"))
    market = write_synthetic_market(
        str(tmp / "bars"), n_symbols=args.symbols, n_bars=args.bars, end=args.end, broken=False, seed=0
    )
    ray.init(include_dashboard=False, log_to_driver=False, num_cpus=os.cpu_count())
    rows = []
    try:
        cfg1 = _config(market.url, str(tmp / "out"), args, 1)
        data = build_windows(cfg1)
        model, tok = load_base(cfg1)
        packed = {"model": pack_weights(model), "tokenizer": pack_weights(tok)}
        print(
            f"{len(data.train_ids)} training windows of {cfg1.windows.length} bars, batch {args.batch}, "
            f"{args.epochs} epochs, {args.arch} ({model_params(model):.1f} M params)",
            flush=True,
        )
        for name, workers, threads in (
            ("plain torch, 1 thread", 0, 1),
            ("Ray Train, 1 worker x 1 thread", 1, 1),
            ("Ray Train, 2 workers x 1 thread", 2, 1),
            ("plain torch, 2 threads", 0, 2),
        ):
            cfg = _config(market.url, str(tmp / "out"), args, max(1, workers))
            cfg = cfg.model_copy(
                update={"compute": cfg.compute.model_copy(update={"torch_threads": threads})}
            )
            t0 = time.perf_counter()
            if workers == 0:
                state = fit_stage_local("predictor", cfg.predictor, cfg, data, packed)
            else:
                state = fit_stage("predictor", cfg.predictor, cfg, data, packed, f"bench{workers}")
            wall = time.perf_counter() - t0
            train_s = sum(h["train_s"] for h in state["history"])
            rows.append(
                {
                    "setting": name,
                    "workers": workers,
                    "windows_per_s": _steady(state["history"]),
                    "steps": int(state["global_step"]),
                    "wall_s": wall,
                    "train_s": train_s,
                    "val_loss": state["history"][-1]["val_loss"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            torch.set_num_threads(os.cpu_count() or 1)
    finally:
        ray.shutdown()
    return rows


def memory_worker(args) -> None:
    """One setting in this (fresh) process: ``args.steps`` predictor steps; prints JSON."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_kronos_core import RssSampler

    from kronos_core import Kronos, KronosTokenizer
    from kronos_core.features import time_features
    from kronos_core.objectives import predictor_loss, tokenize

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Kronos.from_pretrained(f"random:{args.arch}").train()
    model.gradient_checkpointing = args.checkpointing
    tok = KronosTokenizer.from_pretrained(f"random:{args.arch}").eval()
    width = args.mem_lookback + args.pred_len
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(args.mem_batch, width, 6)), dtype=torch.float32)
    days = np.arange("2020-01-01", "2030-01-01", dtype="datetime64[D]")[:width].astype("datetime64[ns]")
    stamp = torch.as_tensor(time_features(days), dtype=torch.int64).expand(args.mem_batch, -1, -1)
    with torch.no_grad():
        s1, s2 = tokenize(tok, x)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    sampler = RssSampler()  # from before the first step: the allocator keeps what a step freed
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = predictor_loss(model, s1, s2, stamp)
    activations = saved[0]
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss, _ = predictor_loss(model, s1, s2, stamp)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step_s = (time.perf_counter() - t0) / args.steps
    print(
        json.dumps(
            {"activations_mib": activations / 2**20, "peak_rss_mib": sampler.stop_mib(), "step_s": step_s}
        )
    )


def memory(args) -> list[dict]:
    rows = []
    for ckpt in (False, True):
        cmd = [sys.executable, __file__, "--memory-worker", "--arch", args.arch, "--steps", str(args.steps)]
        cmd += ["--mem-lookback", str(args.mem_lookback), "--mem-batch", str(args.mem_batch)]
        cmd += ["--pred-len", str(args.pred_len), "--threads", "2"] + (["--checkpointing"] if ckpt else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append({"gradient_checkpointing": ckpt, **json.loads(out)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="mini")
    ap.add_argument("--symbols", type=int, default=24)
    ap.add_argument("--bars", type=int, default=300)
    ap.add_argument("--end", default="2024-06-28")
    ap.add_argument("--val-start", default="2024-05-01")
    ap.add_argument("--lookback", type=int, default=120)
    ap.add_argument("--pred-len", type=int, default=8)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="memory: training steps per setting")
    ap.add_argument("--mem-lookback", type=int, default=504)
    ap.add_argument("--mem-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="small settings for a smoke run")
    ap.add_argument("--part", choices=("all", "throughput", "memory"), default="all")
    args = ap.parse_args()
    if args.memory_worker:
        memory_worker(args)
        return
    if args.quick:
        args.symbols, args.bars, args.lookback, args.epochs, args.arch = 8, 200, 32, 2, "test"
        args.mem_lookback, args.mem_batch, args.steps = 64, 4, 2
    import ray
    import torch

    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}, "
        f"float32, arch {args.arch}",
        flush=True,
    )
    if args.part in ("all", "throughput"):
        report_throughput(throughput(args))
    if args.part in ("all", "memory"):
        report_memory(memory(args))


def report_throughput(thr: list[dict]) -> None:
    base = {r["setting"]: r for r in thr}
    plain, one, two = (
        base["plain torch, 1 thread"],
        base["Ray Train, 1 worker x 1 thread"],
        base["Ray Train, 2 workers x 1 thread"],
    )
    print("\n| setting | windows/s | vs plain torch 1 thread | steps | wall s (incl. start-up) |")
    print("|---|---:|---:|---:|---:|")
    for r in thr:
        ratio = r["windows_per_s"] / plain["windows_per_s"]
        print(
            f"| {r['setting']} | {r['windows_per_s']:.1f} | {ratio:.2f}x | {r['steps']} | {r['wall_s']:.1f} |"
        )
    print(
        f"\nRay Train overhead at 1 worker: {plain['windows_per_s'] / one['windows_per_s'] - 1:+.1%} "
        f"(windows/s); 2 workers / 1 worker: {two['windows_per_s'] / one['windows_per_s']:.2f}×; "
        f"Ray Train start-up ≈ {one['wall_s'] - one['train_s'] - (plain['wall_s'] - plain['train_s']):.1f} s"
    )


def report_memory(mem: list[dict]) -> None:
    print("\n| gradient checkpointing | saved activations MiB | peak RSS MiB | s / step |")
    print("|---|---:|---:|---:|")
    for r in mem:
        print(
            f"| {'on' if r['gradient_checkpointing'] else 'off'} | {r['activations_mib']:.0f} | "
            f"{r['peak_rss_mib']:.0f} | {r['step_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
