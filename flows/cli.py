"""``kronos-nightly``: the nightly flow end to end on embedded defaults, no server needed.

With no arguments it writes a synthetic market to ``./demo_data/market`` (once; reused afterwards), then runs
the nightly flow for two cutoffs ``pred_len`` sessions apart, so the second run scores the first run's matured
forecasts, on Prefect's ephemeral API, local Ray and the demo model shipped in the package (``demo``: trained
by this project on a few public daily series, not the published Kronos; pass ``--model``/``--tokenizer`` with
a local checkpoint dir or a hub id for real forecasts, ``random:<size>`` for a fast smoke run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from kronos_core import defaults
from kronos_core.demo import DEMO_NOTE, demo_model, is_demo_ref

__all__ = [
    "main",
    "demo_cutoffs",
    "process_env",
    "prefect_home_for",
    "runs_message",
    "DEMO_MODEL",
    "DEMO_LOOKBACK",
    "DEMO_PRED_LEN",
]

# the demo's own values (kronos_core.defaults.EXCEPTIONS says why they differ from the shared defaults)
DEMO_MODEL, DEMO_LOOKBACK, DEMO_PRED_LEN = defaults.MODEL, defaults.LOOKBACK, 5
# seconds the ephemeral Prefect API may take to start (Prefect's default, 20, is too short on a busy machine)
EPHEMERAL_STARTUP_TIMEOUT_S = 300
DEFAULT_DATA_DIR = "./demo_data"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_LOCAL = os.path.join(REPO, "scripts", "start_local.sh")  # absent when installed without the checkout
LOCAL_UI = "http://127.0.0.1:4200"  # where scripts/start_local.sh (no port given) serves the UI

RANDOM_NOTE = (
    "RANDOM WEIGHTS: '{ref}' is an untrained model for demos and tests; its forecasts are noise. "
    "Use --model/--tokenizer with a local checkpoint dir or a hub id (e.g. NeoQuasar/Kronos-small)."
)


def demo_cutoffs(sessions: list, pred_len: int, runs: int) -> list:
    """``runs`` cutoffs ending at the last session, ``pred_len`` sessions apart (each run's forecasts have
    matured by the next cutoff)."""
    sessions = sorted(sessions)
    idx = [len(sessions) - 1 - k * pred_len for k in range(runs)]
    return [sessions[i] for i in sorted(i for i in idx if i >= 0)]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="kronos-nightly", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help="demo root: market/, output/ and prefect_home/ (the Prefect runs, unless $PREFECT_HOME is set) "
        "go under it",
    )
    ap.add_argument("--input-url", help="market to read instead of the generated one (local or s3://)")
    ap.add_argument("--output-url", help="forecast store root (default <data-dir>/output)")
    ap.add_argument("--symbols", type=int, default=300, help="assets in the generated market")
    ap.add_argument("--bars", type=int, default=400, help="daily bars per asset in the generated market")
    ap.add_argument("--regenerate", action="store_true", help="rewrite the generated market")
    ap.add_argument(
        "--refresh-stale",
        action="store_true",
        help="rewrite the generated market if it ends before the last completed session "
        "(so a served run with the default as_of finds its data)",
    )
    ap.add_argument("--prepare-only", action="store_true", help="write the market if needed, then exit")
    ap.add_argument(
        "--model",
        default=DEMO_MODEL,
        help="demo, hub id, local dir or random:<test|mini|small|base> (%(default)s)",
    )
    ap.add_argument(
        "--tokenizer", default=None, help="defaults to the model's own for demo and random:, else required"
    )
    ap.add_argument("--lookback", type=int, default=DEMO_LOOKBACK)
    ap.add_argument("--pred-len", type=int, default=DEMO_PRED_LEN)
    ap.add_argument("--samples", type=int, default=defaults.SAMPLE_COUNT, help="sample paths per asset")
    ap.add_argument(
        "--as-of",
        action="append",
        help="cutoff date(s); default: the last session and one pred_len earlier (repeatable)",
    )
    ap.add_argument("--runs", type=int, default=2, help="cutoffs when --as-of is not given")
    ap.add_argument("--ray-address", default=None, help="existing Ray cluster; default: local Ray")
    ap.add_argument("--concurrency", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    return ap


def prefect_home_for(data_dir: str) -> str:
    """A data dir's Prefect home: ``<data-dir>/prefect_home`` (absolute), as in scripts/start_local.sh."""
    return os.path.join(os.path.abspath(data_dir), "prefect_home")


