"""Ray job vs the same predictor in-process, on the same synthetic market; streamed vs barrier stages; the
Iceberg commit time; peak RSS.

    python benchmarks/bench_pipeline.py --sizes 500 2000 --lookback 64 --pred-len 8 --samples 2

For each universe size: write a date-partitioned daily market, then
  * in-process: read the window with pandas, build ``Series`` for the assets the job forecasts, and call
    ``KronosPredictor.forecast`` once (torch threads = all cores);
  * Ray, three times: ``run_job`` end to end (read -> validate -> future -> forecast -> write data files ->
    Iceberg commit) on a local Ray with ``concurrency`` actors x ``num_cpus`` each (torch threads = num_cpus
    per actor) and one logical CPU beside them (as ``kronos-nightly`` starts it): the default (stages 1-6a as
    one stream, stage 1 as shard read tasks for windows up to 4M rows); with the assets materialised before
    the actors start (``stream=False``, the job's behaviour before streaming); and streamed with stage 1 as
    read tasks plus Ray Data's group-by shuffle (``compute.read_shards: 0``, the job's read before shard
    reads; still its read above 4M rows).
Ratio = Ray job series/s / in-process series/s (in-process forecast wall / Ray wall; goal >= 0.85). Peak RSS
is the sum over this process and all its descendants (Ray's raylet, GCS and workers included), sampled every
0.2 s. "Actor start" = ``concurrency`` actors started at once on the idle cluster, each importing torch and
loading the predictor as a forecast actor does (a new worker process per actor, every run): the fixed cost
that the in-process number does not pay; "ratio less actor start" takes it out of the Ray wall.
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


def median(items: list, key=None):
    """The middle item by ``key`` (the upper one of an even count)."""
    return sorted(items, key=key)[len(items) // 2]


def actor_start(spec, concurrency: int, num_cpus: float) -> float:
    """Seconds until ``concurrency`` fresh actors have each imported torch and loaded ``spec``."""
    import ray

    @ray.remote(num_cpus=num_cpus)
    class Probe:
        def __init__(self, spec):
            from kronos_core import KronosPredictor

            self.predictor = KronosPredictor.from_spec(spec)

        def ready(self) -> bool:
            return True

    t0 = time.perf_counter()
    actors = [Probe.remote(spec) for _ in range(concurrency)]
    ray.get([a.ready.remote() for a in actors])
    took = time.perf_counter() - t0
    for a in actors:
        ray.kill(a)
    return took


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
        "--repeat",
        type=int,
        default=1,
        help="run the in-process forecast and the default (streamed) Ray job this many times; medians are "
        "reported (this machine's timings move by 20 %% between runs)",
    )
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
            runs = []
            for _ in range(args.repeat):
                with PeakRSS() as rss:
                    runs.append((*in_process(m.url, cfg, m.healthy, cores), rss.peak))
            t_read, t_fc, peak = median(runs, key=lambda x: x[1])  # the median forecast
            row.update(ip_read=t_read, ip_fc=t_fc, ip_rss=peak, ip_all=[round(r[1], 2) for r in runs])
            print(f"in-process n={row['n']}: {row}", file=sys.stderr, flush=True)
    # one logical CPU beside the actors for the CPU stages (kronos-nightly starts local Ray the same way)
    ray.init(num_cpus=cores + 1, include_dashboard=False, log_to_driver=False)
    if args.warmup:  # one small run so worker processes exist: a long-lived cluster's steady state
        run_job(cfgs[0].model_copy(update={"universe": UniverseConfig(symbols=markets[0].healthy[:8])}))
    starts = [actor_start(cfgs[0].model, args.concurrency, cfgs[0].compute.num_cpus) for _ in range(3)]
    start_s = median(starts)
    print(f"actor start: {[round(x, 2) for x in starts]} s", file=sys.stderr, flush=True)
    modes = (("stream", True, None), ("barrier", False, None), ("groupby", True, 0))
    for cfg, row in zip(cfgs, results, strict=True):
        for mode, stream, shards in modes:
            c = cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"read_shards": shards})})
            runs = []
            for _ in range(args.repeat if mode == "stream" else 1):
                with PeakRSS() as rss:
                    s = run_job(c, stream=stream)
                runs.append(dict(wall=s.wall_s, rss=rss.peak, stages=s.stage_s, forecast=s.assets_forecast))
                runs[-1]["shards"] = s.read_shards
            row[mode] = median(runs, key=lambda x: x["wall"])
            row[mode]["all"] = [round(r["wall"], 2) for r in runs]
            print(f"ray {mode} n={row['n']}: {row[mode]}", file=sys.stderr, flush=True)
        row["forecast"] = row["stream"]["forecast"]
    ray.shutdown()

    print(
        f"\nmachine: {cores}-core CPU ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, "
        f"dtype float32, model {args.model}, lookback {args.lookback}, pred_len {args.pred_len}, "
        f"sample_count {args.samples}, {args.concurrency} actors x {max(1, cores // args.concurrency)} CPU, "
        f"batch {args.batch_size}, warm-up run {'yes' if args.warmup else 'no'}, "
        f"actor start {start_s:.1f} s (median of 3), medians of {args.repeat} run(s)"
    )
    hdr = (
        "assets",
        "in-proc series/s",
        "Ray streamed series/s",
        "ratio streamed",
        "Ray barrier series/s",
        "ratio barrier",
        "Ray group-by read series/s",
        "ratio group-by read",
        "ratio less actor start",
        "Iceberg commit s",
        "peak RSS Ray tree",
        "peak RSS in-proc",
    )
    print("| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
    for r in results:
        n_fc = r["forecast"]
        ip = n_fc / r["ip_fc"] if "ip_fc" in r else float("nan")
        st, ba, gb = (n_fc / r[m]["wall"] for m in ("stream", "barrier", "groupby"))
        print(
            f"| {r['n']} | {ip:.1f} | {st:.1f} | {st / ip:.2f} | {ba:.1f} | {ba / ip:.2f} | "
            f"{gb:.1f} | {gb / ip:.2f} | {r['ip_fc'] / (r['stream']['wall'] - start_s):.2f} | "
            f"{r['stream']['stages']['commit']:.2f} | {r['stream']['rss'] / 2**30:.2f} GiB | "
            f"{r.get('ip_rss', np.nan) / 2**30:.2f} GiB |"
        )
    for r in results:
        for mode, *_ in modes:
            stages = r[mode]["stages"]
            print(
                f"stages {mode} n={r['n']} (read shards {r[mode]['shards']}): "
                + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items())
            )


if __name__ == "__main__":
    main()
