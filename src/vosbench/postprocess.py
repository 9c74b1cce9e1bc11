"""Dense CRF refinement of per-object probabilities (Krähenbühl & Koltun, NeurIPS 2011).

The CRF has one label per object plus background. Its unary is the negative log of the predicted
probabilities; its pairwise terms are a Gaussian kernel on pixel position (smoothness) and a
bilateral kernel on position and colour (appearance), so label boundaries move onto colour edges.
"""

from dataclasses import dataclass

import numpy as np
import pydensecrf.densecrf as dcrf

# Probabilities are clamped to [EPSILON, 1] before the log: a zero would give an infinite unary
# that no pairwise term could overturn. -log(1e-5) ≈ 11.5, the largest unary energy.
EPSILON = 1e-5
# Slack on the [0, 1] range check for values that went through float arithmetic (resizing).
RANGE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class CRFRecipe:
    """Parameters of one dense CRF recipe.

    gaussian_sxy: standard deviation of the position-only kernel, in pixels.
    gaussian_compat: weight of the position-only kernel (Potts compatibility).
    bilateral_sxy: standard deviation of the bilateral kernel over position, in pixels.
    bilateral_srgb: standard deviation of the bilateral kernel over colour, in colour levels of a
        0..255 image.
    bilateral_compat: weight of the bilateral kernel (Potts compatibility).
    iterations: number of mean-field inference steps.
    normalise: min-max normalise each object's probability map to [0, 1] before the unary.
    """

    gaussian_sxy: float
    gaussian_compat: float
    bilateral_sxy: float
    bilateral_srgb: float
    bilateral_compat: float
    iterations: int
    normalise: bool = False


RECIPES: dict[str, CRFRecipe] = {
    "agnn": CRFRecipe(gaussian_sxy=1, gaussian_compat=5, bilateral_sxy=30, bilateral_srgb=5,
                      bilateral_compat=9, iterations=5, normalise=True),
    "amcnet": CRFRecipe(gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=30, bilateral_srgb=5,
                        bilateral_compat=5, iterations=5),
}


def get_recipe(name: str) -> CRFRecipe:
    """The named recipe of RECIPES; raises ValueError listing the known names."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown CRF recipe {name!r}; known recipes: "
                         f"{', '.join(sorted(RECIPES))}") from None


def _normalise(probabilities: np.ndarray) -> np.ndarray:
    """Min-max normalise each (H, W) map of a (K, H, W) array; a constant map is kept as is."""
    low = probabilities.min(axis=(1, 2), keepdims=True)
    span = probabilities.max(axis=(1, 2), keepdims=True) - low
    constant = span == 0
    return np.where(constant, probabilities, (probabilities - low) / np.where(constant, 1, span))


def refine(image: np.ndarray, probabilities: np.ndarray, recipe: CRFRecipe) -> np.ndarray:
    """Refine one frame's object probabilities with a dense CRF.

    image: (H, W, 3) uint8 RGB frame.
    probabilities: (K, H, W) foreground probability of each of K >= 1 objects, in [0, 1].
    Returns the (K, H, W) float32 CRF marginals of the objects (background dropped).
    Raises ValueError on a wrong shape, dtype or value range.
    """
    image = np.asarray(image)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected an (H, W, 3) uint8 array, found {image.shape} "
                         f"{image.dtype}")
    if probabilities.ndim != 3 or probabilities.shape[0] == 0:
        raise ValueError(f"probabilities: expected a (K, H, W) array with K >= 1, found "
                         f"{probabilities.shape}")
    if probabilities.shape[1:] != image.shape[:2]:
        raise ValueError(f"probabilities: size {probabilities.shape[1:]} differs from the "
                         f"image size {image.shape[:2]}")
    if not (probabilities.min() >= -RANGE_TOLERANCE and probabilities.max() <= 1 + RANGE_TOLERANCE):
        raise ValueError(f"probabilities: expected values in [0, 1], found "
                         f"{probabilities.min()}..{probabilities.max()}")
    objects = np.clip(probabilities, 0, 1)
    if recipe.normalise:
        objects = _normalise(objects)
    num_objects, height, width = objects.shape
    background = 1 - objects.max(axis=0, keepdims=True)
    labels = np.concatenate([background, objects]).reshape(num_objects + 1, height * width)
    unary = np.ascontiguousarray(-np.log(np.clip(labels, EPSILON, 1)), dtype=np.float32)

    crf = dcrf.DenseCRF2D(width, height, num_objects + 1)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=recipe.gaussian_sxy, compat=recipe.gaussian_compat)
    crf.addPairwiseBilateral(sxy=recipe.bilateral_sxy, srgb=recipe.bilateral_srgb,
                             rgbim=np.ascontiguousarray(image), compat=recipe.bilateral_compat)
    marginals = np.array(crf.inference(recipe.iterations), dtype=np.float32)
    return marginals.reshape(num_objects + 1, height, width)[1:]


def refine_video(frames: np.ndarray, probabilities: np.ndarray, recipe: CRFRecipe) -> np.ndarray:
    """Refine a video frame by frame with `refine`.

    frames: (T, H, W, 3) uint8 RGB.
    probabilities: (T, K, H, W) object probabilities in [0, 1].
    Returns (T, K, H, W) float32. Raises ValueError naming the frame on bad input.
    """
    frames, probabilities = np.asarray(frames), np.asarray(probabilities)
    if frames.ndim != 4 or probabilities.ndim != 4 or len(frames) != len(probabilities):
        raise ValueError(f"expected frames (T, H, W, 3) and probabilities (T, K, H, W) with the "
                         f"same T, found {frames.shape} and {probabilities.shape}")
    refined = np.empty(probabilities.shape, dtype=np.float32)
    for index, (frame, frame_probabilities) in enumerate(zip(frames, probabilities)):
        try:
            refined[index] = refine(frame, frame_probabilities, recipe)
        except ValueError as error:
            raise ValueError(f"frame {index}: {error}") from None
    return refined
