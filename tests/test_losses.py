"""The shared losses (methods/losses.py) on hand-worked values: the foreground ratio η and its
clamp, Eq. 12 per image and averaged over images, the plain masked BCE, the authors' loss; void
pixels never count, whatever their logits."""

import math

import torch

from vosbench.methods.losses import (
    balanced_bce,
    foreground_ratio,
    masked_bce,
    ratio_scaled_bce,
)


def maps(*rows: list[float]) -> torch.Tensor:
    """(N, 1, W) maps, one per row."""
    return torch.tensor(rows, dtype=torch.float32)[:, None, :]


def softplus(x: float) -> float:
    """−log σ(−x) = log(1 + eˣ): the BCE of logit x against target 0 (against 1: softplus(−x))."""
    return math.log1p(math.exp(x))


def test_foreground_ratio_counts_valid_pixels_and_is_clamped():
    target = maps([1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0])
    valid = maps([1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0]) > 0
    # 2 of 4; all foreground → 1 − 0.01; none → 0.01; the one valid pixel is foreground → 0.99;
    # the void foreground pixel of the last map does not count: 1 of 1 → 0.99
    assert torch.allclose(foreground_ratio(target, valid),
                          torch.tensor([0.5, 0.99, 0.01, 0.99, 0.99]))
    all_void = foreground_ratio(maps([1, 0]), maps([0, 0]) > 0)
    assert torch.allclose(all_void, torch.tensor([0.01]))  # no valid pixel: 0 / 1, clamped


def test_balanced_bce_on_one_valid_pixel_by_hand():
    """One valid foreground pixel with logit 1: η = 1 clamped to 0.99, its weight 1 − η = 0.01,
    the loss 0.01 · softplus(−1) / 1 pixel; the void pixel's logit of 30 is ignored."""
    logits, target, valid = maps([1.0, 30.0]), maps([1, 0]), maps([1, 0]) > 0
    assert math.isclose(float(balanced_bce(logits, target, valid)), 0.01 * softplus(-1.0),
                        rel_tol=1e-5)
    assert float(balanced_bce(logits, target, maps([0, 0]) > 0)) == 0.0  # all void: no loss


def test_balanced_bce_is_the_mean_of_the_images_losses():
    """Image 1: logits (0, 0), target (1, 0): η = 0.5, loss (0.5 ln 2 + 0.5 ln 2) / 2 = ln 2 / 2.
    Image 2: logits (2, −1, 0, 0), target (1, 0, 0, 0): η = 1/4, weights 3/4 and 1/4; loss
    (3/4 softplus(−2) + 1/4 (softplus(−1) + 2 ln 2)) / 4. The batch: their mean."""
    first = math.log(2) / 2
    second = (0.75 * softplus(-2) + 0.25 * (softplus(-1) + 2 * math.log(2))) / 4
    logits, target = maps([0, 0, 0, 0], [2, -1, 0, 0]), maps([1, 0, 0, 0], [1, 0, 0, 0])
    valid = maps([1, 1, 0, 0], [1, 1, 1, 1]) > 0
    assert math.isclose(float(balanced_bce(logits, target, valid)), (first + second) / 2,
                        rel_tol=1e-5)


def test_masked_bce_by_hand_without_void_pixels():
    """Logits (0, ln 3), targets (1, 0): BCE ln 2 and −ln(1 − 3/4) = ln 4; mean 1.5 ln 2 over the
    two valid pixels of the batch; a void pixel with any logit adds nothing."""
    logits, target = maps([0.0, math.log(3), -40.0]), maps([1, 0, 1])
    valid = maps([1, 1, 0]) > 0
    assert math.isclose(float(masked_bce(logits, target, valid)), 1.5 * math.log(2),
                        rel_tol=1e-5)
    one = masked_bce(maps([0.0, 5.0]), maps([1, 1]), maps([1, 0]) > 0)
    assert math.isclose(float(one), math.log(2), rel_tol=1e-5)  # one valid pixel: its BCE
    assert float(masked_bce(logits, target, torch.zeros_like(valid))) == 0.0


def test_authors_loss_leaves_void_pixels_out():
    """Logits (0, 0, any), targets (1, 0, ·), the third pixel void: η = 1/2, BCE mean ln 2,
    L1 mean 1/2; loss ln 2 / (1/2) + 0.8 · 1/2 whatever the void pixel holds. A single valid
    foreground pixel with logit 0: η clamped to 0.99, ln 2 / 0.99 + 0.8 · 1/2."""
    expected = math.log(2) / 0.5 + 0.8 * 0.5
    for void_logit in (-20.0, 0.0, 20.0):
        loss = ratio_scaled_bce(maps([0.0, 0.0, void_logit]), maps([1, 0, 1]),
                                maps([1, 1, 0]) > 0)
        assert math.isclose(float(loss), expected, rel_tol=1e-5)
    one = ratio_scaled_bce(maps([0.0, 3.0]), maps([1, 0]), maps([1, 0]) > 0)
    assert math.isclose(float(one), math.log(2) / 0.99 + 0.8 * 0.5, rel_tol=1e-5)
