"""What reduced precision costs in accuracy and buys in speed: the demo model on real held-out daily bars.

For each dtype (CPU: float32, bfloat16; ``--device cuda``: float32, float16, bfloat16) the demo model
(``demo:daily``, its real trained weights) forecasts the same forecast origins of the real daily series it
was scored on (``training.demo.DAILY``: S&P 500, NASDAQ, MSFT), all inside their held-out last two years,
never trained on. Every dtype runs in its own subprocess (its timings and its memory are its own) and is
compared with float32:

- greedy (top_k 1, one path): share of generated (s1, s2) tokens equal to float32's, share equal at the
  first step (before a differing token is fed back and the paths part), share of origins whose whole greedy
  path is float32's, and the relative error of the greedy close against float32's (the tokenizer's decode
  in reduced precision, where the tokens agree);
- sampled (``--paths`` paths, the shared defaults T / top_p, the same seed, so the same uniforms): share of
  sampled tokens equal to float32's, the relative error of the mean close path against float32's mean close
  path (mean and max over origins and steps), and the CRPS of the sampled closes against the realised
  closes (``flows.metrics.crps_samples``, in percent of the last close, pooled over origins and horizons)
  with its change vs float32;
- wall time of the greedy and of the sampled forecast (median of ``--repeats``, after a warm-up call) and
  the speed ratio vs float32 (> 1: faster).

Reference rows, float32 with other seeds, show what sampling noise alone does to the mean path and the
CRPS: a dtype whose changes are well below it costs nothing a user could see.

    python benchmarks/bench_precision.py                      # CPU, 2 threads, float32 vs bfloat16
    python benchmarks/bench_precision.py --device cuda        # on a GPU: float32, float16, bfloat16
    python benchmarks/bench_precision.py --quick --threads 1  # a smoke run (6 origins)
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CPU_DTYPES = ("float32", "bfloat16")
CUDA_DTYPES = ("float32", "float16", "bfloat16")
FIELDS = ["open", "high", "low", "close", "volume", "amount"]
CLOSE = 3


def origins(n_origins: int, lookback: int, pred_len: int) -> list[tuple[str, int]]:
    """(symbol, i): the last observed bar i of each forecast origin, spread evenly over each real daily
    series' held-out period (bars i+1 .. i+pred_len all held out and present), the origins shared out
    between the series as evenly as possible."""
    from training.demo import DAILY, holdout_start, load_source

    out = []
    for k, symbol in enumerate(DAILY):
        want = n_origins // len(DAILY) + (k < n_origins % len(DAILY))
        if not want:
            continue
        df = load_source(symbol)
        first = int(np.searchsorted(df["timestamp"].to_numpy(), np.datetime64(holdout_start(df))))
        lo, hi = max(first - 1, lookback - 1), len(df) - 1 - pred_len
        if hi < lo:
            raise ValueError(f"{symbol}: no held-out origin for lookback {lookback}, pred_len {pred_len}")
        idx = np.unique(np.linspace(lo, hi, want).round().astype(int))
        out += [(symbol, int(i)) for i in idx]
    return out


def make_inputs(n_origins: int, lookback: int, pred_len: int):
    """The origins' ``Series``, their realised closes (N, P) and last closes (N,)."""
    from kronos_core import Series
    from training.demo import load_source

    frames, series, actual, last = {}, [], [], []
    for symbol, i in origins(n_origins, lookback, pred_len):
        if symbol not in frames:
            frames[symbol] = load_source(symbol)
        df = frames[symbol]
        values = df[FIELDS].to_numpy()
        stamps = df["timestamp"].to_numpy(dtype="datetime64[ns]")
        series.append(
            Series(
                symbol=f"{symbol}@{str(stamps[i])[:10]}",
                timestamps=stamps[i - lookback + 1 : i + 1],
                values=values[i - lookback + 1 : i + 1],
                future_timestamps=stamps[i + 1 : i + 1 + pred_len],
            )
        )
        actual.append(values[i + 1 : i + 1 + pred_len, CLOSE])
        last.append(values[i, CLOSE])
    return series, np.array(actual), np.array(last)


