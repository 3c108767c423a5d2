"""Binary spherical quantisation (BSQ) for training the tokenizer: the straight-through codes and the
quantiser loss, computed as upstream's ``BSQuantizer`` (BinarySphericalQuantizer with soft entropy,
analytical per-sample entropy, group codebook entropy, l2 normalisation, inverse temperature 1).

    z        = normalize(quant_embed(h))                       (B, T, D), D = s1_bits + s2_bits
    codes    = (z + (sign(z) - z).detach()) / sqrt(D)          straight-through, +-1/sqrt(D)
    commit   = beta * mean_{B,T}( sum_D (codes.detach() - z)^2 )
    p        = sigmoid(-4 z / sqrt(D))                         soft probability of each bit
    H_sample = mean_{B,T} sum_D H(p)                           per-sample bit entropy
    H_book   = sum_D H(mean_{B,T} p)                           entropy of the average bit usage
    loss     = commit + zeta * (gamma0 * H_sample - gamma * H_book)

Upstream also computes a soft assignment of each group of ``group_size`` bits to its 2^group_size codes,
but with the analytical per-sample entropy it overwrites that probability with the per-bit one before
averaging, so the codebook term is the per-bit form above; this module computes only what the loss uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bsq_quantize"]

_LOG_EPS = 1e-8


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p + _LOG_EPS)).sum(dim=-1)


def bsq_quantize(
    z: torch.Tensor, beta: float, gamma0: float, gamma: float, zeta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """z (B, T, D) pre-quantisation embeddings -> (codes (B, T, D), quantiser loss ())."""
    d = z.shape[-1]
    z = F.normalize(z, dim=-1)
    zhat = torch.where(z > 0, torch.ones_like(z), -torch.ones_like(z))
    scale = 1.0 / d**0.5
    codes = (z + (zhat - z).detach()) * scale
    p = torch.sigmoid(-4 * z * scale)
    prob = torch.stack([p, 1 - p], dim=-1)  # (B, T, D, 2)
    per_sample = _entropy(prob).sum(dim=-1).mean()
    codebook = _entropy(prob.reshape(-1, d, 2).mean(dim=0)).sum()
    commit = beta * ((codes.detach() - z) ** 2).sum(dim=-1).mean()
    return codes, commit + zeta * (gamma0 * per_sample - gamma * codebook)
