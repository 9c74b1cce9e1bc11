"""Dense CRF refinement of per-object probabilities (Krähenbühl & Koltun, NeurIPS 2011).

The CRF has one label per object plus background. Its unary is the negative log of the predicted
probabilities (or, in AMC-Net's released recipe, of energies derived from them); its pairwise
terms are a Gaussian kernel on pixel position (smoothness) and a bilateral kernel on position and
colour (appearance), so label boundaries move onto colour edges.
"""

from dataclasses import dataclass

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian

# Probabilities are clamped to [EPSILON, 1] before the log: a zero would give an infinite unary
# that no pairwise term could overturn. -log(1e-5) ≈ 11.5, the largest unary energy.
EPSILON = 1e-5
# Slack on the [0, 1] range check for values that went through float arithmetic (resizing).
RANGE_TOLERANCE = 1e-4
UNARIES = ("probability", "amcnet")
# AMC-Net's utils/apply_densecrf_davis.py (isyangshu/AMC-Net, lines 41-47): its temperature and
# the epsilon inside its logarithms
AMCNET_TAU = 1.05
AMCNET_EPSILON = 1e-8


@dataclass(frozen=True)
class CRFRecipe:
    """Parameters of one dense CRF recipe.

    gaussian_sxy: standard deviation of the position-only kernel, in pixels.
    gaussian_compat: weight of the position-only kernel (Potts compatibility).
    bilateral_sxy: standard deviation of the bilateral kernel over position, in pixels.
    bilateral_srgb: standard deviation of the bilateral kernel over colour, in colour levels of a
        0..255 image.
    bilateral_compat: weight of the bilateral kernel (Potts compatibility).
    iterations: number of mean-field inference steps (at most, with `min_kl_change`).
    normalise: min-max normalise each object's probability map to [0, 1] before the unary.
    unary: "probability", −log of the clamped probabilities of background (1 − the largest
        object's) and objects; "amcnet", AMC-Net's released energies (`amcnet_scores`; one
        object only).
    min_kl_change: stop the mean-field steps after the first whose change of the KL divergence
        (pydensecrf's `klDivergence`) is below this (AMC-Net's early stop: 500); None: all
        `iterations` steps.
    rows_first: give the kernels their position features as (row, column), as
        `pydensecrf.utils.create_pairwise_*` make them (AMC-Net's script), instead of
        `DenseCRF2D`'s (column, row): the same kernels, but the permutohedral lattice that
        approximates them is not symmetric in the features' order, so the marginals differ.
    """

    gaussian_sxy: float
    gaussian_compat: float
    bilateral_sxy: float
    bilateral_srgb: float
    bilateral_compat: float
    iterations: int
    normalise: bool = False
    unary: str = "probability"
    min_kl_change: float | None = None
    rows_first: bool = False

    def __post_init__(self):
        if self.unary not in UNARIES:
            raise ValueError(f"unknown unary {self.unary!r}; known: {', '.join(UNARIES)}")


RECIPES: dict[str, CRFRecipe] = {
    "agnn": CRFRecipe(gaussian_sxy=1, gaussian_compat=5, bilateral_sxy=30, bilateral_srgb=5,
                      bilateral_compat=9, iterations=5, normalise=True),
    "amcnet": CRFRecipe(gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=30, bilateral_srgb=5,
                        bilateral_compat=5, iterations=5),
    # the script of AMC-Net's repository (utils/apply_densecrf_davis.py, lines 39-75): the kernels
    # above, its own unary, up to 5 steps with an early stop
    "amcnet-official": CRFRecipe(gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=30,
                                 bilateral_srgb=5, bilateral_compat=5, iterations=5,
                                 unary="amcnet", min_kl_change=500, rows_first=True),
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


def amcnet_scores(foreground: np.ndarray) -> np.ndarray:
    """AMC-Net's CRF scores of background and foreground from a (H, W) map p in [0, 1] (the
    script reads its 0/255 masks divided by 255): `−log(p + ε) / (τ σ(p))` for the background and
    `−log(1 − p + ε) / (τ σ(1 − p))` for the foreground, τ = 1.05, ε = 1e-8, which the script hands
    to pydensecrf's `unary_from_softmax` as probabilities → (2, H, W)."""
    def sigmoid(values: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-values))

    background = -np.log(foreground + AMCNET_EPSILON) / (AMCNET_TAU * sigmoid(foreground))
    objects = -np.log(1 - foreground + AMCNET_EPSILON) / (AMCNET_TAU * sigmoid(1 - foreground))
    return np.stack([background, objects])


