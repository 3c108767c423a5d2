"""Seeded random initialisation (upstream's scheme) that never touches torch's global RNG."""

from __future__ import annotations

import torch
from torch import nn

from .layers import RMSNorm, fixed_sinusoid_table

__all__ = ["init_weights", "HEAD_LOGIT_SCALE"]

# Random-init logits are nearly flat; scaling the two output projections changes no argmax but makes
# sampled trajectories of random models diverse (see kronos-reference.md). Only for random weights.
HEAD_LOGIT_SCALE = 20.0


@torch.no_grad()
def init_weights(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            std = (2.0 / (module.in_features + module.out_features)) ** 0.5  # xavier normal
            module.weight.copy_(torch.randn(module.weight.shape, generator=g) * std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            if getattr(module, "fixed_sinusoid", False):
                module.weight.copy_(fixed_sinusoid_table(*module.weight.shape))
            else:
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=g) * module.weight.shape[1] ** -0.5
                )
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "proj_s1"):
        head.proj_s1.weight.mul_(HEAD_LOGIT_SCALE)
        head.proj_s2.weight.mul_(HEAD_LOGIT_SCALE)
