"""Batch-invariant kernels: a row's arithmetic does not depend on the other rows in its call.

A sampled token whose uniform lands near a CDF boundary flips on a last-bit difference in its logits, and
the sample path then diverges. So "a series' paths depend only on its inputs, seed and symbol" needs every
operation on the way to the logits to give a row the same bits whatever shares its batch: other series,
other lengths (the batch's padded length, the KV buffer's capacity), another batch size, another thread
count. Measured on x86_64, torch 2.13.0 (MKL sgemm, 1-16 threads; ``benchmarks/probe_batch_invariance.py``):

- ``nn.Linear`` (one sgemm over the M flattened rows): a row gets the same bits for every M that is a
  multiple of 4 (4 ... 16384, at any position in the batch); M = 1, 2, 3, and with 2 threads M = 5-7 and
  9-11 (a thread's share of 1-3 rows), take other kernels and differ in the last bits. :class:`Linear`
  pads the rows to a multiple of :data:`ROW_QUANTUM` with zeros, so the call never takes those kernels.
  Every step of a generation batch of 8 or more paths is already a multiple of 4: no padding, no cost.
- ``scaled_dot_product_attention``: its CPU kernels split the keys into blocks sized by the key length,
  so a decode step's output moves with the KV buffer's padded length and with the other rows, and a causal
  prefill's with the batch's padded length. :func:`attention` is the plain masked matmul-softmax: the
  scores are dot products over the head dimension, masked keys contribute exact zeros to the softmax sum
  and to the weighted sum of values, so a row's output is the same for any key capacity, padded length,
  batch or thread count (measured bit-identical at every capacity from the valid length to 1024), provided
  its two batched products stay in one kernel class: they take other kernels below 12 query rows (4 and 8
  rows differ from 12 and more) and below 12 keys. So multi-token queries are padded to a multiple of 4,
  at least 16, and fewer than 16 keys are padded with keys nobody sees; one-query steps need no padding.

Normalisations (RMSNorm, L2), embeddings, RoPE and the element-wise ops are per row already. The sampler
(softmax, cumsum, searchsorted over each row's logits) is too. CUDA is not covered by these measurements:
cuBLAS picks kernels (and split-K) by shape, so on a GPU the promise is "equal up to float rounding".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ROW_QUANTUM", "Linear", "attention", "set_batch_invariant"]

ROW_QUANTUM = 4
_Q_MIN, _Q_BLOCK = 16, 64  # causal attention: length padded to a multiple of 16, queries in blocks of 64
_SCORE_BUDGET = 1 << 20  # floats per score tensor (4 MiB)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and checkpoint keys) that pads its flattened rows to a multiple of
    :data:`ROW_QUANTUM` while ``batch_invariant`` is set, so a row's output never depends on how many rows
    share the call."""

    batch_invariant = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.batch_invariant:
            return F.linear(x, self.weight, self.bias)
        k = x.shape[-1]
        m = x.numel() // k if k else 0
        flat = x.reshape(m, k)  # always one 2-D sgemm (a strided 3-D input may take another path)
        pad = -m % ROW_QUANTUM
        if pad:
            flat = torch.cat([flat, flat.new_zeros(pad, k)])
        out = F.linear(flat, self.weight, self.bias)
        return (out[:m] if pad else out).view(*x.shape[:-1], out.shape[-1])


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd), masked) v with per-row arithmetic independent of the batch.

    Args:
        q: (B, H, Tq, hd); k, v: (B, H, S, hd), any strides (cache views are fine).
        mask: bool (B, 1, Tq, S) or broadcastable to it, True where a key may be seen (unless causal).
        causal: query t sees keys 0..t (Tq == S, no ``mask``).
    Returns (B, H, Tq, hd). Every query row must see at least one key. Work is split into chunks of rows (and
    causal queries into blocks) that keep each score tensor under 4 MiB: cache-sized, and a 64-series prefill
    at 512 tokens would otherwise hold GiBs of scores.
    """
    if causal:
        if mask is not None or q.shape[2] != k.shape[2]:
            raise ValueError("causal attention takes no mask and as many queries as keys")
        return _causal(q, k, v)
    b, h, tq, _ = q.shape
    if k.shape[2] < _Q_MIN:
        # fewer than 12 keys take another score kernel (measured): pad with keys nobody sees
        pad = _Q_MIN - k.shape[2]
        k, v = F.pad(k, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
        if mask is None:
            mask = torch.ones(1, 1, tq, k.shape[2] - pad, dtype=torch.bool, device=q.device)
        mask = F.pad(mask, (0, pad), value=False)
    if tq > 1 and (tq < _Q_MIN or tq % ROW_QUANTUM):
        # the score and value GEMMs have tq rows: pad them as causal blocks are padded (the padding
        # queries see key 0 only, so their softmax is defined; their output is dropped)
        pad = max(_Q_MIN, tq + (-tq % ROW_QUANTUM)) - tq
        q = F.pad(q, (0, 0, 0, pad))
        if mask is None:
            mask = torch.ones(1, 1, tq, k.shape[2], dtype=torch.bool, device=q.device)
        extra = torch.zeros(*mask.shape[:2], pad, mask.shape[-1], dtype=torch.bool, device=mask.device)
        extra[..., 0] = True
        return attention(q, k, v, torch.cat([mask.expand(*mask.shape[:2], tq, -1), extra], 2))[:, :, :tq]
    step = max(1, _SCORE_BUDGET // max(1, h * tq * k.shape[2]))
    if step >= b:
        return _attend(q, k, v, mask)
    out = q.new_empty(b, h, tq, v.shape[-1])
    for a in range(0, b, step):
        sl = slice(a, min(a + step, b))
        m = None if mask is None else (mask[sl] if mask.dim() == 4 and mask.shape[0] == b else mask)
        out[sl] = _attend(q[sl], k[sl], v[sl], m)
    return out


def _causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention in blocks of _Q_BLOCK queries; block [a, e) reads keys [0, e) only (half the work of
    a full T x T product). The length is padded to a multiple of _Q_MIN with zero tokens after the last (no
    real query sees them), so every block has 16-64 rows: the score and value GEMMs of 4 or 8 rows take other
    kernels than 12 and more (measured), and a row's block never depends on the batch's padded length."""
    b, h, t, hd = q.shape
    pad = -t % _Q_MIN
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    tp = t + pad
    out = q.new_empty(b, h, tp, v.shape[-1])
    idx = torch.arange(tp, device=q.device)
    for a in range(0, tp, _Q_BLOCK):
        e = min(a + _Q_BLOCK, tp)
        keep = idx[:e].unsqueeze(0) <= idx[a:e].unsqueeze(1)  # (e - a, e)
        step = max(1, _SCORE_BUDGET // (h * (e - a) * e))
        for r in range(0, b, step):
            rs = slice(r, min(r + step, b))
            out[rs, :, a:e] = _attend(q[rs, :, a:e], k[rs, :, :e], v[rs, :, :e], keep)
    return out[:, :, :t] if pad else out


def _attend(q, k, v, mask):
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-1, -2))
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def set_batch_invariant(module: nn.Module, on: bool) -> None:
    """Switch every batch-invariant kernel under ``module`` on (the default) or off (plain sgemm and
    ``scaled_dot_product_attention``: the same values up to float rounding; for measuring the cost)."""
    for m in module.modules():
        if hasattr(type(m), "batch_invariant"):
            m.batch_invariant = on
