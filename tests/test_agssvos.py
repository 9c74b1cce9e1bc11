"""AGSS-VOS's network (methods/agssvos.py): the agnostic masks (Eqs. 1–2), the attention product
(Eq. 3), the probabilistic normalisation and labels (Eqs. 4–6) on hand-worked numbers, the instance
IoU loss (Eq. 7) with void pixels and absent objects, the global convolution's receptive field,
each block against a literal implementation of its layers, the paper preset's shapes and size,
which parts run once per frame and which once per object, reusing the reference features, the
ablations of Table 4, and a small overfit."""

from collections import defaultdict

import pytest
import timm
import torch
import torch.nn.functional as F

from tests.test_amcnet import randomised
from vosbench.methods.agssvos import (
    VOID_LABEL,
    AGSSNetwork,
    AttentionGenerator,
    AttentionGuidedDecoder,
    GlobalConvolution,
    MaskGuidedResNet,
    Refinement,
    ResidualBlock,
    agnostic_mask,
    attend,
    instance_iou_loss,
    normalise_probabilities,
    segmentation_labels,
    with_background,
)

SIZE = 64


def tiny_network(**overrides) -> AGSSNetwork:
    torch.manual_seed(0)
    return AGSSNetwork(**{**dict(backbone="resnet18", channels=8), **overrides})


