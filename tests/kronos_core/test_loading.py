"""Checkpoint loading: the published layout, strict keys, sha256, random:<size>, devices and dtypes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from kronos_core import SIZES, Kronos, KronosPredictor, KronosTokenizer
from kronos_core.loading import file_sha256


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory, oracle_factory):
    _, _, mdir, tdir = oracle_factory("tiny")
    return mdir, tdir


def test_loads_official_checkpoint_in_eval_mode(tiny_dirs):
    mdir, tdir = tiny_dirs
    model, tok = Kronos.from_pretrained(mdir), KronosTokenizer.from_pretrained(tdir)
    assert not model.training and not tok.training
    assert model.source.sha256 == file_sha256(mdir / "model.safetensors") and not model.source.random
    state = load_file(str(mdir / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_roundtrip_and_upstream_can_read_ours(tiny_dirs, tmp_path):
    from tests.kronos_core.conftest import oracle_module

    model = Kronos.from_pretrained(tiny_dirs[0])
    model.save_pretrained(tmp_path / "m")
    again = Kronos.from_pretrained(tmp_path / "m")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )
    upstream = oracle_module().Kronos.from_pretrained(str(tmp_path / "m"))
    assert set(upstream.state_dict()) == set(model.state_dict())


def test_sha256_mismatch_is_a_clear_error(tiny_dirs):
    with pytest.raises(ValueError, match="sha256 .* does not match"):
        Kronos.from_pretrained(tiny_dirs[0], sha256="0" * 64)
    good = file_sha256(tiny_dirs[0] / "model.safetensors")
    assert Kronos.from_pretrained(tiny_dirs[0], sha256=good).source.sha256 == good


def test_strict_keys_name_missing_and_unexpected(tiny_dirs, tmp_path):
    state = load_file(str(tiny_dirs[0] / "model.safetensors"))
    state["extra.weight"] = torch.zeros(1)
    del state["norm.weight"]
    (tmp_path / "config.json").write_text((tiny_dirs[0] / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['norm.weight'\].*unexpected \['extra.weight'\]"):
        Kronos.from_pretrained(tmp_path)


def test_tokenizer_config_as_model_is_rejected(tiny_dirs):
    with pytest.raises(ValueError, match="unknown KronosConfig keys"):
        Kronos.from_pretrained(tiny_dirs[1])


def test_bad_config_values_are_named(tmp_path, tiny_dirs):
    cfg = json.loads((tiny_dirs[0] / "config.json").read_text())
    cfg["n_heads"] = 5
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes((tiny_dirs[0] / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="d_model=32 must be divisible by n_heads=5"):
        Kronos.from_pretrained(tmp_path)


def test_pickle_only_directory_is_refused(tmp_path, tiny_dirs):
    (tmp_path / "config.json").write_text((tiny_dirs[0] / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="pickle checkpoints are not loaded"):
        Kronos.from_pretrained(tmp_path)


def test_missing_directory_and_offline_hub_errors(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint directory"):
        Kronos.from_pretrained(tmp_path / "nope" / "deeper")
    with pytest.raises(ValueError, match="pass its local directory instead"):
        Kronos.from_pretrained("NeoQuasar/Kronos-small", revision="901c26c1332695a2a8f243eb2f37243a37bea320")


@pytest.mark.parametrize("size", ["test", "mini"])
def test_random_sizes_are_seeded_and_labelled(size):
    a = Kronos.from_pretrained(f"random:{size}:3")
    b = Kronos.from_pretrained(f"random:{size}:3")
    assert a.source.random and "RANDOM" in a.source.label
    assert a.config == SIZES[size].model and not a.training
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_published_parameter_counts():
    def n_params(cfg):
        return sum(p.numel() for p in Kronos(cfg).parameters())

    assert n_params(SIZES["small"].model) == 24_741_376
    assert sum(p.numel() for p in KronosTokenizer(SIZES["small"].tokenizer).parameters()) == 3_958_042
    assert round(n_params(SIZES["base"].model) / 1e6, 1) == 102.3


def test_bad_references_devices_and_dtypes():
    with pytest.raises(ValueError, match="bad random reference"):
        Kronos.from_pretrained("random:huge")
    with pytest.raises(ValueError, match="unsupported dtype"):
        Kronos.from_pretrained("random:test", dtype="int8")
    with pytest.raises(ValueError, match="unknown device|unsupported device"):
        Kronos.from_pretrained("random:test", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Kronos.from_pretrained("random:test", device="cuda")


def test_bfloat16_load_and_forecast_runs():
    from kronos_core.testing import synthetic_universe

    pred = KronosPredictor.from_pretrained("random:test", "random:test", dtype="bfloat16")
    assert pred.dtype == torch.bfloat16
    res = pred.forecast(synthetic_universe(2, 20, 30, 5, seed=0))
    assert res.paths.dtype.name == "float32" and (res.paths == res.paths).all()


def test_predictor_rejects_mismatched_pair():
    model = Kronos.from_pretrained("random:test")
    tok = KronosTokenizer.from_pretrained("random:mini")
    with pytest.raises(ValueError, match="do not match the tokenizer"):
        KronosPredictor(model, tok)
    with pytest.raises(TypeError, match="model must be a kronos_core.Kronos"):
        KronosPredictor(object(), tok)


def test_light_names_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; from kronos_core import FIELDS, quantile_column, Series; "
        "assert 'torch' not in sys.modules, 'torch imported'; print(quantile_column(0.05))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "close_q05"


def test_default_max_context_by_hub_id_and_by_architecture(tmp_path):
    """Regression: NeoQuasar/Kronos-mini got max_context 512 (published: 2048); SIZES was only read for
    random: refs."""
    from kronos_core import Kronos, KronosPredictor, KronosTokenizer
    from kronos_core.loading import ModelSource
    from kronos_core.predictor import default_max_context

    mini = Kronos.from_pretrained("random:mini")
    mini.source = ModelSource(ref="NeoQuasar/Kronos-mini")  # as the hub loader labels it
    assert default_max_context(mini) == 2048
    small = Kronos.from_pretrained("random:small")
    small.source = ModelSource(ref="NeoQuasar/Kronos-small")
    assert default_max_context(small) == 512
    # a local copy (or a fine-tune) of Kronos-mini: recognised by its architecture
    mini.save_pretrained(tmp_path / "mini")
    KronosTokenizer.from_pretrained("random:mini").save_pretrained(tmp_path / "tok")
    pred = KronosPredictor.from_pretrained(str(tmp_path / "mini"), str(tmp_path / "tok"))
    assert pred.max_context == 2048 and pred.describe()["max_context"] == 2048
    assert KronosPredictor.from_pretrained("random:test", "random:test", max_context=40).max_context == 40
