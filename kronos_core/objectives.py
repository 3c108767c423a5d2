"""Training objectives, as upstream's ``finetune/train_tokenizer.py`` and ``train_predictor.py`` compute them.

- tokenizer: ``(mse(coarse, x) + mse(full, x) + bsq_loss) / 2``: the reconstruction from the s1 bits only,
  from all bits, and the BSQ quantiser loss (``kronos_core.bsq``), weighted as upstream (w1 = w2 = 1, / 2).
- predictor: next-token cross-entropy ``(ce_s1 + ce_s2) / 2`` over every position of the window, the s2
  head conditioned on the teacher-forced s1 of the next token (upstream's ``use_teacher_forcing=True``).
  Tokens come from the frozen tokenizer.

Validation uses the same losses in eval mode (no dropout); the predictor's keeps the dependency layer's causal
mask (upstream's eval-mode validation drops it, letting position t see the hidden states of later positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import Kronos
from .tokenizer import KronosTokenizer

__all__ = ["tokenizer_loss", "predictor_loss", "tokenize"]


def tokenizer_loss(
    tokenizer: KronosTokenizer, x: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """x (B, T, 6) normalised windows -> (loss, parts). In eval mode ``loss`` is upstream's validation
    metric's companion: the same weighted sum; ``parts['recon']`` is the full-decode MSE it reports."""
    coarse, full, bsq = tokenizer(x)
    recon_coarse, recon = F.mse_loss(coarse, x), F.mse_loss(full, x)
    loss = (recon_coarse + recon + bsq) / 2
    return loss, {"recon_coarse": recon_coarse.detach(), "recon": recon.detach(), "bsq": bsq.detach()}


@torch.no_grad()
def tokenize(tokenizer: KronosTokenizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen tokenizer's (s1, s2) ids (B, T) for x (B, T, 6), whatever its train/eval mode."""
    was = tokenizer.training
    tokenizer.eval()
    try:
        return tokenizer.encode(x)
    finally:
        tokenizer.train(was)


def predictor_loss(
    model: Kronos, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Tokens (B, T) and their time features (B, T, 5) -> (loss, parts): predict token t+1 from 0..t."""
    s1_logits, s2_logits = model(s1[:, :-1], s2[:, :-1], stamp[:, :-1], s1_targets=s1[:, 1:], causal_dep=True)
    ce_s1 = F.cross_entropy(s1_logits.reshape(-1, s1_logits.shape[-1]).float(), s1[:, 1:].reshape(-1))
    ce_s2 = F.cross_entropy(s2_logits.reshape(-1, s2_logits.shape[-1]).float(), s2[:, 1:].reshape(-1))
    return (ce_s1 + ce_s2) / 2, {"ce_s1": ce_s1.detach(), "ce_s2": ce_s2.detach()}
