"""The demo model's one training command, shortened (1 epoch per stage, every 32nd window): it runs end to
end in its own process and gives the same weights sha256 twice (the full run's reproducibility, on a smaller
scale). Slow tier (~3 min)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from kronos_core import KronosPredictor
from kronos_core.loading import file_sha256

SHORT = ["--set", "tokenizer.epochs=1", "--set", "predictor.epochs=1", "--set", "windows.stride=32"]


def _train(out) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "training.demo", "train", "--out", str(out), *SHORT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_demo_training_command_is_reproducible(tmp_path):
    first, second = _train(tmp_path / "a"), _train(tmp_path / "b")
    for kind in ("model", "tokenizer"):
        a = file_sha256(tmp_path / "a" / "run" / kind / "model.safetensors")
        b = file_sha256(tmp_path / "b" / "run" / kind / "model.safetensors")
        assert a == b, kind
        # the command reports the digest it produced (and whether it equals the shipped pin)
        assert re.search(rf"^{kind}: sha256 {a} ", first, re.M) and re.search(
            rf"^{kind}: sha256 {b} ", second, re.M
        )
    assert "training bars store at" in first and "SP500" in first
    run = tmp_path / "a" / "run"
    pred = KronosPredictor.from_pretrained(run / "model", run / "tokenizer", device="cpu")
    assert pred.model.config.d_model == 128 and pred.tokenizer.s1_bits == 8
    assert (run / "training_manifest.json").is_file()
