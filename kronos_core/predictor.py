"""KronosPredictor: upstream's drop-in ``predict`` / ``predict_batch`` plus ``forecast`` for pipelines."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .config import SIZES
from .demo import demo_model, is_demo_ref
from .features import denormalize, normalize, time_features
from .generation import generate
from .loading import resolve_device, resolve_dtype
from .model import Kronos
from .result import ForecastResult, series_flags, summarize_paths
from .rules import DEFAULT_QUANTILES, FIELDS, check_quantile_levels
from .sampling import path_keys
from .series import Series, validate_batch
from .settings import CACHE_MODES, PredictorSpec, SamplingParams
from .tokenizer import KronosTokenizer

__all__ = ["KronosPredictor", "PredictorSpec", "DEFAULT_QUANTILES", "default_max_context"]

log = logging.getLogger(__name__)
_FALLBACK_CONTEXT = 512


def default_max_context(model: Kronos, ref: str | None = None) -> int:
    """The context a model was published with: by its ``demo:<name>``, ``random:<size>`` or hub id, else by
    its config matching a named size (a local copy of Kronos-mini gets 2048), else 512."""
    ref = ref or getattr(getattr(model, "source", None), "ref", "") or ""
    if is_demo_ref(ref):
        return demo_model(ref).max_context
    if ref.startswith("random:") and ref.split(":")[1] in SIZES:
        return SIZES[ref.split(":")[1]].max_context
    for size in SIZES.values():
        if size.hub_model and ref.rstrip("/").lower() == size.hub_model.lower():
            return size.max_context
    matches = {size.max_context for size in SIZES.values() if size.model == model.config}
    if len(matches) == 1:
        return matches.pop()
    log.info(
        "max_context: %r matches no published size; using %d (set max_context to change it)",
        ref,
        _FALLBACK_CONTEXT,
    )
    return _FALLBACK_CONTEXT


@dataclass
class _Normalised:
    decoded: np.ndarray  # (N, S, P, 6) normalised
    tokens: np.ndarray  # (N, S, P, 2)
    means: np.ndarray  # (N, 6)
    stds: np.ndarray  # (N, 6)


class KronosPredictor:
    """Forecasts with a Kronos model and tokenizer.

    Args:
        model, tokenizer: loaded with ``from_pretrained`` (or ``KronosPredictor.from_pretrained``).
        device: where to run; None keeps the model's device ('cpu', 'cuda', 'cuda:N', 'mps').
        max_context: window length in tokens (512 for Kronos-small/base, 2048 for mini).
        clip: normalised inputs are clipped to ±clip.
        cache: 'exact' (default, equals upstream), 'rolling' (faster, not equal after the window slides)
            or 'reference' (full recompute, slow; for checks).
        batch_size: sample paths (series x sample_count) per generation batch; bounds the KV-cache memory
            (Kronos-small fp32: 16 MiB per path at a 512-token window). A series' paths are never split.
    """

    def __init__(
        self,
        model: Kronos,
        tokenizer: KronosTokenizer,
        device=None,
        max_context: int = 512,
        clip: float = 5,
        cache: str = "exact",
        batch_size: int = 128,
    ):
        if not isinstance(model, Kronos):
            raise TypeError(f"model must be a kronos_core.Kronos, got {type(model).__name__}")
        if not isinstance(tokenizer, KronosTokenizer):
            raise TypeError(
                f"tokenizer must be a kronos_core.KronosTokenizer, got {type(tokenizer).__name__}"
            )
        if model.config.s1_bits != tokenizer.s1_bits or model.config.s2_bits != tokenizer.s2_bits:
            raise ValueError(
                f"model bits (s1={model.config.s1_bits}, s2={model.config.s2_bits}) do not match the "
                f"tokenizer's (s1={tokenizer.s1_bits}, s2={tokenizer.s2_bits}); pair them correctly"
            )
        if isinstance(max_context, bool) or not isinstance(max_context, int) or max_context < 1:
            raise ValueError(f"max_context must be an int >= 1, got {max_context!r}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        dev = next(model.parameters()).device if device is None else resolve_device(device)
        self.model = model.to(dev).eval()  # eval matters: the dependency layer differs in training mode
        self.tokenizer = tokenizer.to(dev).eval()
        self.device = dev
        self.max_context = max_context
        self.clip = float(clip)
        self.cache = cache
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        model_ref: str,
        tokenizer_ref: str,
        device=None,
        dtype=None,
        model_revision: str | None = None,
        tokenizer_revision: str | None = None,
        max_context: int | None = None,
        **kwargs,
    ) -> KronosPredictor:
        """Load both parts (see ``Kronos.from_pretrained``) and build a predictor. ``max_context`` defaults
        to the model's published context (``default_max_context``)."""
        dev, dt = resolve_device(device), resolve_dtype(dtype)
        model = Kronos.from_pretrained(model_ref, revision=model_revision, device=dev, dtype=dt)
        tokenizer = KronosTokenizer.from_pretrained(
            tokenizer_ref, revision=tokenizer_revision, device=dev, dtype=dt
        )
        if max_context is None:
            max_context = default_max_context(model, str(model_ref))
        return cls(model, tokenizer, device=dev, max_context=max_context, **kwargs)

    @classmethod
    def from_spec(cls, spec: PredictorSpec) -> KronosPredictor:
        """Load what a ``PredictorSpec`` names."""
        if not isinstance(spec, PredictorSpec):
            raise TypeError(f"spec must be a kronos_core.PredictorSpec, got {type(spec).__name__}")
        return cls.from_pretrained(
            spec.model,
            spec.tokenizer,
            device=spec.device,
            dtype=spec.dtype,
            model_revision=spec.model_revision,
            tokenizer_revision=spec.tokenizer_revision,
            max_context=spec.max_context,
            cache=spec.cache,
            batch_size=spec.batch_size,
        )

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def describe(self) -> dict:
        """Identity of what this predictor runs: for lineage columns and HTTP responses."""
        ms, ts = getattr(self.model, "source", None), getattr(self.tokenizer, "source", None)
        return {
            "model": ms.ref if ms else "unknown",
            "model_revision": ms.revision if ms else None,
            "model_sha256": ms.sha256 if ms else None,
            "random_weights": bool(ms and ms.random),
            "demo_model": bool(ms and ms.demo),
            "label": ms.label if ms else "unknown",
            "tokenizer": ts.ref if ts else "unknown",
            "tokenizer_revision": ts.revision if ts else None,
            "tokenizer_sha256": ts.sha256 if ts else None,
            "base_model": ms.base if ms else None,
            "training_run": ms.training_run if ms else None,
            "max_context": self.max_context,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "cache": self.cache,
        }

    # ------------------------------------------------------------------ core
    def _run(
        self,
        series: Sequence[Series],
        pred_len: int,
        params: SamplingParams,
        keys: torch.Tensor,
        cache: str,
        progress: Callable[[int, int], None] | None,
    ) -> _Normalised:
        n, s = len(series), params.sample_count
        normed = [normalize(x.values, self.clip) for x in series]
        decoded = np.empty((n, s, pred_len, 6), dtype=np.float32)
        tokens = np.empty((n, s, pred_len, 2), dtype=np.int64)
        done = 0
        t0 = time.perf_counter()
        per_batch = max(1, self.batch_size // s)
        for a in range(0, n, per_batch):
            b = min(a + per_batch, n)
            x = [torch.from_numpy(normed[i][0]).to(self.device) for i in range(a, b)]
            st = [
                torch.from_numpy(
                    time_features(np.concatenate([series[i].timestamps, series[i].future_timestamps]))
                ).to(self.device)
                for i in range(a, b)
            ]
            out = generate(
                self.model,
                self.tokenizer,
                x,
                st,
                pred_len,
                self.max_context,
                params,
                keys[a * s : b * s],
                cache=cache,
            )
            decoded[a:b] = out.decoded.numpy().reshape(b - a, s, pred_len, 6)
            tokens[a:b] = out.tokens.numpy().reshape(b - a, s, pred_len, 2)
            done = b
            if progress:
                progress(done, n)
            log.debug("forecast: %d/%d series (%.1f series/s)", done, n, done / (time.perf_counter() - t0))
        means = np.stack([m for _, m, _ in normed])
        stds = np.stack([sd for _, _, sd in normed])
        return _Normalised(decoded, tokens, means, stds)

    def forecast(
        self,
        series: Sequence[Series],
        pred_len: int | None = None,
        sampling: SamplingParams | None = None,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        cache: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> ForecastResult:
        """Forecast ragged series in batches; every sample path, the mean, quantiles and ``p_up``.

        Args:
            series: ``kronos_core.Series`` with unique symbols, any lookback lengths (>= 1).
            pred_len: steps to forecast; defaults to the length of the first series' future timestamps.
            sampling: ``SamplingParams`` (seed + symbol fix each series' paths, whatever the batch).
            quantiles: levels in (0, 1) to report.
            cache: override the predictor's cache mode for this call.
            progress: callable(done_series, total_series), called after each batch.
            seeds: optional per-series seeds overriding ``sampling.seed`` (series i gets exactly the paths a
                call with ``seed=seeds[i]`` would give), so requests with different seeds can share a batch.
        """
        if pred_len is None and series and isinstance(series[0], Series):
            pred_len = series[0].pred_len
        validate_batch(series, pred_len)
        sampling = sampling or SamplingParams()
        if not isinstance(sampling, SamplingParams):
            raise TypeError(f"sampling must be a kronos_core.SamplingParams, got {type(sampling).__name__}")
        levels = check_quantile_levels(quantiles)
        cache = cache or self.cache
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        if seeds is not None:
            seeds = list(seeds)
            if len(seeds) != len(series):
                raise ValueError(
                    f"seeds has {len(seeds)} entries for {len(series)} series; give one per series"
                )
            bad = [v for v in seeds if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0]
            if bad:
                raise ValueError(f"seeds must be ints >= 0, got {bad[0]!r}")
            seeds = [int(v) for v in seeds]
        keys = path_keys(
            sampling.seed if seeds is None else seeds, [x.symbol for x in series], sampling.sample_count
        )
        out = self._run(series, pred_len, sampling, keys, cache, progress)
        paths = denormalize(out.decoded, out.means[:, None, None, :], out.stds[:, None, None, :]).astype(
            np.float32
        )
        last_close = np.array([x.values[-1, FIELDS.index("close")] for x in series])
        mean, q, p_up, p_flat = summarize_paths(paths, last_close, levels, self.clip)
        return ForecastResult(
            symbols=[x.symbol for x in series],
            future_timestamps=np.stack([x.future_timestamps for x in series]),
            paths=paths,
            mean=mean,
            quantile_levels=levels,
            quantiles=q,
            p_up=p_up,
            p_flat=p_flat,
            last_close=last_close,
            tokens=out.tokens,
            flags=series_flags(mean, q),
        )

    # ------------------------------------------------------- upstream drop-in
    def predict(
        self, df, x_timestamp, y_timestamp, pred_len, T=1.0, top_k=0, top_p=0.9, sample_count=1, verbose=False
    ):
        """Upstream's ``predict``: a DataFrame of the mean forecast indexed by ``y_timestamp``."""
        return self.predict_batch(
            [df],
            [x_timestamp],
            [y_timestamp],
            pred_len,
            T=T,
            top_k=top_k,
            top_p=top_p,
            sample_count=sample_count,
            verbose=verbose,
        )[0]

    def predict_batch(
        self,
        df_list,
        x_timestamp_list,
        y_timestamp_list,
        pred_len,
        T=1.0,
        top_k=0,
        top_p=0.9,
        sample_count=1,
        verbose=False,
    ):
        """Upstream's ``predict_batch``; unlike upstream, lookback lengths may differ between series.

        Randomness comes from torch's global generator (as upstream): ``torch.manual_seed`` fixes it.
        """
        import pandas as pd

        for name, value in (
            ("df_list", df_list),
            ("x_timestamp_list", x_timestamp_list),
            ("y_timestamp_list", y_timestamp_list),
        ):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{name} must be a list or tuple, got {type(value).__name__}")
        if not len(df_list) == len(x_timestamp_list) == len(y_timestamp_list):
            raise ValueError(
                f"df_list, x_timestamp_list and y_timestamp_list must have the same length, got "
                f"{len(df_list)}, {len(x_timestamp_list)}, {len(y_timestamp_list)}"
            )
        series = []
        for i, (df, xt, yt) in enumerate(zip(df_list, x_timestamp_list, y_timestamp_list, strict=True)):
            if not isinstance(df, pd.DataFrame):
                raise ValueError(f"input at index {i} is not a pandas DataFrame")
            if len(yt) != pred_len:
                raise ValueError(
                    f"y_timestamp at index {i} has {len(yt)} timestamps; it must equal pred_len={pred_len}"
                )
            series.append(Series.from_frame(str(i), df, timestamps=xt, future_timestamps=yt))
        params = SamplingParams(
            temperature=float(T), top_k=int(top_k), top_p=float(top_p), sample_count=int(sample_count)
        )
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # global RNG, like upstream's multinomial
        keys = path_keys(seed, [x.symbol for x in series], params.sample_count)
        progress = (lambda d, t: log.info("predict_batch: %d/%d series", d, t)) if verbose else None
        out = self._run(series, pred_len, params, keys, self.cache, progress)
        frames = []
        for i, yt in enumerate(y_timestamp_list):
            z = out.decoded[i].mean(axis=0)  # mean over paths in normalised space, as upstream
            preds = denormalize(z, out.means[i], out.stds[i])
            frames.append(pd.DataFrame(preds, columns=list(FIELDS), index=yt))
        return frames
