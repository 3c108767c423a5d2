"""Serving benchmark: throughput and p50/p99 latency at several concurrencies, batching on vs off.

Starts a local Ray + Serve from the default Serve config (serving/config.py), one Forecaster replica, one
torch thread, then for each batching mode (switched live through the Forecaster's user_config) and
concurrency sends requests of one series each from an asyncio httpx client and prints a side-by-side table.

    .venv/bin/python benchmarks/bench_serving.py                  # random:small, lookback 32, pred_len 8
    .venv/bin/python benchmarks/bench_serving.py --model mini --lookback 64 --pred-len 16

Why these defaults: an on-demand request is small (one symbol, a short lookback, a few steps, one path),
so a model call is dominated by its per-step fixed costs (one decoder step of a batch of 1), which is
what cross-request batching amortises. Kronos-small makes the model call (~160 ms here) dominate the
HTTP/Serve costs per request (~30 ms of CPU on this 2-core box), as a real model does on a GPU replica;
with random:mini the pipeline itself caps throughput near 30 req/s and batching cannot show.
With long lookbacks or many sample paths a CPU replica is compute-bound and batching gains less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from kronos_core import FIELDS  # noqa: E402
from kronos_core.testing import synthetic_ohlcv  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_requests(n: int, lookback: int, pred_len: int, sample_count: int, model: str) -> list[dict]:
    out = []
    for i in range(n):
        df = synthetic_ohlcv(lookback + pred_len, freq="5min", seed=i % 64)
        ts = [str(t) for t in df["timestamps"]]
        s = {"symbol": f"SYM{i % 64:03d}", "timestamps": ts[:lookback], "future_timestamps": ts[lookback:]}
        s.update({f: df[f].iloc[:lookback].tolist() for f in FIELDS})
        out.append(
            {
                "series": [s],
                "pred_len": pred_len,
                "model": model,
                "sampling": {"sample_count": sample_count, "seed": 0},
                "quantiles": [0.1, 0.5, 0.9],
            }
        )
    return out


async def run_load(url: str, reqs: list[dict], concurrency: int) -> tuple[float, list[float], int]:
    """(wall seconds, per-request latencies in s, errors): ``concurrency`` clients in closed loop."""
    lat: list[float] = []
    errors = 0
    queue = list(reqs)
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency)
    ) as c:

        async def client():
            nonlocal errors
            while queue:
                req = queue.pop()
                t = time.perf_counter()
                r = await c.post("/v1/forecast", json=req)
                lat.append(time.perf_counter() - t)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - t0, lat, errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="small", choices=["test", "mini", "small"])
    p.add_argument("--lookback", type=int, default=32)
    p.add_argument("--pred-len", type=int, default=8)
    p.add_argument("--sample-count", type=int, default=1)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument(
        "--requests-per-client", type=int, default=6, help="requests = max(min, this × concurrency)"
    )
    p.add_argument("--min-requests", type=int, default=48)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    a = p.parse_args()

    import ray
    import torch
    from ray import serve

    from serving.config import DEFAULT_MODELS
    from serving.deploy import deploy, load_serve_config, override

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}},
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    one = {"num_replicas": 1, "autoscaling_config": None}
    modes = {
        "on": {"max_batch_size": a.max_batch_size, "batch_wait_timeout_s": a.batch_wait_ms / 1000},
        "off": {"max_batch_size": 1, "batch_wait_timeout_s": 0.0},
    }
    models = {
        k: {"model": v.model, "tokenizer": v.tokenizer, "device": "cpu"} for k, v in DEFAULT_MODELS.items()
    }
    base = override(
        load_serve_config(),
        host="127.0.0.1",
        port=port,
        args={"default_model": a.model, "torch_threads": 1, "models": models},
        forecaster={**one, "max_ongoing_requests": max(64, a.max_batch_size)},
        ingress=one,
    )
    results: dict[tuple[str, int], dict] = {}
    try:
        for mode, batching in modes.items():
            deploy(override(base, batching=batching))
            warm = make_requests(8, a.lookback, a.pred_len, a.sample_count, a.model)
            asyncio.run(run_load(url, warm, 8))  # load the model, warm the code paths
            for c in a.concurrency:
                n = max(a.min_requests, a.requests_per_client * c)
                reqs = make_requests(n, a.lookback, a.pred_len, a.sample_count, a.model)
                before = httpx.get(f"{url}/v1/stats").json()
                wall, lat, errors = asyncio.run(run_load(url, reqs, c))
                after = httpx.get(f"{url}/v1/stats").json()
                batches = max(1, after["batches"] - before["batches"])
                ms = np.array(lat) * 1000
                results[mode, c] = {
                    "rps": n / wall,
                    "p50": float(np.percentile(ms, 50)),
                    "p99": float(np.percentile(ms, 99)),
                    "errors": errors,
                    "n": n,
                    "mean_batch": (after["jobs"] - before["jobs"]) / batches,
                }
                r = results[mode, c]
                print(
                    f"batching {mode:3s} c={c:2d}: {r['rps']:7.1f} req/s  p50 {r['p50']:7.1f} ms  "
                    f"p99 {r['p99']:7.1f} ms  mean batch {r['mean_batch']:.1f}  errors {errors}/{n}",
                    flush=True,
                )
    finally:
        serve.shutdown()
        ray.shutdown()

    print(
        f"\nmodel random:{a.model}, lookback {a.lookback}, pred_len {a.pred_len}, "
        f"sample_count {a.sample_count}; "
        f"1 Forecaster replica, 1 torch thread, float32, torch {torch.__version__}, {os.cpu_count()} CPUs; "
        f"batching on = max_batch_size {a.max_batch_size}, wait {a.batch_wait_ms:g} ms\n"
    )
    print(
        "| concurrency | req/s off | req/s on | throughput on/off | p50 ms off | p50 ms on "
        "| p99 ms off | p99 ms on "
        "| mean batch on | errors |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in a.concurrency:
        off, on = results["off", c], results["on", c]
        print(
            f"| {c} | {off['rps']:.1f} | {on['rps']:.1f} | **{on['rps'] / off['rps']:.2f}×** | "
            f"{off['p50']:.0f} | "
            f"{on['p50']:.0f} | {off['p99']:.0f} | {on['p99']:.0f} | {on['mean_batch']:.1f} | "
            f"{off['errors'] + on['errors']} |"
        )


if __name__ == "__main__":
    main()
