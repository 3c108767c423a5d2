"""The deployments' parameter forms (GitHub issue 15): the JSON schema Prefect stores for each deployment
carries every bound the code enforces, so the UI and the API refuse a bad value before a run exists; no
credential is a parameter; calendar.freq is a choice of the canonical names; the backtest and finetune forms
show only the fields those flows read. The schemas are built as Prefect builds them (``flow.to_deployment``)
and checked with a real JSON-schema validator (jsonschema, installed with Prefect)."""

from __future__ import annotations

import dataclasses
import functools

import jsonschema
import pytest

from kronos_core import PredictorSpec, SamplingParams
from kronos_core.rules import FREQUENCIES, MAX_QUANTILE_LEVELS


@functools.cache
def _schema(name: str) -> dict:
    """The parameter_openapi_schema of a deployment, as ``flows.deploy`` registers it (what
    ``RunnerDeployment.apply`` sends to the API: its parameter schema dumped with exclude_unset)."""
    from flows.deploy import build_deployments

    deps = {d.name: d for d in build_deployments("/market", "/out")}
    return deps[name]._parameter_openapi_schema.model_dump(exclude_unset=True)


def _refused(name: str, params: dict) -> list[str]:
    """The schema's errors for ``{"params": params}`` (empty: the API would accept the run)."""
    validator = jsonschema.Draft202012Validator(_schema(name))
    return [e.message for e in validator.iter_errors({"params": params})]


def _params_schema(name: str) -> dict:
    s = _schema(name)
    ref = s["properties"]["params"].get("$ref") or s["properties"]["params"]["allOf"][0]["$ref"]
    return s["definitions"][ref.rsplit("/", 1)[-1]]


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_quantile_bounds_are_in_the_deployment_schema():
    """Regression: quantiles [1.2] passed the stored schema (the UI's form and the API) and failed inside
    the run; the bounds now come from kronos_core.rules.quantiles into the schema of every flow."""
    for name in ("nightly", "backtest", "finetune"):
        q = _params_schema(name)["properties"]["quantiles"]
        assert q["items"]["exclusiveMinimum"] == 0 and q["items"]["exclusiveMaximum"] == 1
        assert q["maxItems"] == MAX_QUANTILE_LEVELS and q["minItems"] == 1 and q["uniqueItems"] is True
        assert _refused(name, {"quantiles": [1.2]}) and _refused(name, {"quantiles": [0.0, 0.5]})
        assert _refused(name, {"quantiles": []}) and _refused(name, {"quantiles": [0.5, 0.5]})
        assert _refused(name, {"quantiles": [0.01 * i for i in range(1, MAX_QUANTILE_LEVELS + 2)]})
        assert not _refused(name, {"quantiles": [0.1, 0.5, 0.9]})


@pytest.mark.parametrize(
    "bad",
    [
        {"sampling": {"temperature": 0}},
        {"sampling": {"top_p": 1.5}},
        {"sampling": {"top_p": 0}},
        {"sampling": {"top_k": -1}},
        {"sampling": {"sample_count": 0}},
        {"sampling": {"seed": -1}},
        {"model": {"max_context": 0}},
        {"model": {"batch_size": 0}},
        {"model": {"cache": "fast"}},
        {"model": {"dtype": "float8"}},
        {"model": {"device": "gpu"}},
        {"lookback": 4},
        {"pred_len": 0},
        {"validation": {"max_gap_fraction": 1.5}},
        {"validation": {"max_price_ratio": 1}},
        {"compute": {"num_gpus": 1.5}},
        {"compute": {"concurrency": 0}},
        {"storage": {"endpoint_url": "ftp://host"}},
        {"calendar": {"freq": "7min"}},
        {"calendar": {"freq": "daily"}},
    ],
)
def test_every_enforced_bound_refuses_in_the_schema(bad):
    assert _refused("nightly", bad), f"{bad} passes the nightly deployment's schema"


def test_values_inside_the_bounds_pass_the_schema():
    ok = {
        "sampling": {"temperature": 0.5, "top_p": 1, "top_k": 0, "sample_count": 1, "seed": 0},
        "model": {"max_context": None, "cache": "rolling", "dtype": "bf16", "device": "cuda:1"},
        "compute": {"num_gpus": 2},
        "calendar": {"name": "FX", "freq": "4h"},
        "storage": {"endpoint_url": "http://127.0.0.1:8333"},
    }
    assert not _refused("nightly", ok)


