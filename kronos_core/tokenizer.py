"""The Kronos BSQ tokenizer: OHLCV rows <-> hierarchical (s1, s2) tokens.

encode: embed -> causal RoPE encoder blocks -> quant_embed -> L2-normalise -> sign -> bits -> s1 (first
s1_bits bits) and s2 (the rest), bit k weighted 2^k. decode: bits -> ±1/sqrt(codebook_dim) ->
post_quant_embed -> causal decoder blocks -> head. Both start positions at 0 for every series; ragged
batches are right-padded (causal attention keeps padding invisible to real rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .bsq import bsq_quantize
from .config import TokenizerConfig
from .invariant import Linear
from .layers import TransformerBlock, rope_tables, run_blocks
from .loading import PretrainedMixin

__all__ = ["KronosTokenizer"]


class _BSQBuffers(nn.Module):
    """Holds upstream's ``tokenizer.bsq.basis`` / ``group_basis`` buffers so checkpoints match key for key."""

    def __init__(self, codebook_dim: int, group_size: int):
        super().__init__()
        bsq = nn.Module()
        bsq.register_buffer("basis", 2 ** torch.arange(codebook_dim - 1, -1, -1))
        bsq.register_buffer("group_basis", 2 ** torch.arange(group_size - 1, -1, -1))
        self.bsq = bsq


