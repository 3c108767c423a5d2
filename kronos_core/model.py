"""The Kronos autoregressive transformer with its dependency-aware s2 head (inference and training).

Per position t the model reads the (s1, s2) token pair and the time features of bar t, and predicts the
s1 token of bar t+1 from the last hidden row; the s2 token is then predicted by the dependency-aware
layer: ``proj_s2(RMSNorm(h_last + CrossAttn(q=emb_s1(s1), k=v=h_window)))`` where the query is the raw s1
embedding, no rotation applies (query length 1 puts everything at position 0) and no mask applies
(eval mode) — see kronos-reference.md §5.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import KronosConfig
from .invariant import Linear, attention
from .layers import (
    RMSNorm,
    Rotary,
    TransformerBlock,
    apply_rope,
    fixed_sinusoid_table,
    rope_tables,
    run_blocks,
)
from .loading import PretrainedMixin

__all__ = ["Kronos"]

DEP_HEADS = 4  # upstream's DependencyAwareLayer default, whatever the model's n_heads


class HierarchicalEmbedding(nn.Module):
    def __init__(self, cfg: KronosConfig):
        super().__init__()
        self.d_model = cfg.d_model
        self.emb_s1 = nn.Embedding(2**cfg.s1_bits, cfg.d_model)
        self.emb_s2 = nn.Embedding(2**cfg.s2_bits, cfg.d_model)
        self.fusion_proj = Linear(2 * cfg.d_model, cfg.d_model)

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        scale = math.sqrt(self.d_model)
        return self.fusion_proj(torch.cat([self.emb_s1(s1) * scale, self.emb_s2(s2) * scale], dim=-1))


class _FixedEmbedding(nn.Module):
    """Upstream's sinusoid table (key ``<name>.emb.weight``), frozen."""

    def __init__(self, c_in: int, d_model: int):
        super().__init__()
        self.emb = nn.Embedding(c_in, d_model)
        self.emb.weight.requires_grad_(False)
        self.emb.fixed_sinusoid = True
        with torch.no_grad():
            self.emb.weight.copy_(fixed_sinusoid_table(c_in, d_model))

    def forward(self, x):
        return self.emb(x)


class TemporalEmbedding(nn.Module):
    """Sum of minute, hour, weekday, day and month embeddings; stamp columns in that order."""

    SIZES = (
        ("minute_embed", 60),
        ("hour_embed", 24),
        ("weekday_embed", 7),
        ("day_embed", 32),
        ("month_embed", 13),
    )

    def __init__(self, d_model: int, learn_te: bool):
        super().__init__()
        for name, size in self.SIZES:
            setattr(self, name, nn.Embedding(size, d_model) if learn_te else _FixedEmbedding(size, d_model))

    def forward(self, stamp: torch.Tensor) -> torch.Tensor:
        s = stamp.long()
        # summation order as upstream: hour + weekday + day + month + minute
        return (
            self.hour_embed(s[..., 1])
            + self.weekday_embed(s[..., 2])
            + self.day_embed(s[..., 3])
            + self.month_embed(s[..., 4])
            + self.minute_embed(s[..., 0])
        )


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.q_proj = Linear(d_model, d_model)
        self.k_proj = Linear(d_model, d_model)
        self.v_proj = Linear(d_model, d_model)
        self.out_proj = Linear(d_model, d_model)
        self.rotary = Rotary(self.head_dim)  # position 0 only: the identity, kept for checkpoint keys


class DependencyAwareLayer(nn.Module):
    batch_invariant = True  # inference cross-attention through invariant.attention (see SelfAttention)

    def __init__(self, d_model: int):
        super().__init__()
        self.cross_attn = CrossAttention(d_model, DEP_HEADS)
        self.norm = RMSNorm(d_model)

    def kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context (B, T, d) -> K, V (B, 4, T, hd)."""
        a = self.cross_attn
        b, t, _ = context.shape
        k = a.k_proj(context).view(b, t, a.n_heads, a.head_dim).transpose(1, 2)
        v = a.v_proj(context).view(b, t, a.n_heads, a.head_dim).transpose(1, 2)
        return k, v

    def forward(
        self,
        h_last: torch.Tensor,
        s1_embed: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h_last (B, d), s1_embed (B, d), K/V (B, 4, S, hd), mask (B, 1, 1, S) or None -> (B, d)."""
        a = self.cross_attn
        b, d = h_last.shape
        q = a.q_proj(s1_embed).view(b, 1, a.n_heads, a.head_dim).transpose(1, 2)
        attend = attention if self.batch_invariant else F.scaled_dot_product_attention
        out = attend(q, k, v, mask)
        out = a.out_proj(out.transpose(1, 2).reshape(b, d))
        return self.norm(h_last + out)

    def forward_seq(self, hidden: torch.Tensor, s1_embed: torch.Tensor, causal: bool) -> torch.Tensor:
        """The training form (upstream's train-mode cross attention): hidden (B, T, d) and the teacher-forced
        s1 embeddings (B, T, d) of the next tokens -> (B, T, d). Query and keys are rotated at positions
        0..T-1; ``causal`` (upstream: ``self.training``) lets position t see hidden states 0..t only."""
        a = self.cross_attn
        b, t, d = hidden.shape
        cos, sin = rope_tables(a.rotary.inv_freq, t, hidden.dtype)
        q = apply_rope(a.q_proj(s1_embed).view(b, t, a.n_heads, a.head_dim).transpose(1, 2), cos, sin)
        k, v = self.kv(hidden)
        k = apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out = a.out_proj(out.transpose(1, 2).reshape(b, t, d))
        return self.norm(hidden + out)


