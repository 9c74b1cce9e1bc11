import dataclasses

import cv2
import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian, unary_from_softmax

from vosbench.postprocess import (
    RANGE_TOLERANCE,
    RECIPES,
    CRFRecipe,
    amcnet_scores,
    get_recipe,
    mean_field,
    refine,
    refine_video,
)

HEIGHT, WIDTH = 40, 60
DARK_RED, LIGHT_BLUE, GREY = (110, 20, 20), (150, 190, 240), (128, 128, 128)


def striped_image(colours, edges, seed=0):
    """(HEIGHT, WIDTH, 3) uint8: vertical stripes of `colours` split at the columns `edges`, with
    a little Gaussian noise."""
    image = np.empty((HEIGHT, WIDTH, 3))
    for colour, start, stop in zip(colours, [0, *edges], [*edges, WIDTH]):
        image[:, start:stop] = colour
    image += np.random.default_rng(seed).normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def blurry_step(rise, fall=None, seed=1):
    """(HEIGHT, WIDTH) probability map: a soft step up at column `rise` (and down at `fall`),
    three pixels wide, plus noise."""
    columns = np.arange(WIDTH)
    profile = 1 / (1 + np.exp(-(columns - rise) / 3))
    if fall is not None:
        profile *= 1 / (1 + np.exp((columns - fall) / 3))
    noisy = profile + np.random.default_rng(seed).normal(0, 0.15, (HEIGHT, WIDTH))
    return np.clip(noisy, 0, 1)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_recipes_hold_the_published_values():
    assert RECIPES["agnn"] == CRFRecipe(gaussian_sxy=1, gaussian_compat=5, bilateral_sxy=30,
                                        bilateral_srgb=5, bilateral_compat=9, iterations=5,
                                        normalise=True)
    assert RECIPES["amcnet"] == CRFRecipe(gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=30,
                                          bilateral_srgb=5, bilateral_compat=5, iterations=5,
                                          normalise=False)
    # AMC-Net's utils/apply_densecrf_davis.py, lines 48-75
    assert RECIPES["amcnet-official"] == CRFRecipe(
        gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=30, bilateral_srgb=5, bilateral_compat=5,
        iterations=5, normalise=False, unary="amcnet", min_kl_change=500, rows_first=True)
    assert get_recipe("amcnet") is RECIPES["amcnet"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECIPES["agnn"].iterations = 10


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match="'dense'.*agnn, amcnet"):
        get_recipe("dense")


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("edge", [26, 34])
def test_boundary_snaps_to_the_colour_edge(recipe, edge):
    # The same prediction (boundary at column 30) on two images whose colour edge lies 4 pixels
    # to either side: the refined mask must follow the image, not the prediction.
    truth = np.zeros((HEIGHT, WIDTH), bool)
    truth[:, edge:] = True
    probabilities = blurry_step(30)[None]
    refined = refine(striped_image([DARK_RED, LIGHT_BLUE], [edge]), probabilities,
                     get_recipe(recipe))
    assert refined.shape == (1, HEIGHT, WIDTH) and refined.dtype == np.float32
    assert refined.min() >= 0 and refined.max() <= 1
    assert iou(probabilities[0] > 0.5, truth) < 0.9
    assert iou(refined[0] > 0.5, truth) > 0.98


def test_two_objects_each_win_their_own_region():
    # Background | object 1 | object 2, in three colour stripes; predictions off by 3 pixels.
    image = striped_image([GREY, DARK_RED, LIGHT_BLUE], [20, 40])
    probabilities = np.stack([blurry_step(17, 37, seed=1), blurry_step(43, seed=2)])
    truth = np.repeat([0, 1, 2], 20)[None].repeat(HEIGHT, axis=0)

    def labels(objects):
        return np.concatenate([1 - objects.max(axis=0, keepdims=True), objects]).argmax(axis=0)

    refined = refine(image, probabilities, get_recipe("amcnet"))
    assert refined.shape == (2, HEIGHT, WIDTH) and refined.dtype == np.float32
    assert (labels(probabilities) == truth).mean() < 0.9
    assert (labels(refined) == truth).mean() > 0.98
    for label in (1, 2):
        assert (labels(refined)[truth == label] == label).mean() > 0.97


