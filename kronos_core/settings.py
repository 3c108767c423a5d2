"""The settings groups every entry point shares, as plain frozen dataclasses (no torch import here):
``SamplingParams`` (how paths are drawn) and ``PredictorSpec`` (what to load and how to run it).

The batch job's config, the flows' forms, serving's requests and model list, and ``kronos-forecast`` use
these classes as they are (pydantic validates stdlib dataclasses and shows their field descriptions), so
their checks and defaults (``kronos_core.defaults``) exist once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import defaults

__all__ = ["SamplingParams", "PredictorSpec", "CACHE_MODES", "DTYPE_NAMES", "check_device_name"]

CACHE_MODES = ("exact", "rolling", "reference")
DTYPE_NAMES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_DEVICE_HELP = "use 'auto' (CUDA when this process has a GPU, else CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'"


def _meta(description: str, **schema) -> dict:
    """A field's metadata: its description and the JSON-schema bounds of the values ``__post_init__``
    accepts. pydantic shows both in the forms' schema (the flows' UI refuses an out-of-range value before
    a run starts); the checks stay in ``__post_init__`` (one message, from this module, everywhere), and
    tests/flows/test_params_schema.py checks that every bound here agrees with them."""
    return {"description": description, **({"json_schema_extra": schema} if schema else {})}


def check_device_name(device) -> None:
    """A device *name* is well formed (availability is checked when loading, in the process that runs it)."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(f"unknown device {device!r}; {_DEVICE_HELP}")


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are drawn.

    ``top_k > 0`` wins over ``top_p`` (as upstream: its filter returns after top-k). ``top_k=1`` is greedy.
    ``sample_count`` paths are drawn per series; ``seed`` with the series' symbol fixes them.

    The batch job's config, the flows' form and the HTTP request embed this class as it is (pydantic reads
    it), so its checks and defaults are the only ones.
    """

    temperature: float = field(
        default=defaults.TEMPERATURE, metadata=_meta("softmax temperature (> 0)", exclusiveMinimum=0)
    )
    top_k: int = field(
        default=defaults.TOP_K,
        metadata=_meta("keep the k most likely tokens; 0 = off, 1 = greedy; wins over top_p", minimum=0),
    )
    top_p: float = field(
        default=defaults.TOP_P,
        metadata=_meta("nucleus sampling mass in (0, 1]; 1 = off", exclusiveMinimum=0, maximum=1),
    )
    sample_count: int = field(
        default=defaults.SAMPLE_COUNT,
        metadata=_meta("sample paths per series (quantiles and p_up come from them)", minimum=1),
    )
    seed: int = field(
        default=defaults.SEED, metadata=_meta("with the symbol, fixes every path of a series", minimum=0)
    )

    __pydantic_config__ = {"extra": "forbid"}  # read by pydantic at the boundaries (no import here)

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0 or t != t or t == float("inf"):
            raise ValueError(f"temperature must be a finite number > 0, got {t!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {p!r}")
        if (
            isinstance(self.sample_count, bool)
            or not isinstance(self.sample_count, int)
            or self.sample_count < 1
        ):
            raise ValueError(f"sample_count must be an int >= 1, got {self.sample_count!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class PredictorSpec:
    """What to load and how to run it: the one settings group behind the batch job's ``model:`` section,
    each serving model id and ``kronos-forecast``'s flags (``KronosPredictor.from_spec``)."""

    model: str = field(
        default=defaults.MODEL,
        metadata={
            "description": "local checkpoint dir, hub id "
            "(NeoQuasar/Kronos-small), demo (the DEMO MODEL shipped in the package) or "
            "random:<test|mini|small|base>[:seed] (RANDOM WEIGHTS)"
        },
    )
    tokenizer: str = field(default=defaults.TOKENIZER, metadata={"description": "same forms as model"})
    model_revision: str | None = field(default=None, metadata={"description": "hub revision (commit) to pin"})
    tokenizer_revision: str | None = field(default=None, metadata={"description": "hub revision to pin"})
    device: str = field(
        default=defaults.DEVICE,
        metadata=_meta(
            "auto (CUDA when this process has a GPU, else CPU), cpu, cuda, cuda:N or mps",
            pattern=_DEVICE.pattern,
        ),
    )
    dtype: str = field(
        default=defaults.DTYPE,
        metadata=_meta("float32 (equals upstream), bfloat16 or float16", enum=list(DTYPE_NAMES)),
    )
    max_context: int | None = field(
        default=None,
        metadata=_meta(
            "window in tokens; empty = the model's published context (Kronos-mini 2048, small/base 512)",
            minimum=1,
        ),
    )
    cache: str = field(
        default=defaults.CACHE,
        metadata=_meta(
            "exact (equals upstream), rolling (faster, differs after the window slides) or reference "
            "(slow, for checks)",
            enum=list(CACHE_MODES),
        ),
    )
    batch_size: int = field(
        default=128,
        metadata=_meta("sample paths per generation batch (bounds KV-cache memory)", minimum=1),
    )

    __pydantic_config__ = {"extra": "forbid"}  # read by pydantic where configs embed this (no import here)

    def __post_init__(self) -> None:
        for name in ("model", "tokenizer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a checkpoint dir, hub id or random:<size>, got {value!r}")
        check_device_name(self.device)
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(
                f"unsupported dtype {self.dtype!r}; use 'float32' (default), 'bfloat16' or 'float16'"
            )
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {self.cache!r}")
        if self.max_context is not None and (
            isinstance(self.max_context, bool)
            or not isinstance(self.max_context, int)
            or self.max_context < 1
        ):
            raise ValueError(f"max_context must be an int >= 1 or empty, got {self.max_context!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