class KronosTokenizer(PretrainedMixin, nn.Module):
    config_class = TokenizerConfig
    kind = "tokenizer"

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        c = config
        self.s1_bits, self.s2_bits = c.s1_bits, c.s2_bits
        self.codebook_dim = c.codebook_dim
        self.embed = Linear(c.d_in, c.d_model)
        self.head = Linear(c.d_model, c.d_in)
        # upstream builds n_layers - 1 blocks on each side
        drop = (c.ffn_dropout_p, c.attn_dropout_p, c.resid_dropout_p)
        self.encoder = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_heads, c.ff_dim, *drop) for _ in range(c.n_enc_layers - 1)
        )
        self.decoder = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_heads, c.ff_dim, *drop) for _ in range(c.n_dec_layers - 1)
        )
        self.quant_embed = Linear(c.d_model, self.codebook_dim)
        self.post_quant_embed_pre = Linear(c.s1_bits, c.d_model)  # the coarse (s1-only) decode: training
        self.post_quant_embed = Linear(self.codebook_dim, c.d_model)
        self.tokenizer = _BSQBuffers(self.codebook_dim, c.group_size)
        self.gradient_checkpointing = False  # training: recompute block activations in the backward pass

    def _rope(self, blocks: nn.ModuleList, n: int, dtype: torch.dtype):
        if len(blocks) == 0:
            return None, None
        return rope_tables(blocks[0].self_attn.rotary.inv_freq, n, dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass (upstream's ``forward``): x (B, T, 6) normalised rows -> the coarse reconstruction
        from the s1 bits only (B, T, 6), the full reconstruction (B, T, 6) and the BSQ quantiser loss ()."""
        c = self.config
        cos, sin = self._rope(self.encoder, x.shape[1], x.dtype)
        z = self.quant_embed(run_blocks(self.encoder, self.embed(x), cos, sin, self.gradient_checkpointing))
        codes, bsq_loss = bsq_quantize(z, c.beta, c.gamma0, c.gamma, c.zeta)
        cos, sin = self._rope(self.decoder, x.shape[1], x.dtype)
        coarse = self.post_quant_embed_pre(codes[..., : self.s1_bits])
        coarse = self.head(run_blocks(self.decoder, coarse, cos, sin, self.gradient_checkpointing))
        full = self.post_quant_embed(codes)
        full = self.head(run_blocks(self.decoder, full, cos, sin, self.gradient_checkpointing))
        return coarse, full, bsq_loss

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, 6) normalised rows -> (s1, s2) token ids, each (B, T) int64."""
        z = self.embed(x)
        cos, sin = self._rope(self.encoder, x.shape[1], z.dtype)
        for block in self.encoder:
            z = block(z, cos, sin)
        z = F.normalize(self.quant_embed(z).float(), dim=-1)
        bits = (z > 0).to(torch.int64)  # sign quantisation; z == 0 maps to -1 (bit 0) as upstream
        s1_w = 2 ** torch.arange(self.s1_bits, device=x.device, dtype=torch.int64)
        s2_w = 2 ** torch.arange(self.s2_bits, device=x.device, dtype=torch.int64)
        s1 = (bits[..., : self.s1_bits] * s1_w).sum(-1)
        s2 = (bits[..., self.s1_bits :] * s2_w).sum(-1)
        return s1, s2

    def tokens_to_codes(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, codebook_dim) codes in ±1/sqrt(codebook_dim)."""
        m1 = 2 ** torch.arange(self.s1_bits, device=s1.device, dtype=torch.int64)
        m2 = 2 ** torch.arange(self.s2_bits, device=s2.device, dtype=torch.int64)
        bits = torch.cat([(s1.unsqueeze(-1) & m1) != 0, (s2.unsqueeze(-1) & m2) != 0], dim=-1)
        return (bits.float() * 2 - 1) * (1.0 / self.codebook_dim**0.5)

    @torch.no_grad()
    def decode_after_prefix(
        self,
        pre_s1: torch.Tensor,
        pre_s2: torch.Tensor,
        pre_len: torch.Tensor,
        s1: torch.Tensor,
        s2: torch.Tensor,
    ) -> torch.Tensor:
        """Decode P new tokens per path after a prefix its series' paths share (the decoder is causal, so
        the prefix's keys and values are computed once per series, not once per path).

        Args:
            pre_s1, pre_s2: (N, Tp) prefix ids, right-padded; series j's prefix is its first pre_len[j].
            pre_len: (N,) int64 prefix lengths (>= 0).
            s1, s2: (N * paths, P) the new ids, series-major (series j owns rows j*paths ... j*paths+paths-1).
        Returns (N * paths, P, 6): per path, the rows ``decode`` gives for the last P positions of the window
        prefix + new tokens (equal to float rounding; with the batch-invariant kernels, whatever the batch).
        """
        n, tp = pre_s1.shape
        r, p = s1.shape
        paths = r // n
        slots = tp + p
        x = self.post_quant_embed(self.tokens_to_codes(s1, s2).to(self.post_quant_embed.weight.dtype))
        if len(self.decoder) == 0:
            return self.head(x)
        cos, sin = self._rope(self.decoder, slots, self.post_quant_embed.weight.dtype)
        caches = []
        z = self.post_quant_embed(self.tokens_to_codes(pre_s1, pre_s2).to(self.post_quant_embed.weight.dtype))
        for block in self.decoder:  # prefix pass, once per series: fills each block's K/V slots 0..Tp-1
            a = block.self_attn
            kc = z.new_zeros(n, a.n_heads, slots, a.head_dim)
            vc = torch.zeros_like(kc)
            z = block(z, cos[:tp], sin[:tp], (kc, vc))
            caches.append((kc.repeat_interleave(paths, 0), vc.repeat_interleave(paths, 0)))
        pos = pre_len.repeat_interleave(paths).unsqueeze(1) + torch.arange(p, device=s1.device)  # (R, P)
        keys = torch.arange(slots, device=s1.device)
        mask = (keys.view(1, 1, slots) <= pos.unsqueeze(-1)).unsqueeze(1)  # (R, 1, P, slots): prefix + causal
        cos_r, sin_r = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)  # (R, 1, P, hd)
        for block, (kc, vc) in zip(self.decoder, caches, strict=True):
            x = block.step(x, cos_r, sin_r, kc, vc, pos, mask)
        return self.head(x)

    @torch.no_grad()
    def decode(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """(s1, s2) ids (B, T) -> reconstructed normalised rows (B, T, 6), positions from 0."""
        z = self.post_quant_embed(self.tokens_to_codes(s1, s2).to(self.post_quant_embed.weight.dtype))
        cos, sin = self._rope(self.decoder, s1.shape[1], z.dtype)
        for block in self.decoder:
            z = block(z, cos, sin)
        return self.head(z)
