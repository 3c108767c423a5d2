"""Rebuild the demo model shipped in ``kronos_core/weights/daily`` with this project's own ``kronos-train``.

    python -m training.demo train                      # about 25 minutes on 2 CPU cores
    python -m training.demo train --out /tmp/demo --set predictor.epochs=1     # a quick look
    python -m training.demo data /tmp/demo/bars        # only the training bars store

``train`` writes the training bars store (``training.demo.build_store``: the real series without their
held-out last two years, plus the synthetic market) under ``<out>/bars``, runs ``kronos-train`` on
``training/demo/daily.yaml`` into ``<out>/run``, and compares the weights' sha256 with the pins in
``kronos_core.demo`` (equal on the same machine type, torch version and thread count: 2 threads).
``--install`` copies the result into the package (for maintainers re-training the demo).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parent / "daily.yaml"


def _data(args) -> int:
    from . import build_store

    written = build_store(str(Path(args.directory).resolve()))
    print(f"training bars store at {args.directory}: {written}")
    return 0


def _train(args) -> int:
    import logging

    from kronos_core.demo import DEMO_MODELS, WEIGHTS
    from kronos_core.loading import file_sha256

    from ..cli import main as kronos_train
    from . import build_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out).resolve()
    bars, run = out / "bars", out / "run"
    written = build_store(str(bars))
    print(f"training bars store at {bars}: {written}", flush=True)
    argv = ["--config", str(CONFIG), "--output", str(run), "--set", f"data.input.url={bars}"]
    argv += [x for s in args.set for x in ("--set", s)]
    rc = kronos_train(argv)
    if rc:
        return rc
    demo = DEMO_MODELS[args.name]
    same = True
    for kind, pinned in (("model", demo.model_sha256), ("tokenizer", demo.tokenizer_sha256)):
        digest = file_sha256(run / kind / "model.safetensors")
        same &= digest == pinned
        print(f"{kind}: sha256 {digest} ({'equals the pin' if digest == pinned else 'pinned: ' + pinned})")
    if args.install:
        target = WEIGHTS / demo.name
        for kind in ("model", "tokenizer"):
            shutil.rmtree(target / kind, ignore_errors=True)
            shutil.copytree(run / kind, target / kind)
        for name in ("training_manifest.json", "loss_curve.png"):
            shutil.copy2(run / name, target / name)
        print(f"installed into {target}; update the sha256 pins in kronos_core/demo.py")
    elif not same and not args.set:
        print("the weights differ from the shipped ones (another machine type, torch or thread count?)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="write the training bars store")
    d.add_argument("directory")
    t = sub.add_parser("train", help="build the store and train the demo model with kronos-train")
    t.add_argument("--out", default="/tmp/kronos-demo", help="work directory (%(default)s)")
    t.add_argument("--name", default="daily", help="the demo model to compare with (%(default)s)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="kronos-train override")
    t.add_argument("--install", action="store_true", help="copy the result into kronos_core/weights")
    args = ap.parse_args(argv)
    return _data(args) if args.cmd == "data" else _train(args)


if __name__ == "__main__":
    sys.exit(main())
