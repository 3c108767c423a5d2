"""One value per setting: every entry point's default equals kronos_core.defaults, and the README's settings
table is generated from it (regression: quantiles 5 vs 3 levels, sample_count 1 vs 8, model random:small /
mini / test and lookback 400 / 256 / 128 differed between packages)."""

from __future__ import annotations

from pathlib import Path

from kronos_core import MarketCalendar, PredictorSpec, SamplingParams, defaults

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_generated_from_the_defaults():
    text = README.read_text()
    start, end = text.index("<!-- defaults:start -->\n"), text.index("<!-- defaults:end -->")
    assert text[start + len("<!-- defaults:start -->\n") : end].strip() == defaults.markdown_table().strip()


def test_core_settings_use_the_defaults():
    s, p, c = SamplingParams(), PredictorSpec(), MarketCalendar()
    assert (s.temperature, s.top_k, s.top_p, s.sample_count, s.seed) == (
        defaults.TEMPERATURE,
        defaults.TOP_K,
        defaults.TOP_P,
        defaults.SAMPLE_COUNT,
        defaults.SEED,
    )
    assert (p.model, p.tokenizer, p.device, p.dtype, p.cache) == (
        defaults.MODEL,
        defaults.TOKENIZER,
        defaults.DEVICE,
        defaults.DTYPE,
        defaults.CACHE,
    )
    assert (c.name, c.freq) == (defaults.CALENDAR, defaults.FREQ)
    from kronos_core.rules import DEFAULT_MAX_GAP_FRACTION, DEFAULT_MAX_PRICE_RATIO, DEFAULT_QUANTILES

    assert DEFAULT_QUANTILES == defaults.QUANTILES and DEFAULT_MAX_PRICE_RATIO == defaults.MAX_PRICE_RATIO
    assert DEFAULT_MAX_GAP_FRACTION == defaults.MAX_GAP_FRACTION


def test_cli_job_flows_and_serving_use_the_defaults():
    from flows.cli import DEMO_LOOKBACK, DEMO_MODEL, DEMO_PRED_LEN
    from flows.params import NightlyParams
    from kronos_core.cli import _parser
    from pipeline import JobConfig
    from serving.config import Limits, ServingConfig
    from serving.schemas import ForecastRequest

    cli = _parser().parse_args(["--input", "x.csv"])
    assert (cli.model, cli.tokenizer, cli.lookback, cli.pred_len, cli.samples, cli.calendar) == (
        defaults.MODEL,
        defaults.TOKENIZER,
        defaults.LOOKBACK,
        defaults.PRED_LEN,
        defaults.SAMPLE_COUNT,
        defaults.CALENDAR,
    )
    assert tuple(cli.quantiles) == defaults.QUANTILES
    job = JobConfig.model_validate({"as_of": "2024-06-28", "input": {"url": "/i"}, "output": {"url": "/o"}})
    nightly = NightlyParams()
    for cfg in (job, nightly):
        assert (cfg.lookback, cfg.pred_len, cfg.model, cfg.sampling, cfg.calendar) == (
            defaults.LOOKBACK,
            defaults.PRED_LEN,
            PredictorSpec(),
            SamplingParams(),
            MarketCalendar(),
        )
        assert (cfg.validation.max_price_ratio, cfg.validation.max_gap_fraction) == (
            defaults.MAX_PRICE_RATIO,
            defaults.MAX_GAP_FRACTION,
        )
    assert tuple(job.output.quantiles) == tuple(nightly.quantiles) == defaults.QUANTILES
    served = ServingConfig()
    default_model = served.models[served.default_model]
    assert (default_model.model, default_model.tokenizer) == (defaults.MODEL, defaults.TOKENIZER)
    assert (Limits().max_price_ratio, Limits().max_gap_fraction) == (
        defaults.MAX_PRICE_RATIO,
        defaults.MAX_GAP_FRACTION,
    )
    empty = {"symbol": "X", "timestamps": [], "open": [], "high": [], "low": [], "close": []}
    req = ForecastRequest(series=[empty], pred_len=1)
    assert req.sampling == SamplingParams() and tuple(req.quantiles) == defaults.QUANTILES
    assert req.calendar == defaults.CALENDAR
    # the documented exceptions are the values in the code
    exceptions = {(k, where): v for k, where, v, _ in defaults.EXCEPTIONS}
    assert exceptions[("pred_len", "kronos-nightly (the demo)")] == str(DEMO_PRED_LEN)
    import inspect

    from kronos_core import KronosPredictor

    drop_in = inspect.signature(KronosPredictor.predict).parameters
    where = "KronosPredictor.predict / predict_batch"
    assert exceptions[("sample_count", where)] == str(drop_in["sample_count"].default)
    assert (
        exceptions[("sampling.temperature / top_p", where)]
        == f"{drop_in['T'].default} / {drop_in['top_p'].default}"
    )
    assert inspect.signature(KronosPredictor.predict_batch).parameters["top_p"].default == 0.9
    # the main job runs the shipped demo model with its training lookback (no exception for either)
    assert (DEMO_MODEL, DEMO_LOOKBACK) == (defaults.MODEL, defaults.LOOKBACK) == ("demo", 64)
    assert ("model / tokenizer", "kronos-nightly (the demo)") not in exceptions
