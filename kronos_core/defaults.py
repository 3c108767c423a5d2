"""Defaults every entry point shares (library, ``kronos-forecast``, the batch job, the flows, serving).

One table, one value per setting. Where an entry point must differ, ``EXCEPTIONS`` says where and why;
the README's settings table is ``markdown_table()`` (a test keeps the two equal).
"""

from __future__ import annotations

from .rules.candles import DEFAULT_MAX_PRICE_RATIO
from .rules.quantiles import DEFAULT_QUANTILES

__all__ = [
    "MODEL",
    "TOKENIZER",
    "LOOKBACK",
    "PRED_LEN",
    "SAMPLE_COUNT",
    "TEMPERATURE",
    "TOP_K",
    "TOP_P",
    "SEED",
    "QUANTILES",
    "CALENDAR",
    "FREQ",
    "MAX_PRICE_RATIO",
    "DEVICE",
    "DTYPE",
    "CACHE",
    "TABLE",
    "EXCEPTIONS",
    "markdown_table",
]

MODEL = "random:mini"  # no weights are reachable offline; point it at a checkpoint for real forecasts
TOKENIZER = "random:mini"
LOOKBACK = 256
PRED_LEN = 16
SAMPLE_COUNT = 8
TEMPERATURE = 1.0
TOP_K = 0
TOP_P = 0.9
SEED = 0
QUANTILES = DEFAULT_QUANTILES
CALENDAR = "XNYS"
FREQ = "1d"
MAX_PRICE_RATIO = DEFAULT_MAX_PRICE_RATIO
MAX_GAP_FRACTION = 0.1  # share of a calendar's bars that may be missing in a window (rules.calendars)
DEVICE = "auto"
DTYPE = "float32"
CACHE = "exact"

# (setting, value, why this value)
TABLE: list[tuple[str, object, str]] = [
    (
        "model / tokenizer",
        f"{MODEL} / {TOKENIZER}",
        "Kronos-mini architecture with random weights: runs offline; "
        "RANDOM WEIGHTS is printed and stored wherever it is used. Point it at a checkpoint for real "
        "forecasts",
    ),
    (
        "lookback",
        LOOKBACK,
        "about a year of daily bars; within every published model's context (512, mini 2048)",
    ),
    ("pred_len", PRED_LEN, "about three weeks of daily bars"),
    ("sampling.sample_count", SAMPLE_COUNT, "enough paths for quantiles and p_up at a modest cost"),
    ("sampling.temperature / top_k / top_p", f"{TEMPERATURE} / {TOP_K} / {TOP_P}", "upstream's defaults"),
    ("sampling.seed", SEED, "with the symbol, fixes every path"),
    (
        "quantiles",
        ", ".join(f"{q:g}" for q in QUANTILES),
        "five levels: the scorecard's CRPS needs more than three",
    ),
    (
        "calendar / freq",
        f"{CALENDAR} / {FREQ}",
        "the nightly schedule runs after the New York close; name your "
        "market's calendar (XLON, XSHG, 24/7, FX, weekdays) otherwise",
    ),
    (
        "max_price_ratio",
        f"{MAX_PRICE_RATIO:g}",
        "a bar whose close moves more than 10x (or high/low spans more) is a "
        "data error far more often than a real move",
    ),
    (
        "device / dtype / cache",
        f"{DEVICE} / {DTYPE} / {CACHE}",
        "auto = CUDA when the process has a GPU, else CPU; float32 and the exact cache equal upstream",
    ),
]

# (setting, entry point, value there, why it must differ)
EXCEPTIONS: list[tuple[str, str, str, str]] = [
    ("sample_count", "KronosPredictor.predict / predict_batch", "1", "upstream's drop-in signature"),
    (
        "model / tokenizer",
        "kronos-nightly (the demo)",
        "random:test",
        "the demo (synthetic market, two nightly runs) must finish in under two minutes on two CPU cores",
    ),
    (
        "lookback / pred_len",
        "kronos-nightly (the demo)",
        "128 / 5",
        "the demo runs twice, pred_len sessions "
        "apart, so the second run scores the first on its 400-bar synthetic market",
    ),
    ("pred_len", "POST /v1/forecast", "required", "a request must say how far to forecast"),
]


def markdown_table() -> str:
    """The README's settings table."""
    rows = ["| setting | default | why |", "|---|---|---|"]
    rows += [f"| `{k}` | `{v}` | {why} |" for k, v, why in TABLE]
    rows += [
        "",
        "Where an entry point differs:",
        "",
        "| setting | where | value | why |",
        "|---|---|---|---|",
    ]
    rows += [f"| `{k}` | {where} | `{v}` | {why} |" for k, where, v, why in EXCEPTIONS]
    return "\n".join(rows)