def test_schema_bounds_agree_with_the_core_checks():
    """The kronos_core dataclasses' schema bounds (field metadata) and their __post_init__ checks are the
    same numbers: at each bound the check accepts, one step beyond it refuses."""
    for cls in (SamplingParams, PredictorSpec):
        for f in dataclasses.fields(cls):
            extra = f.metadata.get("json_schema_extra", {})
            step = 1 if "int" in str(f.type) else 1e-9
            for key, ok, bad in (
                ("minimum", 0, -step),
                ("exclusiveMinimum", step, 0),
                ("maximum", 0, step),
            ):
                if key not in extra:
                    continue
                cls(**{f.name: extra[key] + ok})
                with pytest.raises(ValueError, match=f.name):
                    cls(**{f.name: extra[key] + bad})
            for value in extra.get("enum", []):
                cls(**{f.name: value})


def test_calendar_freq_is_a_choice_of_the_canonical_names():
    from flows.params import NightlyParams

    for name in ("nightly", "backtest", "finetune"):
        calendar = _schema(name)["definitions"]["MarketCalendar"]
        assert calendar["properties"]["freq"]["enum"] == list(FREQUENCIES)
        assert _refused(name, {"calendar": {"freq": "2d"}})
        assert not _refused(name, {"calendar": {"freq": "5min"}})
    # Python callers and job files keep their aliases: the core turns them into the canonical name
    assert NightlyParams(calendar={"freq": "5 mins"}).calendar.freq == "5min"
    assert NightlyParams(calendar={"freq": "60min"}).calendar.freq == "1h"


def test_no_credential_is_a_parameter():
    """Regression: storage.key / storage.secret were plain-text run parameters (stored with every run and
    shown in the UI). The flows name a Secret block or environment variables instead."""
    for name in ("nightly", "backtest", "finetune", "maintenance"):
        schema = _schema(name)
        names = {k for node in _walk(schema) for k in node.get("properties", {})}
        assert not {"key", "secret"} & names, name
        storage = schema["definitions"]["StorageParams"]["properties"]
        assert {"credentials_block", "key_env", "secret_env"} <= set(storage)
        assert storage["key_env"]["default"] == "AWS_ACCESS_KEY_ID"
        assert _refused(name, {"storage": {"secret": "s3cr3t"}})  # additionalProperties: false


def test_backtest_and_finetune_forms_hold_only_their_fields():
    """Regression: the backtest and finetune forms nested the whole nightly form (as_of, chart_assets,
    score_matured ...) under `job`; they are flat now and hold what those flows read."""
    nightly = set(_params_schema("nightly")["properties"])
    assert {"as_of", "chart_assets", "score_matured", "model_pointer"} <= nightly
    for name in ("backtest", "finetune"):
        props = set(_params_schema(name)["properties"])
        assert not {"job", "as_of", "chart_assets", "score_matured"} & props, name
        assert {"input_url", "pred_len", "quantiles", "model", "sampling", "storage"} <= props
    assert "model_pointer" not in _params_schema("finetune")["properties"]  # its registry is the pointer
    assert {"cutoffs", "compare"} <= set(_params_schema("backtest")["properties"])


def test_storage_params_resolve_environment_references(monkeypatch):
    from flows.job import to_job_config
    from flows.params import NightlyParams

    monkeypatch.setenv("KRONOS_TEST_KEY", "AKIAENVREF")
    monkeypatch.setenv("KRONOS_TEST_SECRET", "env-ref-secret-value")
    p = NightlyParams(storage={"key_env": "KRONOS_TEST_KEY", "secret_env": "KRONOS_TEST_SECRET"})
    s = p.storage.resolved()
    assert (s.key, s.secret) == ("AKIAENVREF", "env-ref-secret-value")
    assert "env-ref-secret-value" not in p.model_dump_json() and "env-ref-secret-value" not in repr(s)
    import datetime as dt

    cfg = to_job_config(p, dt.date(2024, 6, 28))
    assert cfg.storage.secret == "env-ref-secret-value"  # the job gets the credentials ...
    record = str(cfg.to_json_dict())
    assert "env-ref-secret-value" not in record and "AKIAENVREF" not in record  # ... its record does not
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("KRONOS_TEST_KEY")
    assert NightlyParams(storage={"key_env": "KRONOS_TEST_KEY"}).storage.resolved().key is None


def test_secret_block_of_the_wrong_shape_is_named_not_shown(prefect_harness):
    from prefect.blocks.system import Secret

    from flows.params import StorageParams

    Secret(value={"access": "not-shown-value"}).save("kronos-test-bad-shape", overwrite=True)
    with pytest.raises(ValueError, match=r"'kronos-test-bad-shape' must hold the JSON") as e:
        StorageParams(credentials_block="kronos-test-bad-shape").resolved()
    assert "not-shown-value" not in str(e.value) and "['access']" in str(e.value)
