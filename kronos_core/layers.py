"""Transformer building blocks shared by the tokenizer and the model.

Module and parameter names mirror the upstream checkpoints (``q_proj``, ``rotary.inv_freq``, ``ffn.w1``…)
so a published ``model.safetensors`` loads with strict keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .invariant import Linear, attention

__all__ = [
    "RMSNorm",
    "FeedForward",
    "Rotary",
    "SelfAttention",
    "TransformerBlock",
    "rope_tables",
    "run_blocks",
]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(torch.mean(xf * xf, dim=-1, keepdim=True) + self.eps)
        return out.type_as(x) * self.weight


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), then dropout (training only, as upstream)."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float = 0.0):
        super().__init__()
        self.w1 = Linear(d_model, ff_dim, bias=False)
        self.w3 = Linear(d_model, ff_dim, bias=False)
        self.w2 = Linear(ff_dim, d_model, bias=False)
        self.ffn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class Rotary(nn.Module):
    """Holds ``inv_freq`` (a checkpoint buffer); tables come from :func:`rope_tables`."""

    def __init__(self, head_dim: int):
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq)


def rope_tables(inv_freq: torch.Tensor, n_pos: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (n_pos, head_dim) for positions 0..n_pos-1, as upstream (fp32 outer product)."""
    t = torch.arange(n_pos, device=inv_freq.device, dtype=inv_freq.dtype)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, hd); cos/sin broadcastable to it: (T, hd) or (B, 1, T, hd)."""
    return x * cos + _rotate_half(x) * sin


class SelfAttention(nn.Module):
    """Causal multi-head self-attention with RoPE and an optional preallocated KV cache.

    Dropout (attention weights, then the output projection) applies in training mode only, as upstream;
    the cached ``step`` path is inference-only. With ``batch_invariant`` (the default) inference attends
    through :func:`~kronos_core.invariant.attention`, whose rows do not depend on the batch; off (or in
    training) through ``scaled_dot_product_attention``."""

    batch_invariant = True

    def __init__(self, d_model: int, n_heads: int, attn_dropout: float = 0.0, resid_dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = Linear(d_model, d_model)
        self.k_proj = Linear(d_model, d_model)
        self.v_proj = Linear(d_model, d_model)
        self.out_proj = Linear(d_model, d_model)
        self.rotary = Rotary(self.head_dim)
        self.attn_dropout_p = attn_dropout
        self.resid_dropout = nn.Dropout(resid_dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_out: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Full causal pass over x (B, T, d) at positions 0..T-1 (cos/sin (T, hd)).

        Right padding is harmless: causal rows never see later positions. If ``kv_out`` is given,
        the rotated K and V are written into its first T slots (B, H, >=T, hd).
        """
        b, t, d = x.shape
        q = apply_rope(self._heads(self.q_proj(x)), cos, sin)
        k = apply_rope(self._heads(self.k_proj(x)), cos, sin)
        v = self._heads(self.v_proj(x))
        if kv_out is not None:
            kv_out[0][:, :, :t].copy_(k)
            kv_out[1][:, :, :t].copy_(v)
        if self.batch_invariant and not self.training:
            out = attention(q, k, v, causal=True)
        else:
            drop = self.attn_dropout_p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        return self.resid_dropout(self.out_proj(out.transpose(1, 2).reshape(b, t, d)))

    def step(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        slot: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Tq new tokens per row (1 in a generation step): x (B, Tq, d), cos/sin (B, 1, Tq, hd) at their
        positions.

        Writes K/V at ``slot`` (B,) or (B, Tq) of the caches (B, H, S, hd), then attends over the slots that
        ``mask`` (B, 1, Tq, S') marks valid, S' <= S.
        """
        b, tq, _ = x.shape
        q = apply_rope(self._heads(self.q_proj(x)), cos, sin)
        k = apply_rope(self._heads(self.k_proj(x)), cos, sin)
        v = self._heads(self.v_proj(x))
        rows = torch.arange(b, device=x.device).unsqueeze(1)
        slot = slot.view(b, tq)
        k_cache[rows, :, slot] = k.transpose(1, 2)  # (B, Tq, H, hd) into (B, H, S, hd) at each row's slots
        v_cache[rows, :, slot] = v.transpose(1, 2)
        s = mask.shape[-1]
        attend = attention if self.batch_invariant else F.scaled_dot_product_attention
        out = attend(q, k_cache[:, :, :s], v_cache[:, :, :s], mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, tq, -1))


class TransformerBlock(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ff_dim: int,
        ffn_dropout: float = 0.0,
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.self_attn = SelfAttention(d_model, n_heads, attn_dropout, resid_dropout)
        self.norm2 = RMSNorm(d_model)
        self.ffn = FeedForward(d_model, ff_dim, ffn_dropout)

    def forward(self, x, cos, sin, kv_out=None):
        x = x + self.self_attn(self.norm1(x), cos, sin, kv_out)
        return x + self.ffn(self.norm2(x))

    def step(self, x, cos, sin, k_cache, v_cache, slot, mask):
        x = x + self.self_attn.step(self.norm1(x), cos, sin, k_cache, v_cache, slot, mask)
        return x + self.ffn(self.norm2(x))


def fixed_sinusoid_table(c_in: int, d_model: int) -> torch.Tensor:
    """The fixed temporal-embedding table upstream uses when ``learn_te`` is false."""
    w = torch.zeros(c_in, d_model)
    position = torch.arange(0, c_in).float().unsqueeze(1)
    div_term = (torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model)).exp()
    w[:, 0::2] = torch.sin(position * div_term)
    w[:, 1::2] = torch.cos(position * div_term)
    return w


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, cos, sin, checkpointing: bool = False) -> torch.Tensor:
    """x through ``blocks`` (full causal passes). With ``checkpointing`` in training mode each block's
    activations are recomputed in the backward pass instead of stored (less memory, ~1 more forward)."""
    for block in blocks:
        if checkpointing and torch.is_grad_enabled() and block.training:
            x = torch.utils.checkpoint.checkpoint(block, x, cos, sin, use_reentrant=False)
        else:
            x = block(x, cos, sin)
    return x