def unary_energy(objects: np.ndarray, recipe: CRFRecipe) -> np.ndarray:
    """(K, H, W) object probabilities → the (K + 1, H·W) float32 unary of the recipe, label 0 the
    background: −log of the scores clamped to [EPSILON, 1] (pydensecrf's `unary_from_softmax`)."""
    num_objects, height, width = objects.shape
    if recipe.unary == "amcnet":
        if num_objects != 1:
            raise ValueError(f"the 'amcnet' unary is binary: one object, found {num_objects}")
        scores = amcnet_scores(objects[0])
    else:
        scores = np.concatenate([1 - objects.max(axis=0, keepdims=True), objects])
    scores = scores.reshape(num_objects + 1, height * width)
    return np.ascontiguousarray(-np.log(np.clip(scores, EPSILON, 1)), dtype=np.float32)


def dense_crf(image: np.ndarray, unary: np.ndarray, recipe: CRFRecipe) -> dcrf.DenseCRF:
    """The CRF of one (H, W, 3) uint8 frame with its (labels, H·W) unary and the recipe's
    Gaussian and bilateral kernels (Potts compatibilities, diagonal kernels, symmetric
    normalisation: pydensecrf's defaults)."""
    height, width = image.shape[:2]
    if not recipe.rows_first:
        crf = dcrf.DenseCRF2D(width, height, unary.shape[0])
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=recipe.gaussian_sxy, compat=recipe.gaussian_compat)
        crf.addPairwiseBilateral(sxy=recipe.bilateral_sxy, srgb=recipe.bilateral_srgb,
                                 rgbim=np.ascontiguousarray(image),
                                 compat=recipe.bilateral_compat)
        return crf
    crf = dcrf.DenseCRF(height * width, unary.shape[0])
    crf.setUnaryEnergy(unary)
    crf.addPairwiseEnergy(create_pairwise_gaussian((recipe.gaussian_sxy,) * 2, (height, width)),
                          compat=recipe.gaussian_compat)
    crf.addPairwiseEnergy(create_pairwise_bilateral((recipe.bilateral_sxy,) * 2,
                                                    (recipe.bilateral_srgb,) * 3,
                                                    np.ascontiguousarray(image), chdim=2),
                          compat=recipe.bilateral_compat)
    return crf


def mean_field(crf: dcrf.DenseCRF, recipe: CRFRecipe) -> np.ndarray:
    """The marginals after the recipe's mean-field steps: `iterations` of them, or fewer when a
    step changes the KL divergence by less than `min_kl_change`. (labels, H·W) float32."""
    if recipe.min_kl_change is None:
        return np.array(crf.inference(recipe.iterations), dtype=np.float32)
    marginals, scratch, scratch2 = crf.startInference()
    for _ in range(recipe.iterations):
        before = crf.klDivergence(marginals)
        crf.stepInference(marginals, scratch, scratch2)
        if abs(crf.klDivergence(marginals) - before) < recipe.min_kl_change:
            break
    return np.array(marginals, dtype=np.float32)


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
    crf = dense_crf(image, unary_energy(objects, recipe), recipe)
    return mean_field(crf, recipe).reshape(num_objects + 1, height, width)[1:]


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
