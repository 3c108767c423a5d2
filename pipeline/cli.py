"""kronos-batch: run the batch forecast job from a YAML config.

kronos-batch --config examples/job.yaml --as-of 2024-06-28 --set compute.concurrency=4
kronos-batch --synthetic /tmp/market/bars --symbols 2000 --bars 300   # write a demo market first
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import yaml
from pydantic import ValidationError

__all__ = ["build_parser", "config_overrides", "main"]


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects key.path=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line (infra/kuberay/rayjob.yaml's entrypoint is checked against it by tests/infra)."""
    ap = argparse.ArgumentParser(
        prog="kronos-batch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", help="job YAML (see examples/job.yaml)")
    ap.add_argument("--as-of", help="override as_of (date or datetime, exchange-local)")
    ap.add_argument("--input", help="override input.url")
    ap.add_argument("--output", help="override output.url")
    ap.add_argument("--ray-address", help="override compute.ray_address ('auto' joins a running cluster)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any field, e.g. --set compute.concurrency=4 --set sampling.seed=1",
    )
    ap.add_argument("--synthetic", metavar="URL", help="write a synthetic market to URL and exit")
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--bars", type=int, default=300)
    ap.add_argument("--end", default="2024-06-28")
    ap.add_argument("--no-progress", action="store_true", help="hide Ray Data progress bars")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def config_overrides(args: argparse.Namespace) -> dict:
    """The job-config overrides the parsed command line asks for (``--set`` and the shorthand flags)."""
    overrides = _parse_set(args.set)
    for flag, key in (
        (args.as_of, "as_of"),
        (args.input, "input.url"),
        (args.output, "output.url"),
        (args.ray_address, "compute.ray_address"),
    ):
        if flag is not None:
            overrides[key] = flag
    return overrides


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    from . import load_job_config, run_job, write_synthetic_market

    if args.synthetic:
        m = write_synthetic_market(args.synthetic, n_symbols=args.symbols, n_bars=args.bars, end=args.end)
        print(
            f"wrote {m.rows} bars of {len(m.symbols)} symbols ({len(m.broken)} broken) in {m.files} files "
            f"to {m.url}"
        )
        return 0
    if not args.config:
        ap.error("--config is required (or --synthetic URL)")
    overrides = config_overrides(args)
    try:
        cfg = load_job_config(args.config, **overrides)
    except ValidationError as e:
        print(f"kronos-batch: invalid config {args.config}:\n{e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"kronos-batch: {e}", file=sys.stderr)
        return 2
    try:
        summary = run_job(cfg, progress=not args.no_progress)
    except Exception as e:  # noqa: BLE001 - a CLI reports and exits non-zero
        logging.getLogger("kronos-batch").debug("job failed", exc_info=True)
        print(f"kronos-batch: job failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary.to_dict(), indent=1) if args.json else summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
