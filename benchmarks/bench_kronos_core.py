"""Ours vs the official Kronos predict_batch, side by side on the same inputs, weights and threads.

Kronos-small architecture with random weights (the official init, saved by its save_pretrained and
loaded by our loader). Each (implementation, setting) runs in its own subprocess so peak memory is its
own. Greedy decoding, so tokens must be identical between official and our exact mode.

    python benchmarks/bench_kronos_core.py                  # CPU, 2 threads, the README table
    python benchmarks/bench_kronos_core.py --device cuda    # on a GPU
    python benchmarks/bench_kronos_core.py --quick          # small settings, for a smoke run
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
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [(400, 120, 1), (400, 120, 8), (128, 32, 1), (128, 32, 8)]
QUICK = [(128, 32, 1), (128, 32, 4)]


def make_weights(directory: Path) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.kronos_core.conftest import make_oracle

    torch.manual_seed(0)
    make_oracle("small", directory)


def inputs(lookback: int, pred_len: int, batch: int):
    import pandas as pd

    bars = pd.read_csv(ROOT / "tests/data/kronos_regression_input.csv", parse_dates=["timestamps"])
    frames, xts, yts = [], [], []
    for b in range(batch):
        s = (b * 200) % (len(bars) - lookback - pred_len)  # distinct windows of the real bars
        chunk = bars.iloc[s : s + lookback + pred_len].reset_index(drop=True)
        frames.append(chunk.iloc[:lookback].drop(columns=["timestamps"]))
        xts.append(chunk["timestamps"].iloc[:lookback])
        yts.append(chunk["timestamps"].iloc[lookback:].reset_index(drop=True))
    return frames, xts, yts


class RssSampler:
    """Peak resident memory above the level at start, sampled from /proc every 2 ms in a thread."""

    def __init__(self):
        import threading

        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def stop_mib(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        return (self.peak - self.start) / 2**20


def worker(args) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    weights = Path(args.weights)
    frames, xts, yts = inputs(args.lookback, args.pred_len, args.batch)
    greedy = dict(T=1.0, top_k=1, top_p=1.0, sample_count=1)
    captured = {}
    if args.impl == "official":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from kronos_finance._vendor import kronos_model as km
        model = km.Kronos.from_pretrained(str(weights / "small-model")).eval()
        tok = km.KronosTokenizer.from_pretrained(str(weights / "small-tokenizer")).eval()
        decode = tok.decode

        def recording_decode(x, half=False):
            captured["s1"], captured["s2"] = x[0], x[1]
            return decode(x, half=half)

        tok.decode = recording_decode
        pred = km.KronosPredictor(model, tok, device=args.device, max_context=512)
    else:
        from kronos_core import Kronos, KronosPredictor, KronosTokenizer

        model = Kronos.from_pretrained(weights / "small-model", device=args.device)
        tok = KronosTokenizer.from_pretrained(weights / "small-tokenizer", device=args.device)
        pred = KronosPredictor(model, tok, max_context=512, cache=args.impl)
    cuda = args.device.startswith("cuda")
    # warm-up on a short call (kernel loading, allocator, cuBLAS handles) so one-off start costs are not timed
    wf, wx, wy = inputs(16, 2, 1)
    with torch.no_grad():
        if args.impl == "official":
            pred.predict_batch(wf, wx, wy, 2, verbose=False, **greedy)
        else:
            pred.predict_batch(wf, wx, wy, 2, **greedy)
    sampler = RssSampler()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.no_grad():
        if args.impl == "official":
            out = pred.predict_batch(frames, xts, yts, args.pred_len, verbose=False, **greedy)
            tokens = np.stack(
                [
                    captured["s1"][:, -args.pred_len :].cpu().numpy(),
                    captured["s2"][:, -args.pred_len :].cpu().numpy(),
                ],
                -1,
            )
        else:
            from kronos_core import SamplingParams, Series

            series = [
                Series.from_frame(str(i), f, timestamps=x, future_timestamps=y)
                for i, (f, x, y) in enumerate(zip(frames, xts, yts, strict=True))
            ]
            res = pred.forecast(
                series, args.pred_len, sampling=SamplingParams(top_k=1, top_p=1.0, sample_count=1)
            )
            tokens = res.tokens[:, 0]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else sampler.stop_mib()
    np.save(args.tokens_out, tokens)
    close = (
        np.stack([f["close"].to_numpy() for f in out])
        if args.impl == "official"
        else np.asarray(res.mean[..., 3])
    )
    np.save(str(args.tokens_out).replace(".npy", "-close.npy"), close)
    print(json.dumps({"seconds": seconds, "peak_mib": peak}))


def run_one(impl, setting, args, weights, tmp) -> dict:
    lookback, pred_len, batch = setting
    out = Path(tmp) / f"{impl}-{lookback}-{pred_len}-{batch}.npy"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--impl",
        impl,
        "--lookback",
        str(lookback),
        "--pred-len",
        str(pred_len),
        "--batch",
        str(batch),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--weights",
        str(weights),
        "--tokens-out",
        str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"{impl} {setting} failed:\n{proc.stderr[-3000:]}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["tokens"] = out
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="exact")
    ap.add_argument("--lookback", type=int)
    ap.add_argument("--pred-len", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--weights")
    ap.add_argument("--tokens-out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="small settings only (smoke run)")
    ap.add_argument(
        "--settings",
        default=None,
        help="comma-separated LOOKBACKxPREDxBATCH, e.g. 400x120x64,128x32x256 (default: the README table)",
    )
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import numpy as np
    import torch

    settings = QUICK if args.quick else SETTINGS
    if args.settings:
        settings = [tuple(int(v) for v in item.split("x")) for item in args.settings.split(",")]
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"torch {torch.__version__}; "
        f"threads {args.threads}; device {args.device}; float32; "
        "Kronos-small architecture, random weights, greedy"
    )
    if args.device.startswith("cuda"):
        print(f"# gpu: {torch.cuda.get_device_name(0)}")
    header = (
        f"{'lookback/pred':>13} {'batch':>5} | {'official s':>10} {'exact s':>8} {'rolling s':>9} | "
        f"{'exact x':>7} {'rolling x':>9} | {'exact series/s':>14} | {'tokens':>9} | "
        f"{'extra MiB off/exact/roll':>24} | {'rolling = official':>18}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights"
        make_weights(weights)
        for setting in settings:
            rec = {
                impl: run_one(impl, setting, args, weights, tmp) for impl in ("official", "exact", "rolling")
            }
            off_tok = np.load(rec["official"]["tokens"])
            ex_tok = np.load(rec["exact"]["tokens"])
            same = np.array_equal(off_tok, ex_tok)
            # where greedy paths part: the share of equal tokens, the first step at which any series differs
            ex_eq = float((ex_tok == off_tok).all(-1).mean())
            differ = ~(ex_tok == off_tok).all(-1)  # (series, step)
            first = int(np.argmax(differ.any(0))) if differ.any() else None
            tok_cell = "identical" if same else f"{100 * ex_eq:.1f}% @{first}"
            # rolling mode's deviation from the official output: share of equal tokens, and the mean
            # absolute difference of the predicted close relative to the official close
            roll_tok = np.load(rec["rolling"]["tokens"])
            roll_eq = float((roll_tok == off_tok).all(-1).mean())
            c_off = np.load(str(rec["official"]["tokens"]).replace(".npy", "-close.npy"))
            c_roll = np.load(str(rec["rolling"]["tokens"]).replace(".npy", "-close.npy"))
            roll_dev = float(np.mean(np.abs(c_roll - c_off) / np.abs(c_off)))
            lb, pl, b = setting
            off, ex, ro = (rec[k]["seconds"] for k in ("official", "exact", "rolling"))
            row = {
                "lookback": lb,
                "pred_len": pl,
                "batch": b,
                "official_s": off,
                "exact_s": ex,
                "rolling_s": ro,
                "exact_speedup": off / ex,
                "rolling_speedup": off / ro,
                "tokens_identical": bool(same),
                "exact_tokens_equal": ex_eq,
                "exact_first_differing_step": first,
                "rolling_tokens_equal": roll_eq,
                "rolling_close_rel_dev": roll_dev,
                "peak_mib": {k: rec[k]["peak_mib"] for k in rec},
            }
            rows.append(row)
            print(
                f"{lb:>6}/{pl:<6} {b:>5} | {off:>10.2f} {ex:>8.2f} {ro:>9.2f} | "
                f"{off / ex:>6.1f}x {off / ro:>8.1f}x | "
                f"{b / ex:>14.2f} | {tok_cell:>9} | "
                f"{rec['official']['peak_mib']:>7.0f}/{rec['exact']['peak_mib']:.0f}/{rec['rolling']['peak_mib']:.0f}"
                f"{'':>8} | {100 * roll_eq:5.1f}% tok, {100 * roll_dev:.2f}% close",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if not all(r["tokens_identical"] for r in rows):
        # float32 arithmetic differs in the last bits between any two implementations; a greedy argmax
        # whose top two logits tie to that precision flips, and the path parts from there on
        print("\nexact-mode tokens differ from the official output where shown (share equal @ first step)")


if __name__ == "__main__":
    main()
