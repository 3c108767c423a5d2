"""Ray job vs the same predictor in-process, on the same synthetic market; streamed vs barrier stages; the
Iceberg commit time; peak RSS.

    python benchmarks/bench_pipeline.py --sizes 500 2000 --lookback 64 --pred-len 8 --samples 2

For each universe size: write a date-partitioned daily market, then
  * in-process: read the window with pandas, build ``Series`` for the assets the job forecasts, and call
    ``KronosPredictor.forecast`` once (torch threads = all cores);
  * Ray, twice: ``run_job`` end to end (read -> validate -> future -> forecast -> write data files ->
    Iceberg commit) on a local Ray with ``concurrency`` actors x ``num_cpus`` each (torch threads = num_cpus
    per actor) and one logical CPU beside them (as ``kronos-nightly`` starts it), once with stages 1-6a as
    one stream (the default) and once with the assets materialised before the actors start (``stream=False``,
    the job's behaviour before streaming).
Ratio = Ray job series/s / in-process series/s (in-process forecast wall / Ray wall; goal >= 0.85). Peak RSS
is the sum over this process and all its descendants (Ray's raylet, GCS and workers included), sampled every
0.2 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time

import numpy as np
import pandas as pd

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class PeakRSS:
    """Peak summed RSS of this process tree, sampled in a thread."""

    def __init__(self, period: float = 0.2):
        self.period, self.peak, self._stop = period, 0, threading.Event()

    @staticmethod
    def sample() -> int:
        """Sum of VmRSS over this process and its descendants, from /proc (Linux; no psutil needed)."""
        parent, rss = {}, {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    parent[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/status") as f:
                    rss[int(pid)] = next(
                        (int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:")), 0
                    )
            except (OSError, ValueError, IndexError):
                continue
        tree, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            kids = [p for p, pp in parent.items() if pp in frontier and p not in tree]
            tree.update(kids)
            frontier = kids
        return sum(rss.get(p, 0) for p in tree)

    def __enter__(self):
        self.peak = self.sample()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, self.sample())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def in_process(url: str, cfg, symbols: list[str], threads: int) -> tuple[float, float]:
    """(seconds to read+window, seconds to forecast) for ``symbols`` with the job's exact inputs."""
    import torch

    from kronos_core import KronosPredictor, Series
    from pipeline.future import run_grid, window_start

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    grid = run_grid(cfg.calendar, cfg.as_of, cfg.lookback, cfg.pred_len)
    start = pd.Timestamp(window_start(grid, cfg.as_of, cfg.lookback))
    df = pd.read_parquet(url, filters=[("timestamp", ">=", start), ("timestamp", "<=", cfg.as_of)])
    df = df[df["symbol"].isin(set(symbols))].sort_values(["symbol", "timestamp"])
    series = []
    for sym, g in df.groupby("symbol", sort=True):
        g = g.iloc[-cfg.lookback :]
        ts = g["timestamp"].to_numpy("datetime64[ns]")
        series.append(
            Series.from_frame(
                sym, g, timestamps=ts, future_timestamps=cfg.calendar.next_bars(ts[-1], cfg.pred_len, grid)
            )
        )
    t_read = time.perf_counter() - t0
    pred = KronosPredictor.from_spec(cfg.model)
    pred.batch_size = cfg.compute.batch_size
    t0 = time.perf_counter()
    pred.forecast(series, pred_len=cfg.pred_len, sampling=cfg.sampling, quantiles=cfg.output.quantiles)
    return t_read, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--model", default="random:mini")
    ap.add_argument("--lookback", type=int, default=32)
    ap.add_argument("--pred-len", type=int, default=4)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--skip-inproc", action="store_true")
    ap.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one small Ray run first (default on); --no-warmup measures a cold cluster",
    )
    args = ap.parse_args()

    import ray
    import torch

    from pipeline import JobConfig, run_job, write_synthetic_market
    from pipeline.config import UniverseConfig

    cores = os.cpu_count() or 1
    markets, cfgs, results = [], [], []
    for n in args.sizes:
        tmp = tempfile.mkdtemp(prefix=f"bench_pipeline_{n}_")
        m = write_synthetic_market(
            f"{tmp}/bars",
            n_symbols=n,
            n_bars=args.lookback + 20,
            min_bars=args.lookback,
            end="2024-06-28",
            seed=n,
        )
        markets.append(m)
        cfgs.append(
            JobConfig.model_validate(
                {
                    "as_of": "2024-06-28",
                    "lookback": args.lookback,
                    "pred_len": args.pred_len,
                    "input": {"url": m.url},
                    "output": {"url": f"{tmp}/out"},
                    "model": {"model": args.model, "tokenizer": args.model, "device": "cpu"},
                    "sampling": {"sample_count": args.samples, "seed": 0},
                    "validation": {"min_history": args.lookback // 2},
                    "compute": {
                        "concurrency": args.concurrency,
                        "num_cpus": max(1, cores // args.concurrency),
                        "batch_size": args.batch_size,
                    },
                }
            )
        )
        results.append({"n": n})
    # in-process first, before Ray exists, so its RSS is the predictor's alone
    if not args.skip_inproc:
        for m, cfg, row in zip(markets, cfgs, results, strict=True):
            with PeakRSS() as rss:
                t_read, t_fc = in_process(m.url, cfg, m.healthy, cores)
            row.update(ip_read=t_read, ip_fc=t_fc, ip_rss=rss.peak)
            print(f"in-process n={row['n']}: {row}", file=sys.stderr, flush=True)
    # one logical CPU beside the actors for the CPU stages (kronos-nightly starts local Ray the same way)
    ray.init(num_cpus=cores + 1, include_dashboard=False, log_to_driver=False)
    if args.warmup:  # one small run so worker processes exist: a long-lived cluster's steady state
        run_job(cfgs[0].model_copy(update={"universe": UniverseConfig(symbols=markets[0].healthy[:8])}))
    for cfg, row in zip(cfgs, results, strict=True):
        for mode, stream in (("stream", True), ("barrier", False)):
            with PeakRSS() as rss:
                s = run_job(cfg, stream=stream)
            row[mode] = dict(wall=s.wall_s, rss=rss.peak, stages=s.stage_s, forecast=s.assets_forecast)
            print(f"ray {mode} n={row['n']}: {row[mode]}", file=sys.stderr, flush=True)
        row["forecast"] = row["stream"]["forecast"]
    ray.shutdown()

    print(
        f"\nmachine: {cores}-core CPU ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, "
        f"dtype float32, model {args.model}, lookback {args.lookback}, pred_len {args.pred_len}, "
        f"sample_count {args.samples}, {args.concurrency} actors x {max(1, cores // args.concurrency)} CPU, "
        f"batch {args.batch_size}, warm-up run {'yes' if args.warmup else 'no'}"
    )
    hdr = (
        "assets",
        "in-proc series/s",
        "Ray streamed series/s",
        "ratio streamed",
        "Ray barrier series/s",
        "ratio barrier",
        "Iceberg commit s",
        "peak RSS Ray tree",
        "peak RSS in-proc",
    )
    print("| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
    for r in results:
        n_fc = r["forecast"]
        ip = n_fc / r["ip_fc"] if "ip_fc" in r else float("nan")
        st, ba = n_fc / r["stream"]["wall"], n_fc / r["barrier"]["wall"]
        print(
            f"| {r['n']} | {ip:.1f} | {st:.1f} | {st / ip:.2f} | {ba:.1f} | {ba / ip:.2f} | "
            f"{r['stream']['stages']['commit']:.2f} | {r['stream']['rss'] / 2**30:.2f} GiB | "
            f"{r.get('ip_rss', np.nan) / 2**30:.2f} GiB |"
        )
    for r in results:
        for mode in ("stream", "barrier"):
            stages = r[mode]["stages"]
            print(f"stages {mode} n={r['n']}: " + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))


if __name__ == "__main__":
    main()
