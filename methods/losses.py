"""Losses shared by the methods."""

import torch
import torch.nn.functional as F

MIN_FOREGROUND_RATIO = 0.01  # η is clamped to [0.01, 0.99]: an empty mask must not zero a class


def foreground_ratio(target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N,) η: the foreground share of the valid pixels of each (N, H, W) map, clamped to
    [MIN_FOREGROUND_RATIO, 1 − MIN_FOREGROUND_RATIO]."""
    valid = valid.float()
    pixels = valid.sum(dim=(1, 2)).clamp(min=1)
    return ((target * valid).sum(dim=(1, 2)) / pixels).clamp(MIN_FOREGROUND_RATIO,
                                                             1 - MIN_FOREGROUND_RATIO)


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy (AGNN, Eq. 12), the mean over images.

    Per image, foreground pixels are weighted 1 − η and background pixels η, η the image's
    foreground ratio (clamped); void pixels (valid False) are left out. logits, target, valid:
    (N, H, W); target in {0, 1}.
    """
    valid = valid.float()
    pixels = valid.sum(dim=(1, 2)).clamp(min=1)
    ratio = foreground_ratio(target, valid).view(-1, 1, 1)
    weights = torch.where(target > 0.5, 1 - ratio, ratio) * valid
    losses = F.binary_cross_entropy_with_logits(logits, target, weight=weights, reduction="none")
    return (losses.sum(dim=(1, 2)) / pixels).mean()


def masked_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Plain binary cross-entropy over the valid (non-void) pixels of (N, H, W) maps. Unlike
    `balanced_bce` its probabilities are calibrated: 0.5 is the even-odds threshold."""
    losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (losses * valid).sum() / valid.sum().clamp(min=1)


def ratio_scaled_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                     l1_weight: float = 0.8) -> torch.Tensor:
    """The loss of the AGNN authors' code (not the paper's Eq. 12), the mean over images: per
    image, the mean BCE over its valid pixels divided by η (its foreground ratio, clamped as in
    `balanced_bce`, so that an empty mask scales by 1 / MIN_FOREGROUND_RATIO instead of dividing
    by zero), plus `l1_weight` × the mean |σ(logits) − target|. logits, target, valid: (N, H, W).
    """
    valid = valid.float()
    pixels = valid.sum(dim=(1, 2)).clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    l1 = (torch.sigmoid(logits) - target).abs()
    per_image = ((bce * valid).sum(dim=(1, 2)) / foreground_ratio(target, valid)
                 + l1_weight * (l1 * valid).sum(dim=(1, 2))) / pixels
    return per_image.mean()


FOREGROUND_LOSSES = {"balanced": balanced_bce, "bce": masked_bce}
