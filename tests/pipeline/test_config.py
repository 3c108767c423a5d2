"""JobConfig: clear errors naming the field, YAML loading with overrides, the example config loads."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline import JobConfig, RunSummary, load_job_config

BASE = {"as_of": "2024-06-28", "input": {"url": "/data/bars"}, "output": {"url": "/data/out"}}


def make(**over):
    return JobConfig.model_validate({**BASE, **over})


@pytest.mark.parametrize(
    "over, field",
    [
        ({"compute": {"concurency": 2}}, "compute.concurency"),
        ({"calendar": {"name": "NYSEX"}}, "unknown calendar 'NYSEX'"),
        ({"calendar": {"exchange": "XNYS"}}, "calendar.exchange"),
        ({"calendar": {"freq": "7min"}}, "frequency '7min': 7 minutes does not divide a day"),
        ({"calendar": {"freq": "0min"}}, "frequency '0min': the count must be a whole number >= 1"),
        ({"sampling": {"top_p": 1.5}}, "top_p must be in (0, 1]"),
        ({"sampling": {"temprature": 1.0}}, "sampling.temprature"),
        ({"model": {"cache": "fast"}}, "cache must be one of"),
        ({"model": {"device": "gpu"}}, "unknown device 'gpu'"),
        ({"validation": {"max_price_ratio": 0.5}}, "validation.max_price_ratio"),
        ({"as_of": "yesterday-ish"}, "as_of"),
        ({"lookback": 16, "validation": {"min_history": 32}}, "min_history"),
        ({"output": {"url": "/o", "quantiles": [0.5, 1.5]}}, "output.quantiles[1] = 1.5"),
        ({"compute": {"num_gpus": 1.5}}, "num_gpus"),
        ({"storage": {"endpoint_url": "127.0.0.1:9000"}}, "storage.endpoint_url"),
        ({"universe": {"symbols": ["A"], "file": "u.txt"}}, "universe"),
    ],
)
def test_bad_fields_name_the_field(over, field):
    with pytest.raises(ValidationError) as e:
        make(**over)
    assert field in str(e.value)


def test_gpus_and_device_must_agree():
    """Regression: the nightly flow reserved GPUs (ray.num_gpus) while the model ran on device='cpu'."""
    with pytest.raises(ValidationError, match="reserves GPUs but model.device is 'cpu'"):
        make(compute={"num_gpus": 1}, model={"device": "cpu"})
    with pytest.raises(ValidationError, match="Ray gives the actors no GPU"):
        make(model={"device": "cuda"})
    assert make(compute={"num_gpus": 0.5}).model.device == "auto"  # auto: CUDA inside a GPU actor


def test_defaults_and_json_masks_secret():
    from kronos_core import defaults

    cfg = make(storage={"key": "k", "secret": "s3cr3t"})
    assert cfg.calendar.name == defaults.CALENDAR and cfg.compute.num_gpus == 0
    assert (cfg.lookback, cfg.pred_len, cfg.sampling.sample_count) == (
        defaults.LOOKBACK,
        defaults.PRED_LEN,
        defaults.SAMPLE_COUNT,
    )
    assert tuple(cfg.output.quantiles) == defaults.QUANTILES and cfg.model.model == defaults.MODEL
    assert cfg.to_json_dict()["storage"]["secret"] == "***"
    assert "s3cr3t" not in str(cfg.to_json_dict())


def test_load_job_config_overrides(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text("as_of: 2024-06-28\ninput: {url: /b}\noutput: {url: /o}\ncompute: {concurrency: 2}\n")
    cfg = load_job_config(p, **{"compute.concurrency": 3, "as_of": "2024-06-27"})
    assert cfg.compute.concurrency == 3 and str(cfg.as_of.date()) == "2024-06-27"


def test_example_job_yaml_loads():
    cfg = load_job_config(Path(__file__).parents[2] / "examples" / "job.yaml")
    assert cfg.input.layout == "date"


def test_kuberay_job_config_is_a_valid_job():
    """The RayJob's ConfigMap holds a job.yaml: it must load as a JobConfig (infra cannot drift)."""
    import yaml

    rayjob = Path(__file__).parents[2] / "infra" / "kuberay" / "rayjob.yaml"
    docs = list(yaml.safe_load_all(rayjob.read_text()))
    cm = next(d for d in docs if d and d.get("kind") == "ConfigMap")
    cfg = JobConfig.model_validate(yaml.safe_load(cm["data"]["job.yaml"]))
    assert cfg.compute.num_gpus > 0 and cfg.model.device in ("auto", "cuda")


def test_universe_file(tmp_path):
    f = tmp_path / "u.txt"
    f.write_text("B\nA  # comment\n\n# only comment\nA\n")
    assert make(universe={"file": str(f)}).universe.resolve() == ["A", "B"]


def test_run_summary_to_dict():
    d = RunSummary(run_id="r", as_of="2024-06-28").to_dict()
    for k in (
        "run_id",
        "as_of",
        "assets_read",
        "assets_forecast",
        "assets_rejected",
        "rows_written",
        "wall_s",
        "series_per_s",
        "output_url",
        "catalog",
        "forecasts_table",
        "snapshot_id",
        "rejected_table",
        "rejected_snapshot_id",
        "bytes_read",
    ):
        assert k in d