def test_normalise_stretches_each_map_and_keeps_a_constant_one():
    image = striped_image([DARK_RED, LIGHT_BLUE], [30])
    plain = dataclasses.replace(get_recipe("agnn"), normalise=False)
    squeezed = 0.2 + 0.4 * blurry_step(30)
    stretched = (squeezed - squeezed.min()) / (squeezed.max() - squeezed.min())
    np.testing.assert_allclose(refine(image, squeezed[None], get_recipe("agnn")),
                               refine(image, stretched[None], plain), atol=1e-5)
    constant = np.full((1, HEIGHT, WIDTH), 0.3)
    refined = refine(image, constant, get_recipe("agnn"))
    assert np.isfinite(refined).all()
    np.testing.assert_array_equal(refined, refine(image, constant, plain))


def test_float_noise_outside_the_unit_range_is_accepted():
    image = striped_image([DARK_RED, LIGHT_BLUE], [30])
    probabilities = blurry_step(30)[None]
    probabilities[0, 0, :2] = (-1e-7, 1 + 1e-7)
    assert np.isfinite(refine(image, probabilities, get_recipe("amcnet"))).all()


IMAGE = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
PROBABILITIES = np.full((1, HEIGHT, WIDTH), 0.5)


@pytest.mark.parametrize("image, probabilities, message", [
    (IMAGE.astype(np.float32), PROBABILITIES, r"image: expected an \(H, W, 3\) uint8 array"),
    (IMAGE[..., 0], PROBABILITIES, r"image: expected an \(H, W, 3\) uint8 array"),
    (IMAGE, PROBABILITIES[0], r"probabilities: expected a \(K, H, W\) array with K >= 1"),
    (IMAGE, PROBABILITIES[:0], r"probabilities: expected a \(K, H, W\) array with K >= 1"),
    (IMAGE, PROBABILITIES[:, :, :50], r"size \(40, 50\) differs from the image size \(40, 60\)"),
    (IMAGE, PROBABILITIES * 255, r"expected values in \[0, 1\], found 127\.5\.\.127\.5"),
    (IMAGE, PROBABILITIES - 0.6, r"expected values in \[0, 1\]"),
    (IMAGE, PROBABILITIES * np.nan, r"expected values in \[0, 1\]"),
])
def test_bad_input_is_rejected(image, probabilities, message):
    with pytest.raises(ValueError, match=message):
        refine(image, probabilities, get_recipe("amcnet"))


def test_refine_video_equals_refine_frame_by_frame():
    frames = np.stack([striped_image([DARK_RED, LIGHT_BLUE], [edge], seed=edge)
                       for edge in (26, 30, 34)])
    probabilities = np.stack([np.stack([blurry_step(30, seed=seed), blurry_step(10, 50, seed=seed)])
                              for seed in range(3)])
    recipe = get_recipe("agnn")
    refined = refine_video(frames, probabilities, recipe)
    assert refined.shape == (3, 2, HEIGHT, WIDTH) and refined.dtype == np.float32
    for frame, frame_probabilities, frame_refined in zip(frames, probabilities, refined):
        np.testing.assert_array_equal(frame_refined, refine(frame, frame_probabilities, recipe))


def test_refine_video_rejects_mismatched_input():
    frames = np.zeros((2, HEIGHT, WIDTH, 3), np.uint8)
    probabilities = np.full((3, 1, HEIGHT, WIDTH), 0.5)
    with pytest.raises(ValueError, match=r"same T, found \(2, 40, 60, 3\) and \(3, 1, 40, 60\)"):
        refine_video(frames, probabilities, get_recipe("agnn"))
    probabilities[1, 0, 0, 0] = 2
    with pytest.raises(ValueError, match=r"frame 1: probabilities: expected values in \[0, 1\]"):
        refine_video(np.zeros((3, HEIGHT, WIDTH, 3), np.uint8), probabilities,
                     get_recipe("agnn"))