def cpu_name() -> str:
    """The CPU model and whether it has bfloat16 / float16 matrix instructions (without them torch converts
    to float32 around every matmul on a CPU)."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    if not flags:
        return f"{name} ({platform.machine()})"
    isa = sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_fp16", "avx512_fp16", "avx512f"))
    return f"{name} ({platform.machine()}, {'/'.join(isa) if isa else 'no avx512/amx'})"


def code_version() -> str:
    """The commit, and kronos_core's uncommitted changes if any: what these numbers measured."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "kronos_core"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"git {head}" + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def worker(args) -> None:
    import torch

    from kronos_core import KronosPredictor, SamplingParams

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    predictor = KronosPredictor.from_pretrained(
        args.model, args.tokenizer, device=args.device, dtype=args.dtype
    )
    series, _, _ = make_inputs(args.origins, args.lookback, args.pred_len)
    greedy = SamplingParams(top_k=1, top_p=1.0, sample_count=1, seed=args.seed)
    sampled = SamplingParams(sample_count=args.paths, seed=args.seed)
    with torch.no_grad():
        # warm-up (kernel selection, allocator, one-off start costs): both modes on a few series, untimed
        predictor.forecast(series[:2], args.pred_len, sampling=greedy, quantiles=())
        predictor.forecast(series[:2], args.pred_len, sampling=sampled, quantiles=())
        times: dict[str, list[float]] = {"greedy": [], "sampled": []}
        cpu: dict[str, list[float]] = {"greedy": [], "sampled": []}
        for _ in range(args.repeats):
            for mode, params in (("greedy", greedy), ("sampled", sampled)):
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                res = predictor.forecast(series, args.pred_len, sampling=params, quantiles=())
                sync()
                times[mode].append(time.perf_counter() - t0)
                cpu[mode].append(time.process_time() - c0)
                if mode == "greedy":
                    g = res
                else:
                    s = res
        out = dict(
            greedy_tokens=g.tokens[:, 0],
            greedy_close=g.mean[..., CLOSE],
            paths_close=s.paths[..., CLOSE],
            paths_tokens=s.tokens,
            mean_close=s.mean[..., CLOSE],
            finite=np.array(bool(np.isfinite(s.paths).all() and np.isfinite(g.paths).all())),
        )
        for k in range(args.noise_seeds):  # other seeds: the sampling-noise yardstick (untimed)
            other = SamplingParams(sample_count=args.paths, seed=args.seed + 1 + k)
            n = predictor.forecast(series, args.pred_len, sampling=other, quantiles=())
            out.update(
                {
                    f"noise{k}_paths_close": n.paths[..., CLOSE],
                    f"noise{k}_mean_close": n.mean[..., CLOSE],
                    f"noise{k}_paths_tokens": n.tokens,
                }
            )
    np.savez(args.out, **out)
    desc = predictor.describe()
    print(
        json.dumps(
            dict(
                greedy_s=float(np.median(times["greedy"])),
                sampled_s=float(np.median(times["sampled"])),
                greedy_cpu_s=float(np.median(cpu["greedy"])),
                sampled_cpu_s=float(np.median(cpu["sampled"])),
                dtype=desc["dtype"],
                label=desc["label"],
                max_context=desc["max_context"],
                threads=torch.get_num_threads(),
                gpu=torch.cuda.get_device_name(0) if cuda else None,
            )
        )
    )


