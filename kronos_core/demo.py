"""Demo models shipped inside the package: small Kronos models trained by this project, offline.

``demo`` or ``demo:<name>`` is a model (and tokenizer) reference like ``random:<size>``: it loads the
weights under ``kronos_core/weights/<name>/`` and refuses them unless their sha256 equals the pin below.
A demo model is **not the published Kronos**: it is a few-megabyte model trained on a few public series
(see its ``MODEL_CARD.md``), so every label that names it says so (``DEMO_NOTE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DemoModel",
    "DEMO_MODELS",
    "DEFAULT_DEMO",
    "DEMO_NOTE",
    "RANDOM_NOTE",
    "is_demo_ref",
    "weights_note",
    "demo_model",
    "demo_dir",
]

WEIGHTS = Path(__file__).resolve().parent / "weights"
DEMO_NOTE = "DEMO MODEL: trained on a few public daily series, not the published Kronos"
RANDOM_NOTE = "RANDOM WEIGHTS"  # what a random:<size> model's labels say


@dataclass(frozen=True)
class DemoModel:
    name: str
    model_sha256: str
    tokenizer_sha256: str
    max_context: int  # the context it was trained with (the training windows' length)
    lookback: int  # bars each training window was normalised over: use at least this many
    description: str

    @property
    def ref(self) -> str:
        return f"demo:{self.name}"

    @property
    def card(self) -> Path:
        return WEIGHTS / self.name / "MODEL_CARD.md"


DEMO_MODELS: dict[str, DemoModel] = {
    m.name: m
    for m in (
        DemoModel(
            name="daily",
            model_sha256="0ced0d7dd897dcef61bdebdb348c11c7858b5f8c33b771f14a1c79f1f60048df",
            tokenizer_sha256="5b8968034333f3ff54a773dc9ccf8dba12a2faaed62a6e70bed097b02f53a810",
            max_context=80,
            lookback=64,
            description="daily bars: S&P 500, NASDAQ, MSFT (1993-2016) and synthetic markets",
        ),
    )
}
DEFAULT_DEMO = "daily"


def is_demo_ref(ref: str) -> bool:
    return ref == "demo" or ref.startswith("demo:")


def weights_note(ref: str) -> str:
    """What a label must say about a reference's weights: ``DEMO_NOTE``, ``RANDOM WEIGHTS`` or nothing."""
    if is_demo_ref(ref):
        return DEMO_NOTE
    return RANDOM_NOTE if ref.startswith("random:") else ""


def demo_model(ref: str) -> DemoModel:
    """The ``DemoModel`` for ``demo`` / ``demo:<name>``; an unknown name is a ValueError naming them."""
    name = DEFAULT_DEMO if ref == "demo" else ref.split(":", 1)[1]
    if name not in DEMO_MODELS:
        raise ValueError(
            f"unknown demo model {ref!r}; use 'demo' or one of {[m.ref for m in DEMO_MODELS.values()]}"
        )
    return DEMO_MODELS[name]


def demo_dir(ref: str, kind: str) -> tuple[Path, str]:
    """(directory, pinned sha256) of a demo model's ``model`` or ``tokenizer`` part."""
    m = demo_model(ref)
    directory = WEIGHTS / m.name / kind
    if not (directory / "model.safetensors").is_file():
        raise ValueError(
            f"{m.ref}: the packaged weights are missing ({directory}); reinstall kronos-batch, or rebuild "
            "them with `python -m training.demo train` (see its MODEL_CARD.md)"
        )
    return directory, (m.model_sha256 if kind == "model" else m.tokenizer_sha256)
