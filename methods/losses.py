"""Losses shared by the methods."""

import torch
import torch.nn.functional as F

MIN_FOREGROUND_RATIO = 0.01  # η is clamped to [0.01, 0.99]: an empty mask must not zero a class


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy (AGNN, Eq. 12), the mean over images.

    Per image, foreground pixels are weighted 1 − η and background pixels η, η the image's
    foreground ratio (clamped); void pixels (valid False) are left out. logits, target, valid:
    (N, H, W); target in {0, 1}.
    """
    valid = valid.float()
    pixels = valid.sum(dim=(1, 2)).clamp(min=1)
    ratio = ((target * valid).sum(dim=(1, 2)) / pixels).clamp(MIN_FOREGROUND_RATIO,
                                                               1 - MIN_FOREGROUND_RATIO)
    ratio = ratio.view(-1, 1, 1)
    weights = torch.where(target > 0.5, 1 - ratio, ratio) * valid
    losses = F.binary_cross_entropy_with_logits(logits, target, weight=weights, reduction="none")
    return (losses.sum(dim=(1, 2)) / pixels).mean()


def masked_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Plain binary cross-entropy over the valid (non-void) pixels of (N, H, W) maps. Unlike
    `balanced_bce` its probabilities are calibrated: 0.5 is the even-odds threshold."""
    losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (losses * valid).sum() / valid.sum().clamp(min=1)


FOREGROUND_LOSSES = {"balanced": balanced_bce, "bce": masked_bce}