class DualHead(nn.Module):
    def __init__(self, cfg: KronosConfig):
        super().__init__()
        self.proj_s1 = Linear(cfg.d_model, 2**cfg.s1_bits)
        self.proj_s2 = Linear(cfg.d_model, 2**cfg.s2_bits)


class Kronos(PretrainedMixin, nn.Module):
    config_class = KronosConfig
    kind = "model"

    def __init__(self, config: KronosConfig):
        super().__init__()
        self.config = config
        c = config
        self.embedding = HierarchicalEmbedding(c)
        self.time_emb = TemporalEmbedding(c.d_model, c.learn_te)
        self.token_drop = nn.Dropout(c.token_dropout_p)
        self.transformer = nn.ModuleList(
            TransformerBlock(
                c.d_model, c.n_heads, c.ff_dim, c.ffn_dropout_p, c.attn_dropout_p, c.resid_dropout_p
            )
            for _ in range(c.n_layers)
        )
        self.norm = RMSNorm(c.d_model)
        self.dep_layer = DependencyAwareLayer(c.d_model)  # upstream builds it without dropout
        self.head = DualHead(c)
        self.gradient_checkpointing = False  # training: recompute block activations in the backward pass

    @property
    def n_heads(self) -> int:
        return self.config.n_heads

    @property
    def head_dim(self) -> int:
        return self.config.d_model // self.config.n_heads

    def rope(self, n_pos: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_tables(self.transformer[0].self_attn.rotary.inv_freq, n_pos, dtype)

    def embed(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and (B, T, 5) time features -> (B, T, d)."""
        return self.embedding(s1, s2) + self.time_emb(stamp)

    def encode_window(self, s1, s2, stamp, cos, sin, kv_out: list | None = None) -> torch.Tensor:
        """Full causal pass over a window starting at position 0 -> final-normed context (B, T, d).

        ``kv_out``: optional list of per-layer (K, V) buffers (B, H, >=T, hd) to fill (KV-cache prefill).
        """
        x = self.embed(s1, s2, stamp)
        for i, block in enumerate(self.transformer):
            x = block(x, cos, sin, None if kv_out is None else kv_out[i])
        return self.norm(x)

    def step(self, s1, s2, stamp, cos, sin, k_cache, v_cache, slot, mask) -> torch.Tensor:
        """One cached step: s1/s2 (B, 1), stamp (B, 1, 5), cos/sin (B, 1, 1, hd); caches (L, B, H, S, hd).
        Returns the final-normed context row (B, 1, d)."""
        x = self.embed(s1, s2, stamp)
        for i, block in enumerate(self.transformer):
            x = block.step(x, cos, sin, k_cache[i], v_cache[i], slot, mask)
        return self.norm(x)

    def forward(
        self,
        s1: torch.Tensor,
        s2: torch.Tensor,
        stamp: torch.Tensor,
        s1_targets: torch.Tensor,
        causal_dep: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training/scoring pass with teacher forcing (upstream: ``use_teacher_forcing=True``).

        Args:
            s1, s2: (B, T) input token ids; stamp: (B, T, 5) their time features.
            s1_targets: (B, T) the s1 ids of the *next* tokens, fed to the dependency-aware layer.
            causal_dep: causal mask in the dependency layer; default ``self.training`` as upstream. Pass True
                for an evaluation loss: without it (upstream's eval mode) position t sees later positions.
        Returns:
            s1 logits (B, T, 2^s1_bits), s2 logits (B, T, 2^s2_bits).
        """
        x = self.token_drop(self.embed(s1, s2, stamp))
        cos, sin = self.rope(s1.shape[1], x.dtype)
        x = self.norm(run_blocks(self.transformer, x, cos, sin, self.gradient_checkpointing))
        causal = self.training if causal_dep is None else causal_dep
        x2 = self.dep_layer.forward_seq(x, self.embedding.emb_s1(s1_targets), causal)
        return self.head.proj_s1(x), self.head.proj_s2(x2)

    def s1_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head.proj_s1(h)

    def s2_logits(self, h_last, s1, dep_k, dep_v, mask=None) -> torch.Tensor:
        """h_last (B, d), sampled s1 (B,), dependency K/V (B, 4, S, hd) -> (B, 2^s2_bits)."""
        x2 = self.dep_layer(h_last, self.embedding.emb_s1(s1), dep_k, dep_v, mask)
        return self.head.proj_s2(x2)