def test_amcnet_scores_by_hand():
    # p = 1: background −log(1 + 1e-8) / (1.05 σ(1)) ≈ 0, foreground −log(1e-8) / (1.05 σ(0))
    # = 18.4207 / 0.525 = 35.0870; p = 0 the other way round; p = ½: both
    # −log(0.5 + 1e-8) / (1.05 σ(½)) = 0.693147 / (1.05 · 0.622459) = 1.060534
    scores = amcnet_scores(np.array([[1.0, 0.0, 0.5]]))
    assert scores.shape == (2, 1, 3)
    assert np.allclose(scores[:, 0, 0], [0, 35.0870], atol=1e-4)
    assert np.allclose(scores[:, 0, 1], [35.0870, 0], atol=1e-4)
    assert np.allclose(scores[:, 0, 2], [1.060534, 1.060534], atol=1e-6)


def amcnet_script(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """AMC-Net's utils/apply_densecrf_davis.py on one frame, step by step as it is written
    (pydensecrf.utils' features, its energies given to unary_from_softmax as probabilities, at
    most five steps stopped once the KL divergence changes by less than 500): the (H, W) map
    Q[1] of the foreground and the number of steps taken."""
    anno = mask / 255
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    labels = np.zeros((2, *mask.shape))
    labels[1] = -np.log(1.0 - anno + 1e-8) / (1.05 * sigmoid(1 - anno))
    labels[0] = -np.log(anno + 1e-8) / (1.05 * sigmoid(anno))
    crf = dcrf.DenseCRF(image.shape[1] * image.shape[0], 2)
    crf.setUnaryEnergy(unary_from_softmax(labels))
    crf.addPairwiseEnergy(create_pairwise_gaussian(sdims=(3, 3), shape=image.shape[:2]),
                          compat=3, kernel=dcrf.DIAG_KERNEL,
                          normalization=dcrf.NORMALIZE_SYMMETRIC)
    crf.addPairwiseEnergy(create_pairwise_bilateral(sdims=(30, 30), schan=(5, 5, 5), img=image,
                                                    chdim=2),
                          compat=5, kernel=dcrf.DIAG_KERNEL,
                          normalization=dcrf.NORMALIZE_SYMMETRIC)
    q, tmp1, tmp2 = crf.startInference()
    steps = 0
    for _ in range(5):
        temp = crf.klDivergence(q)
        crf.stepInference(q, tmp1, tmp2)
        steps += 1
        if abs(crf.klDivergence(q) - temp) < 500:
            break
    return np.array(q)[1].reshape(mask.shape), steps


@pytest.mark.parametrize("height, width", [(40, 60), (120, 160), (240, 320)])
def test_the_amcnet_official_recipe_is_the_authors_script(height, width):
    """Their masks are the 0/255 masks of test.py resized bicubically to the frame (values in
    between at the edges); the sizes make the script stop after 1, 2 and 4 steps."""
    rng = np.random.default_rng(0)
    image = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    small = np.zeros((24, 24), np.uint8)
    small[6:18, 8:20] = 255
    mask = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    expected, steps = amcnet_script(image, mask)
    assert steps == {40: 1, 120: 2, 240: 4}[height]
    refined = refine(image, (mask / 255)[None], get_recipe("amcnet-official"))
    assert np.array_equal(refined[0], expected.astype(np.float32))


def test_the_early_stop_takes_one_step_or_all_of_them():
    image, probabilities = striped_image([DARK_RED, LIGHT_BLUE], [30]), blurry_step(30)[None]
    recipe = get_recipe("amcnet")
    for threshold, steps in ((float("inf"), 1), (0.0, recipe.iterations)):
        stopped = dataclasses.replace(recipe, min_kl_change=threshold)
        assert np.array_equal(refine(image, probabilities, stopped),
                              refine(image, probabilities,
                                     dataclasses.replace(recipe, iterations=steps)))


def test_the_amcnet_unary_is_binary_and_unknown_unaries_are_rejected():
    with pytest.raises(ValueError, match="'amcnet' unary is binary: one object, found 2"):
        refine(striped_image([GREY], []), np.full((2, HEIGHT, WIDTH), 0.5),
               get_recipe("amcnet-official"))
    with pytest.raises(ValueError, match="unknown unary 'softmax'; known: probability, amcnet"):
        CRFRecipe(1, 1, 1, 1, 1, 1, unary="softmax")


def test_each_map_is_normalised_on_its_own():
    image = striped_image([DARK_RED, LIGHT_BLUE], [30])
    plain = dataclasses.replace(get_recipe("agnn"), normalise=False)
    maps = np.stack([0.2 + 0.4 * blurry_step(30), 0.3 + 0.5 * blurry_step(10, 50)])
    low, high = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(refine(image, maps, get_recipe("agnn")),
                               refine(image, (maps - low) / (high - low), plain), atol=1e-5)


def test_values_at_the_tolerance_are_accepted_and_clipped():
    """−RANGE_TOLERANCE and 1 + RANGE_TOLERANCE themselves pass, read as 0 and 1 (the min-max
    normalisation sees the clipped map), in float64 whatever the input's dtype."""
    image = striped_image([DARK_RED, LIGHT_BLUE], [30])
    probabilities = (0.1 + 0.8 * blurry_step(30))[None]
    probabilities[0, 0, :2] = (-RANGE_TOLERANCE, 1 + RANGE_TOLERANCE)
    clipped = np.clip(probabilities, 0, 1)
    recipe = get_recipe("agnn")
    assert np.array_equal(refine(image, probabilities, recipe), refine(image, clipped, recipe))
    single = clipped.astype(np.float32)
    assert np.array_equal(refine(image, single, recipe),
                          refine(image, single.astype(np.float64), recipe))


class ScriptedCRF:
    """A stand-in for pydensecrf's DenseCRF whose KL divergence after step k is kls[k] (kls[0]
    before the first step); counts the steps taken."""

    def __init__(self, kls: list[float]):
        self.kls, self.steps = kls, 0

    def startInference(self):  # noqa: N802 (pydensecrf's names)
        return np.zeros((2, 3), np.float32), None, None

    def stepInference(self, marginals, scratch, scratch2):  # noqa: N802
        self.steps += 1

    def klDivergence(self, marginals):  # noqa: N802
        return self.kls[self.steps]


def test_the_early_stop_needs_a_change_below_the_threshold():
    recipe = dataclasses.replace(get_recipe("amcnet-official"), iterations=5)
    for kls, steps in (([2000.0, 1500.0, 1000.0, 999.5, 0.0, 0.0], 3),  # 0.5 < 500
                       ([2000.0, 1500.0, 1000.0, 500.0, 0.0, -10.0], 5)):  # 500 is not below 500
        crf = ScriptedCRF(kls)
        marginals = mean_field(crf, recipe)
        assert crf.steps == steps and marginals.shape == (2, 3)


def test_refine_video_rejects_frames_and_maps_of_other_ranks():
    with pytest.raises(ValueError, match=r"^expected frames \(T, H, W, 3\) and probabilities "
                                         r"\(T, K, H, W\) with the same T, found \(1, 40, 60, 3\) "
                                         r"and \(1, 40, 60\)$"):
        refine_video(np.zeros((1, HEIGHT, WIDTH, 3), np.uint8), np.full((1, HEIGHT, WIDTH), 0.5),
                     get_recipe("agnn"))