def run_one(dtype: str, args, tmp: str, noise_seeds: int = 0) -> dict:
    out = Path(tmp) / f"{dtype}.npz"
    cmd = [sys.executable, __file__, "--worker", "--dtype", dtype, "--out", str(out)]
    for flag in ("device", "threads", "origins", "lookback", "pred_len", "paths", "repeats", "seed"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    cmd += ["--model", args.model, "--tokenizer", args.tokenizer]
    cmd += ["--noise-seeds", str(noise_seeds)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        err = proc.stderr.strip().splitlines()
        return {"dtype": dtype, "error": err[-1] if err else f"exit {proc.returncode}", "stderr": proc.stderr}
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["arrays"] = dict(np.load(out))
    return rec


def rel_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b) / np.abs(b.astype(np.float64))


def crps_pct(paths_close: np.ndarray, actual: np.ndarray, last: np.ndarray) -> float:
    """CRPS of the sampled closes (N, S, P) against the realised closes (N, P), in percent of the last close,
    pooled over origins and horizons (as ``bench_demo_model.py``)."""
    from flows.metrics import crps_samples

    rel = paths_close.astype(np.float64) / last[:, None, None] - 1.0  # (N, S, P)
    samples = rel.transpose(0, 2, 1).reshape(-1, rel.shape[1])  # (N * P, S)
    return 100 * crps_samples(samples, (actual / last[:, None] - 1.0).ravel())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    ap.add_argument("--dtypes", default=None, help="comma-separated (default: by device)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per worker (%(default)s)")
    ap.add_argument("--model", default="demo:daily", help="model ref (%(default)s)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer ref (default: the model's, for a demo ref)")
    ap.add_argument("--origins", type=int, default=36, help="forecast origins, shared by the series")
    ap.add_argument("--lookback", type=int, default=None, help="bars of context (default: the library's, 64)")
    ap.add_argument("--pred-len", type=int, default=None, help="steps (default: the library's, 16)")
    ap.add_argument("--paths", type=int, default=8, help="sample paths per origin (%(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per mode; the median is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--noise-seeds",
        type=int,
        default=3,
        help="float32 reference rows with seeds seed+1.. (sampling noise alone; %(default)s)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 6 origins, 1 repeat")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    from kronos_core import defaults

    args.lookback = args.lookback or defaults.LOOKBACK
    args.pred_len = args.pred_len or defaults.PRED_LEN
    if args.tokenizer is None:
        if not args.model.startswith("demo"):
            ap.error("--tokenizer is required unless --model is a demo model")
        args.tokenizer = args.model
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.origins, args.repeats = min(args.origins, 6), 1
    import torch

    from training.demo import DAILY, SOURCES

    cuda = args.device.startswith("cuda")
    dtypes = args.dtypes.split(",") if args.dtypes else list(CUDA_DTYPES if cuda else CPU_DTYPES)
    if dtypes[0] != "float32":
        dtypes = ["float32"] + [d for d in dtypes if d != "float32"]
    series, actual, last = make_inputs(args.origins, args.lookback, args.pred_len)
    n = len(series)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        recs = {d: run_one(d, args, tmp, args.noise_seeds if d == "float32" else 0) for d in dtypes}
    base = recs["float32"]
    if "error" in base:
        sys.exit(f"float32 failed: {base['error']}\n{base['stderr'][-3000:]}")
    b = base["arrays"]
    crps32 = crps_pct(b["paths_close"], actual, last)

    print(
        f"# machine: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}; device {args.device}; "
        f"threads {args.threads}; model {base['label']}, max_context {base['max_context']}"
    )
    print(f"# code: {code_version()}")
    if base.get("gpu"):
        print(f"# gpu: {base['gpu']}")
    print(
        f"# data: {n} forecast origins spread over the held-out last two years (never trained on) of "
        f"{', '.join(DAILY)}; lookback {args.lookback}, pred_len {args.pred_len}; greedy = top_k 1, 1 path; "
        f"sampled = {args.paths} paths, T {defaults.TEMPERATURE}, top_p {defaults.TOP_P}, seed {args.seed}; "
        f"time = median of {args.repeats} after a warm-up"
    )
    print(
        f"# load average (1 min) {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, on "
        f"{os.cpu_count()} cores: other work on the machine slows the wall times; 'by CPU time' compares "
        "each worker's own CPU seconds instead (with more than one thread it counts OpenMP spin-waits too)"
    )
    for sym in DAILY:
        src = SOURCES[sym]
        print(f"# {sym}: {src.origin}; licence: {src.licence}")
    if args.lookback + args.pred_len > base["max_context"]:
        print(
            f"# note: lookback + pred_len = {args.lookback + args.pred_len} > the model's context "
            f"{base['max_context']}: the window slides (exact cache re-encodes every step)"
        )
    print()
    cols = [
        "dtype",
        "greedy tokens = fp32",
        "1st-step tokens = fp32",
        "origins with fp32's greedy path",
        "greedy close rel. err (mean / max)",
        "sampled tokens = fp32",
        "mean path rel. err (mean / max)",
        "CRPS %",
        "CRPS vs fp32",
        "finite",
        "greedy s",
        "sampled s",
        "speed vs fp32 (greedy / sampled)",
        "by CPU time",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|---" + "|---:" * (len(cols) - 1) + "|")

    def line(cells: list[str]) -> None:
        print("| " + " | ".join(cells + [""] * (len(cols) - len(cells))) + " |", flush=True)

    def pct(v: float, digits: int = 1) -> str:
        return f"{100 * v:.{digits}f} %"

    rows = []
    for d in dtypes:
        r = recs[d]
        if "error" in r:
            line([d, f"FAILED: {r['error'][:200]}"])
            rows.append({"dtype": d, "error": r["error"]})
            continue
        a = r["arrays"]
        same = (a["greedy_tokens"] == b["greedy_tokens"]).all(-1)  # (N, P)
        g_err = rel_err(a["greedy_close"], b["greedy_close"])
        err = rel_err(a["mean_close"], b["mean_close"])
        crps = crps_pct(a["paths_close"], actual, last)
        row = dict(
            dtype=d,
            greedy_tokens_equal=float(same.mean()),
            first_step_tokens_equal=float(same[:, 0].mean()),
            greedy_paths_equal=float(same.all(axis=1).mean()),
            greedy_close_rel_err=float(g_err.mean()),
            greedy_close_rel_err_max=float(g_err.max()),
            sampled_tokens_equal=float((a["paths_tokens"] == b["paths_tokens"]).all(-1).mean()),
            mean_path_rel_err=float(err.mean()),
            mean_path_rel_err_max=float(err.max()),
            crps_pct=crps,
            crps_change=crps / crps32 - 1.0,
            finite=bool(a["finite"]),
            greedy_s=r["greedy_s"],
            sampled_s=r["sampled_s"],
            greedy_speed=base["greedy_s"] / r["greedy_s"],
            sampled_speed=base["sampled_s"] / r["sampled_s"],
            greedy_cpu_s=r["greedy_cpu_s"],
            sampled_cpu_s=r["sampled_cpu_s"],
            greedy_cpu_speed=base["greedy_cpu_s"] / r["greedy_cpu_s"],
            sampled_cpu_speed=base["sampled_cpu_s"] / r["sampled_cpu_s"],
        )
        rows.append(row)
        line(
            [
                d,
                pct(row["greedy_tokens_equal"]),
                pct(row["first_step_tokens_equal"]),
                pct(row["greedy_paths_equal"]),
                f"{pct(row['greedy_close_rel_err'], 3)} / {pct(row['greedy_close_rel_err_max'], 2)}",
                pct(row["sampled_tokens_equal"]),
                f"{pct(row['mean_path_rel_err'], 3)} / {pct(row['mean_path_rel_err_max'], 2)}",
                f"{crps:.4f}",
                f"{100 * row['crps_change']:+.2f} %",
                "yes" if row["finite"] else "NO",
                f"{r['greedy_s']:.3f}",
                f"{r['sampled_s']:.3f}",
                f"{row['greedy_speed']:.2f}x / {row['sampled_speed']:.2f}x",
                f"{row['greedy_cpu_speed']:.2f}x / {row['sampled_cpu_speed']:.2f}x",
            ]
        )
    for k in range(args.noise_seeds):
        noise_err = rel_err(b[f"noise{k}_mean_close"], b["mean_close"])
        noise_crps = crps_pct(b[f"noise{k}_paths_close"], actual, last)
        noise_same = float((b[f"noise{k}_paths_tokens"] == b["paths_tokens"]).all(-1).mean())
        line(
            [
                f"float32, seed {args.seed + 1 + k} (sampling noise)",
                "",
                "",
                "",
                "",
                pct(noise_same),
                f"{pct(noise_err.mean(), 3)} / {pct(noise_err.max(), 2)}",
                f"{noise_crps:.4f}",
                f"{100 * (noise_crps / crps32 - 1):+.2f} %",
            ]
        )
        rows.append(
            dict(
                dtype=f"float32 seed {args.seed + 1 + k}",
                sampled_tokens_equal=noise_same,
                mean_path_rel_err=float(noise_err.mean()),
                mean_path_rel_err_max=float(noise_err.max()),
                crps_pct=noise_crps,
                crps_change=noise_crps / crps32 - 1.0,
            )
        )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(settings=vars(args), origins=n, rows=rows), indent=2))
    failed = [r["dtype"] for r in rows if "error" in r]
    for d in failed:
        print(f"\n{d} failed:\n{recs[d]['stderr'][-3000:]}", file=sys.stderr)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
