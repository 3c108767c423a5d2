"""Sampling: one parameter object, upstream's logit filters, and per-series counter-based randomness.

Every sample path draws its uniforms from a hash of (path key, step, which token), where the path key
comes from (seed, symbol, path index). A path's draws therefore depend neither on the other series
in the batch nor on the batch size, and nothing touches torch's global RNG. The hash runs on the
device, so the generation loop needs no host round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from .settings import SamplingParams

__all__ = ["SamplingParams", "path_keys", "uniforms", "filter_logits", "sample_tokens"]

_MASK32 = 0xFFFFFFFF


def path_keys(seed: int | Sequence[int], symbols: Sequence[str], sample_count: int) -> torch.Tensor:
    """(N * sample_count,) int64 keys in [0, 2^32), row-major (series, path).

    ``seed`` is one seed for every series or one per series.
    """
    seeds = [seed] * len(symbols) if isinstance(seed, int) else list(seed)
    out = []
    for seed, key in zip(seeds, symbols, strict=True):
        for path in range(sample_count):
            digest = hashlib.blake2b(f"{seed}\x1f{key}\x1f{path}".encode(), digest_size=4).digest()
            out.append(int.from_bytes(digest, "little"))
    return torch.tensor(out, dtype=torch.int64)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # A 32-bit avalanche hash on int64 tensors; constants < 2^31 keep every product below 2^63.
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _MASK32
    x = x ^ (x >> 16)
    return x


def uniforms(keys: torch.Tensor, counter: int) -> torch.Tensor:
    """(R,) float32 uniforms in [0, 1) for draw number ``counter`` of each row key."""
    h = _mix32(keys ^ _mix32(torch.full_like(keys, (counter * 0x9E3779B1 + 1) & _MASK32)))
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Upstream's top-k / nucleus filter on (R, V) logits; filtered entries become -inf. Ties are kept."""
    if top_k > 0:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cum = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the first token above the threshold
        remove[..., 0] = False
        remove = remove.scatter(-1, sorted_idx, remove)
        return logits.masked_fill(remove, float("-inf"))
    return logits


def sample_tokens(logits: torch.Tensor, params: SamplingParams, u: torch.Tensor) -> torch.Tensor:
    """Draw one token per row of (R, V) logits by inverse CDF with the row's uniform ``u`` (R,).

    Returns (R,) int64. With ``top_k=1`` this is the argmax whatever ``u`` is.
    """
    logits = logits.float() / params.temperature
    logits = filter_logits(logits, params.top_k, params.top_p)
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
    target = (u * cdf[:, -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return idx.clamp_max(logits.size(-1) - 1)