def process_env(environ, data_dir: str = DEFAULT_DATA_DIR) -> None:
    """The main job's process settings, set before Prefect and Ray are imported, each only where the user has
    not set it: the Prefect home ``<data-dir>/prefect_home``, the one scripts/start_local.sh serves the UI
    from, so the runs recorded here show up there (not Prefect's own default ``~/.prefect``); no telemetry
    from a local demo; a local single-user Ray without token auth (Ray 2.60 turns it on by default); and time
    for Prefect's ephemeral API to start (its own limit, 20 s, is less than a fresh PREFECT_HOME takes to
    create and migrate its SQLite database on a busy 2-core machine; 16 s when quiet).
    """
    if not environ.get("PREFECT_HOME"):
        environ["PREFECT_HOME"] = prefect_home_for(data_dir)
    environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT_S))
    environ.setdefault("RAY_AUTH_MODE", "disabled")
    environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def runs_message(
    data_dir: str,
    prefect_home: str,
    api_url: str | None = None,
    ui_url: str | None = None,
    cwd: str | None = None,
    start_local: str = START_LOCAL,
) -> str:
    """The closing lines: where this job's Prefect runs and artifacts are and the command that shows them.

    Ephemeral API (no ``PREFECT_API_URL``): the runs are in ``prefect_home``'s database; ``start_local.sh``
    serves that home at http://127.0.0.1:4200 when it resolves to the same folder (``$KRONOS_DATA_DIR`` or
    ``PREFECT_HOME`` are added to the command where the defaults do not already give it). With a
    ``PREFECT_API_URL`` the runs are on that server and its UI shows them."""
    what = "Prefect runs and artifacts (run summary, where the outputs are, fan chart)"
    if api_url:
        return f"{what}: Prefect API {api_url}\n  see them in the UI   open {ui_url or api_url}"
    home = os.path.abspath(prefect_home)
    repo = os.path.dirname(os.path.dirname(start_local))
    if os.path.exists(start_local):
        script = os.path.relpath(start_local, cwd) if cwd and os.path.abspath(cwd) == repo else start_local
        if home == prefect_home_for(os.path.join(repo, "demo_data")):
            cmd = script  # the script's defaults
        elif home == prefect_home_for(data_dir):
            cmd = f"KRONOS_DATA_DIR={os.path.abspath(data_dir)} {script}"
        else:
            cmd = f"PREFECT_HOME={home} {script}"
        how = " (it also serves the deployments, for UI-triggered runs)"
    else:  # installed without the checkout: a plain server on the same home
        cmd, how = f"PREFECT_HOME={home} prefect server start", ""
    return f"{what}: local Prefect home {home}\n  see them in the UI   run `{cmd}`, open {LOCAL_UI}{how}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    process_env(os.environ, args.data_dir)
    import datetime as dt

    from kronos_core import MarketCalendar, PredictorSpec, SamplingParams
    from pipeline.config import ComputeConfig

    from .params import NightlyParams
    from .store import input_sessions, local_or_url

    data_dir = os.path.abspath(args.data_dir)
    input_url = args.input_url or os.path.join(data_dir, "market")
    output_url = args.output_url or os.path.join(data_dir, "output")
    tokenizer = args.tokenizer or (
        args.model if args.model.startswith("random:") or is_demo_ref(args.model) else None
    )
    if tokenizer is None:
        print("kronos-nightly: --tokenizer is required with a non-random --model", file=sys.stderr)
        return 2

    from pipeline.storage import filesystem, strip_protocol

    calendar = MarketCalendar()  # the synthetic market's calendar (XNYS daily)
    last_session = calendar.last_completed_session()
    fs = filesystem(input_url)
    exists = fs.exists(strip_protocol(input_url))
    stale = (
        exists
        and args.refresh_stale
        and not args.input_url
        and max(input_sessions(input_url) or [dt.date.min]) < last_session
    )
    if not args.input_url and (args.regenerate or stale or not exists):
        from pipeline import write_synthetic_market

        end = last_session
        print(
            f"[1/3] writing a synthetic market: {args.symbols} assets x {args.bars} daily bars ending {end} "
            f"-> {input_url}"
        )
        write_synthetic_market(input_url, n_symbols=args.symbols, n_bars=args.bars, end=str(end), seed=0)
    else:
        print(f"[1/3] reusing market at {input_url}")
    sessions = input_sessions(input_url)
    if not sessions:
        print(f"kronos-nightly: no date=YYYY-MM-DD partitions under {input_url}", file=sys.stderr)
        return 2
    if args.prepare_only:
        print(f"market ready: {input_url} ({sessions[0]} .. {sessions[-1]})")
        return 0
    cutoffs = (
        [dt.date.fromisoformat(a) for a in args.as_of]
        if args.as_of
        else demo_cutoffs(sessions, args.pred_len, args.runs)
    )

    if args.model.startswith("random:"):
        print("[!] " + RANDOM_NOTE.format(ref=args.model))
    elif is_demo_ref(args.model):
        demo = demo_model(args.model)
        print(f"[!] {demo.ref}: {DEMO_NOTE} (model card: {demo.card})")
    if args.ray_address is None:
        import ray

        if not ray.is_initialized():
            # one logical CPU more than the cores: the forecast actors get every core and the light
            # read/validate/write tasks the extra slot (flows.job.fit_actors keeps one free). No dashboard:
            # saves ~1 GiB and ~1.5 s on small machines. Started once, reused by every run below.
            ray.init(num_cpus=(os.cpu_count() or 1) + 1, include_dashboard=False, log_to_driver=False)

    from .nightly import nightly_forecast

    result = {}
    for i, as_of in enumerate(cutoffs, start=1):
        print(f"[2/3] nightly flow {i}/{len(cutoffs)}: as_of {as_of}")
        params = NightlyParams(
            input_url=input_url,
            output_url=output_url,
            as_of=as_of,
            calendar=calendar,
            model=PredictorSpec(model=args.model, tokenizer=tokenizer),
            lookback=args.lookback,
            pred_len=args.pred_len,
            sampling=SamplingParams(sample_count=args.samples),
            compute=ComputeConfig(ray_address=args.ray_address, concurrency=args.concurrency),
        )
        result = nightly_forecast(params)
    wall = time.perf_counter() - t0
    as_of_text = str(result["as_of"]).removesuffix(" 00:00:00")
    print(f"[3/3] done in {wall:.0f} s. Latest run (as_of {as_of_text}, model {result['model']}):")
    print(
        f"  assets forecast   {result['assets_forecast']}   rejected {result['assets_rejected']}   "
        f"rows {result['rows_written']}"
    )
    print(f"  warehouse         {result.get('catalog') or local_or_url(output_url)}")
    print(f"  forecasts table   {result['forecasts_table']}  snapshot {result['snapshot_id']}")
    print(f"  rejected table    {result['rejected_table']}  snapshot {result['rejected_snapshot_id']}")
    print(f"  scorecard table   {result.get('scorecard_table') or '-'}")
    print(f"  fan chart PNG     {result.get('fan_chart') or '-'}")
    print(f"  scorecard rows    {result['scorecard_rows']} (matured cutoffs x methods)")
    print(
        f'  read them         python -c "from pipeline import warehouse, read; '
        f"print(read(warehouse('{local_or_url(output_url)}'), 'forecasts'))\""
    )
    if result["scorecard_rows"]:
        from pipeline.tables import Warehouse

        from .scoring import summarize_scorecard
        from .store import read_scorecard

        mean = summarize_scorecard(read_scorecard(Warehouse(output_url)))
        cols = ["method", "cutoffs", "mae", "direction_acc", "rank_ic", "coverage", "crps", "crps_skill"]
        print(
            "Scorecard, mean over matured cutoffs (bootstrap_rw and naive_* are the baselines; "
            "crps_skill > 0 beats the bootstrap random walk; one or two cutoffs are noise, "
            "see the model card for held-out scores):"
        )
        print(mean[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    print(
        runs_message(
            data_dir,
            str(settings.home),
            api_url=settings.api.url,
            ui_url=settings.ui_url,
            cwd=os.getcwd(),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
