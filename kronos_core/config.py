"""Model configurations whose keys equal the upstream ``config.json`` keys, and the named sizes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["KronosConfig", "TokenizerConfig", "SIZES", "ModelSize", "config_from_dict"]


def _check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a positive int, got {value!r}")


def _check_prob(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be in [0, 1), got {value!r}")


@dataclass(frozen=True)
class TokenizerConfig:
    """BSQ tokenizer hyper-parameters (upstream ``KronosTokenizer.__init__`` arguments)."""

    d_in: int = 6
    d_model: int = 256
    n_heads: int = 4
    ff_dim: int = 512
    n_enc_layers: int = 4
    n_dec_layers: int = 4
    ffn_dropout_p: float = 0.0
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.0
    s1_bits: int = 10
    s2_bits: int = 10
    beta: float = 0.05
    gamma0: float = 1.0
    gamma: float = 1.1
    zeta: float = 0.05
    group_size: int = 4

    def __post_init__(self) -> None:
        _check_positive(
            self,
            "d_in",
            "d_model",
            "n_heads",
            "ff_dim",
            "n_enc_layers",
            "n_dec_layers",
            "s1_bits",
            "s2_bits",
            "group_size",
        )
        _check_prob(self, "ffn_dropout_p", "attn_dropout_p", "resid_dropout_p")
        if self.d_in != 6:
            raise ValueError(
                f"TokenizerConfig.d_in must be 6 (open, high, low, close, volume, amount), got {self.d_in}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(
                f"TokenizerConfig.d_model={self.d_model} must be divisible by n_heads={self.n_heads}"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(
                "TokenizerConfig: head dim (d_model / n_heads) must be even for rotary embeddings"
            )
        if (self.s1_bits + self.s2_bits) % self.group_size:
            raise ValueError(
                f"TokenizerConfig: s1_bits + s2_bits = {self.s1_bits + self.s2_bits} must be divisible "
                f"by group_size={self.group_size}"
            )

    @property
    def codebook_dim(self) -> int:
        return self.s1_bits + self.s2_bits


@dataclass(frozen=True)
class KronosConfig:
    """Autoregressive transformer hyper-parameters (upstream ``Kronos.__init__`` arguments)."""

    s1_bits: int = 10
    s2_bits: int = 10
    n_layers: int = 8
    d_model: int = 512
    n_heads: int = 8
    ff_dim: int = 1024
    ffn_dropout_p: float = 0.0
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.0
    token_dropout_p: float = 0.0
    learn_te: bool = True

    def __post_init__(self) -> None:
        _check_positive(self, "s1_bits", "s2_bits", "n_layers", "d_model", "n_heads", "ff_dim")
        _check_prob(self, "ffn_dropout_p", "attn_dropout_p", "resid_dropout_p", "token_dropout_p")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"KronosConfig.d_model={self.d_model} must be divisible by n_heads={self.n_heads} "
                "with an even head dim"
            )
        if self.d_model % 4 or (self.d_model // 4) % 2:
            # The dependency-aware layer always has 4 heads (upstream default).
            raise ValueError(
                f"KronosConfig.d_model={self.d_model} must be divisible by 8 (4 dependency heads, even dim)"
            )
        if not isinstance(self.learn_te, bool):
            raise ValueError(f"KronosConfig.learn_te must be a bool, got {self.learn_te!r}")


def config_from_dict(cls: type, data: dict[str, Any], source: str = "config.json"):
    """Build ``cls`` from a ``config.json`` dict; unknown keys are an error naming them."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(
            f"{source}: unknown {cls.__name__} keys {unknown}; expected a subset of {sorted(fields)}. "
            "Is this a tokenizer config passed as a model (or the reverse)?"
        )
    missing = sorted(fields - set(data))
    if missing and cls is KronosConfig and "s1_bits" not in data:
        raise ValueError(f"{source}: missing required keys {missing}")
    try:
        return cls(**data)
    except TypeError as exc:  # wrong value types
        raise ValueError(f"{source}: {exc}") from exc


@dataclass(frozen=True)
class ModelSize:
    """A named size: the model and tokenizer configs plus the context the model was trained with."""

    model: KronosConfig
    tokenizer: TokenizerConfig
    max_context: int
    hub_model: str | None
    hub_tokenizer: str | None


_TOK_BASE = TokenizerConfig()
SIZES: dict[str, ModelSize] = {
    # tiny random models for tests, demos and CI (tens of thousands of parameters)
    "test": ModelSize(
        KronosConfig(s1_bits=6, s2_bits=6, n_layers=2, d_model=32, n_heads=2, ff_dim=64),
        TokenizerConfig(
            d_model=32, n_heads=2, ff_dim=64, n_enc_layers=2, n_dec_layers=2, s1_bits=6, s2_bits=6
        ),
        max_context=64,
        hub_model=None,
        hub_tokenizer=None,
    ),
    "mini": ModelSize(
        KronosConfig(n_layers=4, d_model=256, n_heads=4, ff_dim=512),
        _TOK_BASE,
        max_context=2048,
        hub_model="NeoQuasar/Kronos-mini",
        hub_tokenizer="NeoQuasar/Kronos-Tokenizer-2k",
    ),
    "small": ModelSize(
        KronosConfig(n_layers=8, d_model=512, n_heads=8, ff_dim=1024),
        _TOK_BASE,
        max_context=512,
        hub_model="NeoQuasar/Kronos-small",
        hub_tokenizer="NeoQuasar/Kronos-Tokenizer-base",
    ),
    "base": ModelSize(
        KronosConfig(n_layers=12, d_model=832, n_heads=16, ff_dim=2048),
        _TOK_BASE,
        max_context=512,
        hub_model="NeoQuasar/Kronos-base",
        hub_tokenizer="NeoQuasar/Kronos-Tokenizer-base",
    ),
}
