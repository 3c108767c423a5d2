"""kronos-train: fine-tune Kronos on your own bars (Ray Train) from a YAML config.

kronos-train --config examples/train.yaml
kronos-train --config examples/train.yaml --set compute.num_workers=2 --set predictor.epochs=3
kronos-train --config examples/train.yaml --output /tmp/models/my-kronos --json

Prints one line per epoch (loss, validation loss, windows/s) and the run summary; the output directory
(model/, tokenizer/, training_manifest.json, loss_curve.png) loads like a published checkpoint:
KronosPredictor.from_pretrained(<output>/model, <output>/tokenizer), or model.model / model.tokenizer in
a batch job or serving config.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pydantic import ValidationError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from pipeline.cli import _parse_set

    ap = argparse.ArgumentParser(
        prog="kronos-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", required=True, help="training YAML (see examples/train.yaml)")
    ap.add_argument("--output", help="override output (model directory, local or s3://)")
    ap.add_argument("--num-workers", type=int, help="override compute.num_workers (Ray Train workers)")
    ap.add_argument("--ray-address", help="override compute.ray_address ('auto' joins a running cluster)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any field, e.g. --set predictor.epochs=3 --set data.val_start=2024-01-02",
    )
    ap.add_argument("--progress", action="store_true", help="show Ray Data progress for the data stage")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="also log every checkpoint step")
    args = ap.parse_args(argv)
    # no force=True: a host that configured logging (a notebook, pytest) keeps its handlers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)
    if args.verbose:
        logging.getLogger("training").setLevel(logging.DEBUG)

    from .config import load_train_config
    from .job import run_training

    overrides = _parse_set(args.set)
    for flag, key in (
        (args.output, "output"),
        (args.num_workers, "compute.num_workers"),
        (args.ray_address, "compute.ray_address"),
    ):
        if flag is not None:
            overrides[key] = flag
    try:
        cfg = load_train_config(args.config, **overrides)
    except ValidationError as e:
        print(f"kronos-train: invalid config {args.config}:\n{e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"kronos-train: {e}", file=sys.stderr)
        return 2
    try:
        summary = run_training(cfg, progress=args.progress)
    except ValueError as e:  # the data cannot make a run (too few windows...): the fix is in the message
        print(f"kronos-train: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a CLI reports and exits non-zero
        logging.getLogger("kronos-train").debug("training failed", exc_info=True)
        print(f"kronos-train: training failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.json:
        d = summary.to_dict()
        for s in d["stages"].values():
            s.pop("window_log", None)
        print(json.dumps(d, indent=1, default=str))
    else:
        print(summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