def count(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def scene(batch: int = 1, num_objects: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random frames (B, 3, 64, 64) and soft masks (B, K, 64, 64) of K blobs."""
    torch.manual_seed(2)
    masks = torch.zeros(batch, num_objects, SIZE, SIZE)
    for k in range(num_objects):
        top, left = 6 + 12 * k, 10 + 9 * k
        masks[:, k, top:top + 20, left:left + 16] = 0.9
    return torch.randn(batch, 3, SIZE, SIZE), masks


# --- the equations -------------------------------------------------------------------------------

def test_agnostic_masks_are_the_pixelwise_maximum_over_the_objects():
    """Eqs. 1–2 on two objects over a 2×3 frame, and a second frame of the batch."""
    masks = torch.tensor([[[[0.0, 0.2, 1.0], [0.5, 0.0, 0.0]],
                           [[0.3, 0.1, 0.0], [0.5, 0.0, 0.7]]],
                          [[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]],
                           [[0.0, 0.0, 0.0], [0.0, 0.0, 0.25]]]])
    expected = torch.tensor([[[[0.3, 0.2, 1.0], [0.5, 0.0, 0.7]]],
                             [[[1.0, 1.0, 1.0], [0.0, 0.0, 0.25]]]])
    assert torch.equal(agnostic_mask(masks), expected)
    with pytest.raises(ValueError, match="^an agnostic mask needs at least one object mask, got "
                                         "K = 0$"):
        agnostic_mask(torch.zeros(1, 0, 2, 3))


def test_attention_multiplies_each_objects_features_into_the_agnostic_features():
    """Eq. 3, F^ia_k = F^atn_k ⊙ F^ia, element by element, object k of frame b at b·K + k; a
    one-channel attention (the masks of "w/o ISM") weighs every channel."""
    torch.manual_seed(0)
    agnostic, attention = torch.randn(2, 4, 3, 5), torch.randn(6, 4, 3, 5)  # B = 2, K = 3
    result = attend(agnostic, attention)
    assert result.shape == (6, 4, 3, 5)
    for b in range(2):
        for k in range(3):
            for c in range(4):
                for y in range(3):
                    for x in range(5):
                        assert result[b * 3 + k, c, y, x] == \
                            attention[b * 3 + k, c, y, x] * agnostic[b, c, y, x]
    maps = torch.rand(6, 1, 3, 5)
    assert torch.equal(attend(agnostic, maps)[4, 2], maps[4, 0] * agnostic[1, 2])


def test_normalisation_follows_equations_4_and_5_on_hand_worked_odds():
    """Three pixels, two objects, P = (P_1, P_2):
    (0.8, 0.5): P_0 = 1 − 0.8 = 0.2; odds 0.2/0.8 = 1/4, 0.8/0.2 = 4, 0.5/0.5 = 1, sum 21/4:
        P̂ = (1/21, 16/21, 4/21).
    (0.1, 0.3): P_0 = 0.7; odds 7/3, 1/9, 3/7, sum 181/63: P̂ = (147/181, 7/181, 27/181).
    (0.6, 0.55): P_0 = 0.4; odds 2/3, 3/2, 11/9, sum 61/18: P̂ = (12/61, 27/61, 22/61) — object 1
        wins the argmax with P̂_1 < 0.5."""
    objects = torch.tensor([[[[0.8, 0.1, 0.6]], [[0.5, 0.3, 0.55]]]])  # (1, 2, 1, 3)
    expected = torch.tensor([[1 / 21, 16 / 21, 4 / 21],
                             [147 / 181, 7 / 181, 27 / 181],
                             [12 / 61, 27 / 61, 22 / 61]]).T[None, :, None]  # (1, 3, 1, 3)
    normalised = normalise_probabilities(objects)
    assert normalised.shape == (1, 3, 1, 3) and normalised.dtype == torch.float32
    assert torch.allclose(normalised, expected, atol=1e-6)
    assert torch.allclose(with_background(objects)[0, 0, 0], torch.tensor([0.2, 0.7, 0.4]))
    assert segmentation_labels(normalised).tolist() == [[[1, 0, 1]]]  # Eq. 6


def test_normalisation_clamps_certain_probabilities():
    """P = (1, 0): the background 1 − 1 = 0 and object 2 are clamped to ε = 1e-7, odds 1e-7 /
    (1 − 1e-7) ≈ 1e-7; object 1 to 1 − ε, odds ≈ 1e7: P̂ ≈ (1e-14, 1, 1e-14), finite. P = (0, 0):
    the background is certain, P̂ ≈ (1, 1e-14, 1e-14)."""
    objects = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])
    normalised = normalise_probabilities(objects)
    assert torch.isfinite(normalised).all()
    assert torch.allclose(normalised.sum(1), torch.ones(1, 1, 2))
    assert torch.allclose(normalised[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-12)
    assert 0 < normalised[0, 0, 0, 0] < 1e-13
    assert torch.allclose(normalised[0, :, 0, 1], torch.tensor([1.0, 0.0, 0.0]), atol=1e-12)
    objects = torch.rand(2, 3, 4, 5, requires_grad=True)
    normalise_probabilities(objects)[:, 1:].sum().backward()
    assert torch.isfinite(objects.grad).all()


def test_labels_are_the_argmax_and_normalisation_keeps_them():
    """Eq. 6 picks the most probable of background and objects; odds are increasing in P and
    Eq. 4 divides every channel by one sum, so the normalised labels are those of the raw
    probabilities with Eq. 5's background."""
    probabilities = torch.tensor([[[[0.5, 0.1]], [[0.2, 0.3]], [[0.3, 0.6]]]])  # (1, 3, 1, 2)
    assert segmentation_labels(probabilities).tolist() == [[[0, 2]]]
    torch.manual_seed(0)
    objects = torch.rand(2, 4, 6, 7)
    assert torch.equal(segmentation_labels(normalise_probabilities(objects)),
                       segmentation_labels(with_background(objects)))


def test_iou_loss_of_a_hand_made_pair_leaves_void_pixels_out():
    """labels [[1, 1, 0], [2, void, 0]]:
    object 1, S = [[1, 1, 0], [0, ·, 0]], P̂_1 = [[.9, .5, .2], [.1, ·, 0]]:
        Σ min = .9 + .5 = 1.4, Σ max = 1 + 1 + .2 + .1 + 0 = 2.3, ratio 14/23;
    object 2, S = [[0, 0, 0], [1, ·, 0]], P̂_2 = [[0, .25, 0], [.6, ·, .2]]:
        Σ min = .6, Σ max = .25 + 1 + .2 = 1.45, ratio 12/29;
    loss = 1 − (14/23 + 12/29) / 2 = 326/667 ≈ 0.48876 (with the void pixel it would differ)."""
    labels = torch.tensor([[[1, 1, 0], [2, VOID_LABEL, 0]]])
    probabilities = torch.tensor([[[[0.9, 0.5, 0.2], [0.1, 0.9, 0.0]],
                                   [[0.0, 0.25, 0.0], [0.6, 0.8, 0.2]]]])
    loss = instance_iou_loss(probabilities, labels)
    assert abs(loss.item() - 326 / 667) < 1e-6
    # a perfect prediction: ratio 1 for both, loss 0, whatever the void pixel holds
    perfect = torch.stack([labels == 1, labels == 2], 1).float()
    perfect[0, :, 1, 1] = 0.7
    assert instance_iou_loss(perfect, labels).item() == pytest.approx(0, abs=1e-7)


def test_iou_loss_leaves_absent_objects_and_empty_frames_out():
    """N counts the objects present: a third object absent from the labels (or only under void)
    changes neither the loss nor gets a gradient; a frame without objects is left out of the
    batch mean; a batch without any object gives 0."""
    labels = torch.tensor([[[1, 1, 0], [2, VOID_LABEL, 0]]])
    two = torch.tensor([[[[0.9, 0.5, 0.2], [0.1, 0.9, 0.0]],
                         [[0.0, 0.25, 0.0], [0.6, 0.8, 0.2]]]])
    third = torch.tensor([[[[0.3, 0.3, 0.3], [0.3, 0.3, 0.3]]]])
    three = torch.cat([two, third], 1).requires_grad_()
    loss = instance_iou_loss(three, labels)
    assert abs(loss.item() - 326 / 667) < 1e-6
    loss.backward()
    assert torch.equal(three.grad[0, 2], torch.zeros(2, 3))
    assert three.grad[0, :2].abs().sum() > 0
    under_void = labels.clone()
    under_void[0, 1, 1] = VOID_LABEL  # object 3 nowhere else: absent too
    assert abs(instance_iou_loss(three, under_void).item() - 326 / 667) < 1e-6
    empty = torch.zeros(1, 2, 3, dtype=torch.long)
    batch = instance_iou_loss(torch.cat([three, three]), torch.cat([labels, empty]))
    assert abs(batch.item() - 326 / 667) < 1e-6
    nothing = instance_iou_loss(three, empty)
    assert nothing.item() == 0 and nothing.requires_grad


def test_the_iou_loss_averages_frames_with_one_object_and_with_two():
    """Frame 0, labels [1, 0], P̂_1 [0.5, 0]: object 1's ratio 0.5 / 1, loss 0.5 (object 2 absent).
    Frame 1, labels [1, 2], P̂_1 [1, 0], P̂_2 [0, 0.5]: ratios 1 and 0.5, loss 1 − 1.5 / 2 = 0.25.
    The batch's loss is their mean, 0.375."""
    labels = torch.tensor([[[1, 0]], [[1, 2]]])
    probabilities = torch.tensor([[[[0.5, 0.0]], [[0.0, 0.0]]], [[[1.0, 0.0]], [[0.0, 0.5]]]])
    assert instance_iou_loss(probabilities, labels).item() == pytest.approx(0.375)


# --- blocks --------------------------------------------------------------------------------------

def test_the_global_convolution_sees_a_full_k_by_k_window():
    """(k×1 then 1×k) + (1×k then k×1): an impulse reaches exactly the k×k window around it."""
    torch.manual_seed(0)
    block = GlobalConvolution(2, 3, kernel_size=5)
    for conv in (*block.tall_then_wide, *block.wide_then_tall):
        torch.nn.init.uniform_(conv.weight, 0.1, 1.0)
        torch.nn.init.zeros_(conv.bias)
    impulse = torch.zeros(1, 2, 11, 11)
    impulse[0, :, 5, 5] = 1
    reached = block(impulse).abs().sum(1)[0] > 0
    window = torch.zeros(11, 11, dtype=torch.bool)
    window[3:8, 3:8] = True
    assert torch.equal(reached, window)
    full = block(impulse)
    torch.nn.init.zeros_(block.wide_then_tall[1].weight)  # one branch left: less reaches each
    assert (block(impulse) <= full).all() and not torch.allclose(block(impulse), full)
    with pytest.raises(ValueError, match="odd"):
        GlobalConvolution(2, 3, kernel_size=4)


# --- the blocks against literal implementations ------------------------------------------------

def convolutions(module: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [layer for layer in module.modules() if isinstance(layer, torch.nn.Conv2d)]


def conv(x: torch.Tensor, layer: torch.nn.Conv2d, **geometry) -> torch.Tensor:
    """`layer`'s weights and bias applied by F.conv2d with the stride and padding given here."""
    return F.conv2d(x, layer.weight, layer.bias, **geometry)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_the_residual_block_adds_two_relu_convolutions_to_its_input():
    """RGMP's residual block: x + W₂ ∗ ReLU(W₁ ∗ ReLU(x)), 3×3 convolutions, padding 1 (random
    weights and an input with negative values, so that every ReLU acts)."""
    block = randomised(ResidualBlock(4))
    first, second = convolutions(block)
    assert tuple(first.weight.shape) == tuple(second.weight.shape) == (4, 4, 3, 3)
    x = torch.randn(2, 4, 6, 5)
    expected = x + conv(F.relu(conv(F.relu(x), first, padding=1)), second, padding=1)
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_the_global_convolution_adds_its_two_separable_branches():
    """(W_{1×k} ∗ (W_{k×1} ∗ x)) + (W_{k×1} ∗ (W_{1×k} ∗ x)), k = 5 with 'same' padding, no
    activation in between."""
    block = randomised(GlobalConvolution(3, 4, kernel_size=5))
    tall_first, wide_second = block.tall_then_wide
    wide_first, tall_second = block.wide_then_tall
    shapes = [tuple(layer.weight.shape) for layer in (tall_first, wide_second, wide_first,
                                                      tall_second)]
    assert shapes == [(4, 3, 5, 1), (4, 4, 1, 5), (4, 3, 1, 5), (4, 4, 5, 1)]
    x = torch.randn(2, 3, 9, 7)
    expected = (conv(conv(x, tall_first, padding=(2, 0)), wide_second, padding=(0, 2))
                + conv(conv(x, wide_first, padding=(0, 2)), tall_second, padding=(2, 0)))
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_the_refinement_adds_the_upsampled_coarse_features_to_the_projected_skip():
    """merge(skip_block(W ∗ skip) + bilinear(coarse)), W 3×3 with padding 1: skip (2, 3, 8, 10),
    coarse (2, 4, 4, 5) → (2, 4, 8, 10)."""
    module = randomised(Refinement(3, 4))
    assert tuple(module.project.weight.shape) == (4, 3, 3, 3)
    skip, coarse = torch.randn(2, 3, 8, 10), torch.randn(2, 4, 4, 5)
    projected = module.skip_block(conv(skip, module.project, padding=1))
    expected = module.merge_block(projected + upsample(coarse, (8, 10)))
    assert torch.allclose(module(skip, coarse), expected, atol=1e-5)


def test_the_mask_enters_the_stem_added_to_the_frames_convolution():
    """RGMP's stem: ReLU(BN(conv1 ∗ I + W_m ∗ S)) for each of K = 3 masks of 2 frames, W_m a 7×7
    stride-2 convolution of the mask without bias, like conv1; then max pooling and layer1."""
    encoder = randomised(MaskGuidedResNet("resnet18", None, num_stages=2))
    assert tuple(encoder.mask_conv.weight.shape) == (64, 1, 7, 7) and encoder.mask_conv.bias is None
    frames, masks = torch.randn(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    stem, quarter = encoder(frames, masks)
    summed = (F.conv2d(frames, encoder.frame_conv.weight, stride=2, padding=3)
              .repeat_interleave(3, 0)
              + F.conv2d(masks.flatten(0, 1)[:, None], encoder.mask_conv.weight, stride=2,
                         padding=3))
    norm = encoder.stem[0]
    expected = F.relu(F.batch_norm(summed, norm.running_mean, norm.running_var, norm.weight,
                                   norm.bias, eps=norm.eps))
    assert torch.allclose(stem, expected, atol=1e-4)
    assert tuple(quarter.shape) == (6, 64, 8, 8)


def test_the_attention_generator_follows_figure_2d():
    """W₃ ∗ ReLU(W₂ ∗ ReLU(W₁ ∗ x)): 1×1, then 3×3 (padding 1), then 3×3 with stride 2 and no
    activation after it (§3.1): (2, 5, 8, 8) → (2, 4, 4, 4)."""
    generator = randomised(AttentionGenerator(5, 4))
    first, second, third = convolutions(generator)
    shapes = [tuple(layer.weight.shape) for layer in (first, second, third)]
    assert shapes == [(4, 5, 1, 1), (4, 4, 3, 3), (4, 4, 3, 3)]
    x = torch.randn(2, 5, 8, 8)
    expected = conv(F.relu(conv(F.relu(conv(x, first)), second, padding=1)), third, stride=2,
                    padding=1)
    assert expected.shape == (2, 4, 4, 4)
    assert torch.allclose(generator(x), expected, atol=1e-5)


def test_the_decoder_gives_the_foreground_softmax_at_the_input_size():
    """softmax(bilinear(W ∗ ReLU(refine(skip, F^ia_k))))[foreground], W 3×3 to 2 channels with
    padding 1, upsampled from 8×8 to the 32×24 input."""
    decoder = randomised(AttentionGuidedDecoder(3, 4))
    predict = convolutions(decoder.predict)[0]
    assert tuple(predict.weight.shape) == (2, 4, 3, 3)
    attended, skip = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 8, 8)
    logits = conv(F.relu(decoder.refine(skip, attended)), predict, padding=1)
    expected = upsample(logits, (32, 24)).softmax(1)[:, 1]
    assert torch.allclose(decoder(attended, skip, (32, 24)), expected, atol=1e-5)


# --- the network ---------------------------------------------------------------------------------

def test_paper_preset_shapes_and_parameter_count():
    """ResNet-50 at 832×448, three objects, on the meta device (no compute): the reference's top
    features at 1/32 (14×26), F^vs at 1/4, F^atn and F^ia at 1/8 (56×104), the output at full
    size with the background channel."""
    with torch.device("meta"):
        network = AGSSNetwork()
        frame, masks = torch.empty(1, 3, 448, 832), torch.empty(1, 3, 448, 832)
        reference = network.encode_reference(frame, masks)
        visual, attention = network.specific(frame, masks)
        features, quarter = network.agnostic(frame, agnostic_mask(masks), reference)
        output = network(frame, masks, reference)
    assert tuple(reference.shape) == (1, 2048, 14, 26)
    assert tuple(visual.shape) == (3, 256, 112, 208)
    assert tuple(attention.shape) == (3, 256, 56, 104)
    assert tuple(features.shape) == (1, 256, 56, 104) and tuple(quarter.shape) == (1, 256, 112,
                                                                                    208)
    assert tuple(output.shape) == (1, 4, 448, 832)
    total = count(network)
    encoder = count(network.agnostic.encoder)
    print(f"AGSS-VOS paper preset: {total / 1e6:.2f} M parameters (IAM "
          f"{count(network.agnostic) / 1e6:.2f} M, its encoder {encoder / 1e6:.2f} M; ISM "
          f"{count(network.specific) / 1e6:.2f} M; decoder {count(network.decoder) / 1e6:.2f} M)")
    # timm resnet50 without its classifier (23 508 032) and the 7×7 mask convolution (3 136)
    assert encoder == 23_508_032 + 64 * 49
    # METHODS.md §3: ~53 M (RGMP's encoder and decoder, ~48.5 M, plus the light ISM and
    # decoder); our layout has the same layers, so within 2 %
    assert abs(total - 53e6) < 0.02 * 53e6


def test_only_the_per_object_branch_grows_with_the_number_of_objects():
    """Forward hooks on every module record the batch it gets, for K = 1 and K = 5 objects of
    B = 2 frames (the reference computed beforehand). The IAM and the ISM's frame convolution run
    once per frame (batch B) whatever K; the ISM's mask branch (mask convolution, the rest of the
    stem, layer1), its attention generator and the decoder get B·K, each called once."""
    network = tiny_network().eval()
    batches = defaultdict(list)

    def record(name):
        return lambda module, inputs, output: batches[name].append(inputs[0].shape[0])

    handles = [module.register_forward_hook(record(name))
               for name, module in network.named_modules() if name]
    seen = {}
    with torch.no_grad():
        for num_objects in (1, 5):
            frame, masks = scene(batch=2, num_objects=num_objects)
            reference = network.encode_reference(frame, masks)
            batches.clear()
            network(frame, masks, reference)
            seen[num_objects] = {name: list(calls) for name, calls in batches.items()}
    for handle in handles:
        handle.remove()
    assert seen[1].keys() == seen[5].keys()
    per_object = ("specific.encoder.mask_conv", "specific.encoder.stem",
                  "specific.encoder.stages", "specific.attention", "decoder")
    for name in seen[5]:
        if name.startswith(per_object):
            assert (seen[1][name], seen[5][name]) == ([2] * len(seen[1][name]),
                                                      [10] * len(seen[1][name])), name
        else:
            assert seen[1][name] == seen[5][name] and set(seen[5][name]) == {2}, name
    for name in ("agnostic.encoder.frame_conv", "agnostic.fuse", "agnostic.refine_8",
                 "specific.encoder.frame_conv", "specific.encoder.mask_conv",
                 "specific.attention", "decoder.refine"):
        assert len(seen[5][name]) == 1, name
    assert seen[5]["agnostic.encoder.mask_conv"] == [2]  # the agnostic mask, once per frame


def test_reference_features_are_computed_once_and_reused():
    """The reference stream is the target stream's encoder (Siamese) on I_0 and S_0^ag; features
    computed once give, for two different target frames, the outputs of computing them anew, and
    another reference changes the output."""
    network = randomised(tiny_network())
    reference_frame, reference_masks = scene()
    reference = network.encode_reference(reference_frame, reference_masks)
    literal = network.agnostic.encoder(reference_frame, reference_masks.max(1, keepdim=True)[0])
    assert torch.equal(reference, literal[-1])
    torch.manual_seed(3)
    for _ in range(2):
        frame, masks = torch.randn(1, 3, SIZE, SIZE), torch.rand(1, 2, SIZE, SIZE)
        anew = network(frame, masks, network.encode_reference(reference_frame, reference_masks))
        assert torch.equal(network(frame, masks, reference), anew)
    other = network.encode_reference(torch.randn(1, 3, SIZE, SIZE), reference_masks)
    assert not torch.allclose(network(frame, masks, other), anew)


def test_the_full_network_follows_figure_2():
    """P_k = decoder(F^atn_k ⊙ F^ia, F^vs_k) for each object, assembled here from the modules, and
    the output is Eqs. 4–5 of those."""
    network = randomised(tiny_network())
    frame, masks = scene(batch=2)
    reference = network.encode_reference(*scene())[[0, 0]]
    features, _ = network.agnostic(frame, masks.max(1, keepdim=True)[0], reference)
    for b in range(2):
        for k in range(2):
            visual, attention = network.specific(frame[b:b + 1], masks[b:b + 1, k:k + 1])
            expected = network.decoder(attention * features[b:b + 1], visual, (SIZE, SIZE))
            result = network.object_probabilities(frame, masks, reference)[b, k]
            assert torch.allclose(result, expected[0], atol=1e-5)
    assert torch.allclose(network(frame, masks, reference),
                          normalise_probabilities(network.object_probabilities(frame, masks,
                                                                               reference)))


def test_without_ism_the_agnostic_features_are_multiplied_by_the_warped_masks():
    """Table 4 line 1: F^ia ⊙ P_{t−1,t,k} (the mask averaged over 8×8 blocks), refined with the
    target stream's 1/4 features; no ISM is built."""
    network = randomised(tiny_network(instance_specific=False))
    assert network.specific is None
    frame, masks = scene()
    reference = network.encode_reference(frame, masks)
    features, quarter = network.agnostic(frame, masks.max(1, keepdim=True)[0], reference)
    for k in range(2):
        blocks = masks[0, k].view(8, 8, 8, 8).mean((1, 3))  # 8×8 blocks of 64×64
        expected = network.decoder(features * blocks, quarter, (SIZE, SIZE))
        result = network.object_probabilities(frame, masks, reference)[0, k]
        assert torch.allclose(result, expected[0], atol=1e-5)


def test_without_iam_the_instance_features_are_decoded_alone():
    """Table 4 line 2: the decoder on F^atn_k with F^vs_k; no IAM, no reference."""
    network = randomised(tiny_network(instance_agnostic=False))
    assert network.agnostic is None
    frame, masks = scene()
    assert network.encode_reference(frame, masks) is None
    visual, attention = network.specific(frame, masks)
    expected = network.decoder(attention, visual, (SIZE, SIZE))
    assert torch.allclose(network.object_probabilities(frame, masks, None)[0], expected,
                          atol=1e-6)


def test_without_normalisation_the_output_is_the_raw_probabilities_with_eq_5s_background():
    network = randomised(tiny_network(normalise=False))
    frame, masks = scene()
    reference = network.encode_reference(frame, masks)
    objects = network.object_probabilities(frame, masks, reference)
    output = network(frame, masks, reference)
    assert torch.equal(output[:, 1:], objects)
    assert torch.allclose(output[:, 0], 1 - objects.max(1)[0])


def test_without_normalisation_a_padded_slot_is_zero_and_out_of_the_background():
    """normalise off, slot 2 of the frame empty: its channel is 0 and P_0 = 1 − P_1 whatever
    the padded slot's P (0.9 and 0.2 here, against P_1 = 0.3 and 0.6)."""
    objects = torch.tensor([[[[0.3, 0.6]], [[0.9, 0.2]]]])  # (1, 2, 1, 2)
    output = tiny_network(normalise=False).distribution(objects, torch.tensor([[True, False]]))
    assert torch.allclose(output, torch.tensor([[[[0.7, 0.4]], [[0.3, 0.6]], [[0.0, 0.0]]]]))


def test_impossible_configurations_are_rejected():
    with pytest.raises(ValueError, match="^AGSSNetwork needs the instance-agnostic or the "
                                         r"instance-specific module \(or both\)$"):
        tiny_network(instance_agnostic=False, instance_specific=False)
    network = tiny_network()
    frame, masks = scene()
    with pytest.raises(ValueError, match="^the instance-agnostic module needs the reference "
                                         r"features \(encode_reference\)$"):
        network(frame, masks, None)


@pytest.mark.parametrize("switches", [dict(), dict(instance_specific=False),
                                      dict(instance_agnostic=False)])
def test_every_parameter_gets_a_gradient(switches):
    """Nothing is built that the forward pass leaves out (DDP fails on unused parameters)."""
    network = tiny_network(**switches).train()
    frame, masks = scene()
    labels = torch.where((masks > 0.5).any(1), (masks > 0.5).long().argmax(1) + 1, 0)
    output = network(frame, masks, network.encode_reference(frame, masks))
    instance_iou_loss(output[:, 1:], labels).backward()
    assert [name for name, p in network.named_parameters() if p.grad is None] == []


def test_both_resnets_load_the_weights_file(tmp_path):
    source = timm.create_model("resnet18", pretrained=False, num_classes=0)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    network = tiny_network(weights=str(tmp_path / "resnet18.pth"))
    for encoder in (network.agnostic.encoder, network.specific.encoder):
        assert torch.equal(encoder.frame_conv.weight, source.conv1.weight)
        assert torch.equal(encoder.stages[0][1][-1].conv2.weight, source.layer1[-1].conv2.weight)
    assert torch.equal(network.agnostic.encoder.stages[-1][-1].conv2.weight,
                       source.layer4[-1].conv2.weight)


def test_a_tiny_network_overfits_one_frame_with_two_objects():
    """ResNet-18, 8 channels: 20 Adam steps on one 64×64 frame (its own reference), the warped
    masks the ground truth shifted by 3 pixels, cut the IoU loss of Eq. 7 by more than half."""
    network = tiny_network().train()
    frame, masks = scene()
    truth = masks > 0.5
    labels = torch.where(truth.any(1), truth.long().argmax(1) + 1, 0)
    warped = torch.roll(truth.float(), shifts=(3, 3), dims=(2, 3))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        output = network(frame, warped, network.encode_reference(frame, truth.float()))
        loss = instance_iou_loss(output[:, 1:], labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    print(f"overfit: IoU loss {losses[0]:.3f} → {losses[-1]:.3f}")
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.slow
def test_paper_preset_forward_backward():
    """One 832×448 frame with two objects through the paper preset and back."""
    network = AGSSNetwork().train()
    frame, masks = torch.randn(1, 3, 448, 832), torch.zeros(1, 2, 448, 832)
    masks[:, 0, 100:200, 100:300] = 1
    masks[:, 1, 250:400, 500:700] = 1
    labels = torch.where(masks.any(1), masks.argmax(1) + 1, 0)
    output = network(frame, masks, network.encode_reference(frame, masks))
    assert output.shape == (1, 3, 448, 832)
    instance_iou_loss(output[:, 1:], labels).backward()
    assert network.specific.encoder.mask_conv.weight.grad.abs().sum() > 0
    assert F.mse_loss(output.sum(1), torch.ones(1, 448, 832)) < 1e-10
