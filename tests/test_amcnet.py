"""AMC-Net (methods/amcnet.py): the paper preset's shapes and size, the co-attention gate (Eqs.
1–5), the global co-attention (Eq. 6) and a Motion Correction Module step (Eqs. 7–10) against
literal implementations, the ablation switches, the loss with its supervised attention maps, the
optimiser's groups, the flow input (colour coding, resizing, flips, the last frame), training and
`predict_video`."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from tests.test_agnn import make_clip, make_video
from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.errors import InputError
from vosbench.flow.colour import colour_code, flow_to_colour
from vosbench.methods.amcnet import (
    AMCNet,
    ChannelAttention,
    CoAttentionGate,
    MotionCorrection,
    SpatialAttention,
    conv_bn_prelu,
    global_co_attention,
)
from vosbench.methods.warping import resize_flow

SIZE = 64


def tiny_amcnet(**overrides) -> AMCNet:
    torch.manual_seed(0)
    options = dict(backbone="resnet18", reduced_channels=(8, 8, 8, 16, 16),
                   input_size=(SIZE, SIZE), optimizer="adamw", lr=0.003)
    return AMCNet(**{**options, **overrides})


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with random weights everywhere and BatchNorm in eval mode with random
    statistics, so that no layer is the identity by initialisation."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if name.endswith("running_var")
                            else torch.randn_like(value) * 0.5)
    return module.eval()


# --- literal implementations of the equations ----------------------------------------------------

def literal_channel_attention(module: ChannelAttention, x: torch.Tensor) -> torch.Tensor:
    """σ(W2 ReLU(W1 avg(x)) + W2 ReLU(W1 max(x))), by matrix products: (B, C) weights."""
    w1 = module.mlp[0].weight[:, :, 0, 0]
    w2 = module.mlp[2].weight[:, :, 0, 0]
    average = x.sum((2, 3)) / (x.shape[2] * x.shape[3])
    largest = x.flatten(2).max(-1).values
    return torch.sigmoid(torch.relu(average @ w1.T) @ w2.T + torch.relu(largest @ w1.T) @ w2.T)


def literal_spatial_logits(module: SpatialAttention, x: torch.Tensor) -> torch.Tensor:
    """conv7×7 over the channel mean and max (B, 1, h, w)."""
    pooled = torch.stack([x.sum(1) / x.shape[1], x.max(1).values], 1)
    return F.conv2d(pooled, module.conv.weight, padding=3)


def test_co_attention_gate_follows_equations_1_to_5():
    gate = randomised(CoAttentionGate(channels=6, hidden=(4,), gate=True))
    appearance, motion = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7)
    # Eq. 1: the convolution's two maps, σ, then the average over the h·w positions
    maps = gate.gate(torch.cat([appearance, motion], 1))
    scores = torch.sigmoid(maps).sum((2, 3)) / 35
    assert torch.allclose(gate.scores(appearance, motion), scores, atol=1e-6)
    g_a, g_m = scores[:, 0].view(2, 1, 1, 1), scores[:, 1].view(2, 1, 1, 1)
    gated_a, gated_m = appearance * g_a, motion * g_m  # Eq. 2
    m1 = literal_channel_attention(gate.channel, gated_m)[:, :, None, None] * gated_m  # Eq. 3
    m2 = torch.sigmoid(literal_spatial_logits(gate.spatial, m1)) * m1  # Eq. 4
    fused, gated = gate(appearance, motion)
    assert torch.allclose(fused, gated_a + m2, atol=1e-5)  # Eq. 5
    assert torch.allclose(gated, gated_m, atol=1e-6)  # G^m, not M'', goes on to the decoder
    assert gate.gate[-1].out_channels == 2 and 0 < scores.min() and scores.max() < 1


def test_without_the_gate_both_scores_are_one():
    gate = randomised(CoAttentionGate(channels=6, hidden=(4,), gate=False))
    appearance, motion = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7)
    m1 = literal_channel_attention(gate.channel, motion)[:, :, None, None] * motion
    m2 = torch.sigmoid(literal_spatial_logits(gate.spatial, m1)) * m1
    fused, gated = gate(appearance, motion)
    assert gate.gate is None
    assert torch.allclose(fused, appearance + m2, atol=1e-5) and torch.equal(gated, motion)


def test_global_co_attention_follows_equation_6_position_by_position():
    torch.manual_seed(0)
    motion, appearance = torch.randn(2, 4, 3, 2), torch.randn(2, 4, 3, 2)
    result = global_co_attention(motion, appearance)
    for b in range(2):
        g = motion[b].flatten(1)  # (c, hw)
        e = appearance[b].flatten(1)
        for p in range(6):
            weights = [math.exp(float(g[:, p] @ e[:, q]) / 2) for q in range(6)]  # √c = 2
            expected = sum(w * e[:, q] for q, w in enumerate(weights)) / sum(weights)
            assert torch.allclose(result[b].flatten(1)[:, p], expected, atol=1e-5)


def test_global_co_attention_of_a_uniform_appearance_is_that_appearance():
    appearance = torch.randn(1, 3, 1, 1).expand(1, 3, 4, 5)
    assert torch.allclose(global_co_attention(torch.randn(1, 3, 4, 5), appearance), appearance,
                          atol=1e-6)


def test_a_motion_correction_step_follows_equations_7_to_10():
    block = randomised(MotionCorrection(channels=4))
    decoder, appearance, motion = (torch.randn(2, 4, 6, 5) for _ in range(3))
    fused = torch.cat([decoder, motion], 1)  # Eq. 7
    weighted = literal_channel_attention(block.channel, fused)[:, :, None, None] * fused  # Eq. 8
    logits = literal_spatial_logits(block.spatial, weighted)  # Eq. 9
    expected = block.conv(torch.cat([decoder, appearance], 1)) * torch.sigmoid(logits) + decoder
    result, attention = block(decoder, appearance, motion)
    assert torch.allclose(attention, logits, atol=1e-5)
    assert torch.allclose(result, expected, atol=1e-5)  # Eq. 10
    plain = randomised(MotionCorrection(channels=4, attention=False))
    result, attention = plain(decoder, appearance, motion)
    assert attention is None and plain.channel is None
    assert torch.allclose(result, plain.conv(torch.cat([decoder, appearance], 1)) + decoder)


# --- the network ------------------------------------------------------------------------------

def count(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_paper_preset_shapes_and_parameter_count():
    """ResNet-101 encoders at 384×384, on the meta device (no compute): the stages at 192, 96,
    48, 24 and 12, five attention maps at those sizes, the output at 384."""
    with torch.device("meta"):
        model = AMCNet()
        images, motion = torch.empty(1, 3, 384, 384), torch.empty(1, 3, 384, 384)
    fused, gated = model.network.encode(images, motion)
    assert [tuple(f.shape[1:]) for f in fused] == [
        (64, 192, 192), (256, 96, 96), (512, 48, 48), (1024, 24, 24), (2048, 12, 12)]
    assert [tuple(g.shape) for g in gated] == [tuple(f.shape) for f in fused]
    logits, attention = model.network(images, motion)
    assert tuple(logits.shape) == (1, 1, 192, 192)  # stride 2, then resized to the input
    assert [tuple(a.shape[2:]) for a in attention] == [(12, 12), (24, 24), (48, 48), (96, 96),
                                                       (192, 192)]
    total = count(model)
    encoders = count(model.network.appearance_encoder) + count(model.network.motion_encoder)
    print(f"AMC-Net paper preset: {total / 1e6:.2f} M parameters (encoders "
          f"{encoders / 1e6:.2f} M); the authors' code: ~157 M, with two 3×3 convolutions on "
          f"F before Eq. 8's channel attention at every stage that Eqs. 7–8 do not have")
    assert encoders == 2 * 42_500_160  # timm resnet101 without its classifier
    # the authors' fuse_Flow layers: 3×3 2r→r and r→r with BatchNorm and PReLU at each stage
    code_only = sum(2 * r * r * 9 + r * r * 9 + 6 * r for r in (32, 64, 128, 256, 512))
    assert abs(total + code_only - 157e6) < 0.01 * 157e6
    hp = model.hparams
    assert (hp.num_mcm, hp.num_supervised, hp.gate, tuple(hp.mcg_stages)) == (5, 5, True,
                                                                              (0, 1, 2, 3, 4))
    # §4.1's recipe: SGD, momentum 0.9, weight decay 5e-4, lr 1e-3 with poly 0.9, 384×384
    assert (hp.optimizer, hp.momentum, hp.weight_decay, hp.lr, hp.poly_power) == (
        "sgd", 0.9, 5e-4, 1e-3, 0.9)
    assert tuple(hp.input_size) == (384, 384) and hp.bias_lr_multiplier == 2


def test_conv_bn_prelu_is_a_biasless_convolution_batchnorm_and_a_prelu_per_channel():
    # 3×3 weights 4·8·9 = 288, BatchNorm's scale and shift 2·8, PReLU's slopes 8
    assert count(conv_bn_prelu(4, 8)) == 288 + 16 + 8


def test_the_gate_narrows_to_r_i_and_to_r_i_over_4_at_the_two_top_stages():
    """The gate's convolution widths (the authors' code): r_i then 2 at stages 0–2, r_i, r_i / 4
    then 2 at stages 3 and 4; "w/o gate" has none."""
    def widths(gate):
        return [m.out_channels for m in gate.gate.modules() if isinstance(m, torch.nn.Conv2d)]

    network = tiny_amcnet(reduced_channels=(8, 8, 8, 16, 32)).network
    assert [widths(gate) for gate in network.gates] == [[8, 2], [8, 2], [8, 2], [16, 4, 2],
                                                        [32, 8, 2]]
    assert all(gate.gate is None for gate in tiny_amcnet(gate=False).network.gates)


def test_the_encoders_both_load_the_weights_file(tmp_path):
    source = timm.create_model("resnet18", pretrained=False, num_classes=0)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    network = tiny_amcnet(weights=str(tmp_path / "resnet18.pth")).network
    for encoder in (network.appearance_encoder, network.motion_encoder):
        assert torch.equal(encoder.stages[0][0].weight, source.conv1.weight)
        assert torch.equal(encoder.stages[4][-1].conv2.weight, source.layer4[-1].conv2.weight)


def test_every_parameter_gets_a_gradient():
    """No module is built that the forward pass leaves out (DDP fails on unused parameters):
    blocks that are not MCMs hold no attention, stages without MCG no gate."""
    model = tiny_amcnet(num_mcm=3, mcg_stages=(0, 2), num_supervised=1).train()
    clip = flow_clip(batch=2)
    unlogged(model).training_step(clip, 0).backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.slow
def test_paper_preset_forward_backward():
    """A training step of one 384×384 frame on the paper preset, its five attention maps
    supervised."""
    model = unlogged(AMCNet())
    clip = make_clip(batch=1, num_frames=1)
    clip = Clip(clip.video, clip.indices, F.interpolate(clip.frames[0], (384, 384))[None],
                F.interpolate(clip.masks[0][:, None].float(), (384, 384))[:, 0].byte()[None],
                flow=torch.randn(1, 1, 2, 384, 384))
    model.training_step(clip, 0).backward()
    network = model.network
    assert network.appearance_encoder.stages[0][0].weight.grad is not None
    # (timm zero-initialises each residual branch's last BatchNorm: at random initialisation
    # the shortcut's projection carries the gradient into the motion encoder's last stage)
    assert network.motion_encoder.stages[4][0].downsample[0].weight.grad.abs().sum() > 0
    assert network.gates[4].gate[0][0].weight.grad.abs().sum() > 0


def test_the_appearance_encoder_takes_each_stages_fused_features():
    """Stage i + 1 of the appearance encoder takes E_i, not its own F^a_i; the motion encoder
    runs on its own features. Stage 0 without MCG: E_0 = F^a_0 + F^m_0."""
    model = randomised(tiny_amcnet(mcg_stages=(1, 2, 3, 4)))
    network = model.network
    images, flow_images = torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 3, SIZE, SIZE)
    fused, gated = network.encode(images, flow_images)
    motion = network.motion_encoder(flow_images)
    stages = network.appearance_encoder.stages
    own = stages[0](images)
    assert torch.allclose(fused[0], own + motion[0]) and torch.equal(gated[0], motion[0])
    expected, expected_motion = network.gates[1](stages[1](fused[0]), motion[1])
    assert torch.allclose(fused[1], expected) and torch.allclose(gated[1], expected_motion)
    assert not torch.allclose(fused[1], network.gates[1](stages[1](own), motion[1])[0])


def test_stages_without_mcg_add_the_modalities_and_fewer_mcms_sit_at_the_finest_blocks():
    model = tiny_amcnet(num_mcm=3, num_supervised=2, mcg_stages=(0,))
    network = model.network
    assert [gate is not None for gate in network.gates] == [True, False, False, False, False]
    assert [block.channel is not None for block in network.blocks] == [True, True, True, False,
                                                                       False]
    images, motion = torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 3, SIZE, SIZE)
    _, attention = network(images, motion)
    assert [a is None for a in attention] == [True, True, False, False, False]  # coarse first
    fused, gated = network.encode(images, motion)
    motion_features = network.motion_encoder(motion)
    assert torch.equal(gated[3], motion_features[3])
    assert torch.allclose(fused[3], network.appearance_encoder.stages[3](fused[2]) +
                          motion_features[3])


def test_options_at_their_bounds_build_and_those_beyond_are_rejected():
    plain = tiny_amcnet(num_mcm=0, num_supervised=0)  # no MCM: no attention map, none supervised
    _, attention = plain.network(torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 3, SIZE, SIZE))
    assert attention == [None] * 5
    with pytest.raises(ValueError, match="num_supervised"):
        tiny_amcnet(num_supervised=6)
    with pytest.raises(ValueError, match="num_mcm"):
        tiny_amcnet(num_mcm=6)
    with pytest.raises(ValueError, match="among the stages 0–4"):
        tiny_amcnet(mcg_stages=(0, 5))
    with pytest.raises(ValueError, match="reduced_channels"):
        tiny_amcnet(reduced_channels=(8, 8, 8))


# --- loss and optimiser ---------------------------------------------------------------------------

def test_the_loss_adds_the_bce_of_the_first_supervised_attention_maps():
    """num_supervised = 2 of 5 maps: the output's BCE plus those of the two coarsest maps
    against the mask taken at every 32nd and 16th pixel (nearest), void left out."""
    model = randomised(tiny_amcnet(num_supervised=2))
    clip = make_clip(batch=1, num_frames=2)
    clip.flow = torch.randn(1, 2, 2, SIZE, SIZE)
    logged = {}
    model.log = lambda name, value, **kwargs: logged.update({name: value})
    model.log_dict = lambda values, **kwargs: logged.update(values)  # what training_step logs
    loss = model.training_step(clip, 0)
    with torch.no_grad():
        logits, attention = model(clip.frames[0], clip.flow[0])

    def bce(scores, masks):
        valid = masks != 255
        target = (masks == 1).float()
        losses = F.binary_cross_entropy_with_logits(scores, target, reduction="none")
        return losses[valid].mean()

    masks = clip.masks[0]
    expected = (bce(logits, masks) + bce(attention[0][:, 0], masks[:, ::32, ::32]) +
                bce(attention[1][:, 0], masks[:, ::16, ::16]))
    assert torch.allclose(loss, expected, atol=1e-5)
    assert logged["train/loss"] is loss
    assert sorted(logged) == ["train/loss", "train/loss_attention1", "train/loss_attention2",
                              "train/loss_output"]
    # one MCM has one attention map: num_supervised = 5 supervises it alone
    single = tiny_amcnet(num_mcm=1, num_supervised=5)
    single.log, single.log_dict = model.log, model.log_dict
    logged.clear()
    single.training_step(clip, 0)
    assert sorted(logged) == ["train/loss", "train/loss_attention1", "train/loss_output"]
    clip.flow = None
    with pytest.raises(InputError, match="data.init_args.flow: class_path vosbench.flow.Flow"):
        single.training_step(clip, 0)


def test_biases_learn_twice_as_fast_without_weight_decay():
    model = tiny_amcnet(optimizer="sgd", lr=0.01, weight_decay=5e-4)
    model.trainer = type("Trainer", (), {"estimated_stepping_batches": 10})()
    optimizer = model.configure_optimizers()["optimizer"]
    weights, biases = optimizer.param_groups
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert (weights["lr"], weights["weight_decay"]) == (0.01, 5e-4)
    assert (biases["lr"], biases["weight_decay"]) == (0.02, 0.0)
    names = {id(p): name for name, p in model.named_parameters()}
    assert all(names[id(p)].endswith(".bias") for p in biases["params"])
    assert len(weights["params"]) + len(biases["params"]) == len(list(model.parameters()))


# --- the flow input -------------------------------------------------------------------------------

def test_colour_coding_normalises_each_flow_by_its_own_largest_magnitude():
    torch.manual_seed(0)
    flows = torch.stack([torch.randn(2, 6, 8), 50 * torch.randn(2, 6, 8), torch.zeros(2, 6, 8)])
    coded = colour_code(flows)
    for flow, image in zip(flows, coded):
        expected = flow_to_colour(flow.permute(1, 2, 0).numpy()).astype(np.float32) / 255
        assert np.allclose(image.permute(1, 2, 0).numpy(), expected, atol=1 / 255 + 1e-6)
    assert torch.equal(coded[2], torch.ones(3, 6, 8))  # no motion is white


def test_resized_flow_scales_the_displacements():
    flow = torch.tensor([3.0, -2.0]).view(1, 2, 1, 1).expand(1, 2, 100, 200)
    resized = resize_flow(flow, (50, 50))
    assert resized.shape == (1, 2, 50, 50)
    assert torch.allclose(resized[0, 0], torch.full((50, 50), 0.75))
    assert torch.allclose(resized[0, 1], torch.full((50, 50), -1.0))


def test_the_presets_flow_negates_x_in_flipped_clips_and_is_backward_for_the_last_frame(
        synthetic_root, tmp_path, monkeypatch):
    from vosbench.lightning_cli import VOSCLI

    monkeypatch.setenv("VOSBENCH_CACHE", str(tmp_path / "cache"))
    root = Path(__file__).resolve().parents[1] / "configs"
    cli = VOSCLI(["--config", str(root / "trainer/cpu.yaml"),
                  "--config", str(root / "data/synthetic.yaml"),
                  "--config", str(root / "methods/amcnet/tiny.yaml"),
                  "--data.init_args.root", str(synthetic_root), "--wandb_mode", "disabled",
                  "--data.init_args.transform.init_args.flip_probability", "1",
                  "--data.init_args.transform.init_args.max_rotation", "0",
                  "--data.init_args.transform.init_args.scale_range", "[1, 1]",
                  "--data.init_args.transform.init_args.size", "[240, 432]",  # the frames'
                  "--trainer.default_root_dir", str(tmp_path / "run")], run=False)
    data = cli.datamodule
    assert data.flow.cache_dir == tmp_path / "cache" / "flow"
    data.setup("fit")
    clip = data.train_dataloader().dataset[0]
    video = next(v for v in data.videos["train"] if v.name == clip.video)
    frame = int(clip.indices[0])
    motion = data.flow.motion(video, frame)  # (H, W, 2)
    assert torch.allclose(clip.flow[0, 0], torch.from_numpy(-motion[:, ::-1, 0].copy()))
    assert torch.allclose(clip.flow[0, 1], torch.from_numpy(motion[:, ::-1, 1].copy()))
    loaded = data.val_dataloader().dataset[0]
    last = len(loaded) - 1
    assert torch.equal(loaded.flow[last], torch.from_numpy(
        -data.flow.backward(loaded.video, last).transpose(2, 0, 1)))
    assert list((tmp_path / "cache" / "flow").rglob("*.flo"))  # cached


# --- training and inference -----------------------------------------------------------------------

def flow_clip(batch: int) -> Clip:
    """make_clip's square object, moving 3 pixels right over a still background."""
    clip = make_clip(batch=batch, num_frames=1)
    clip.flow = torch.zeros(batch, 1, 2, SIZE, SIZE)
    clip.flow[:, :, 0][clip.masks == 1] = 3.0
    return clip


def unlogged(model: AMCNet) -> AMCNet:
    """`model` whose training_step runs without a trainer (its logging a no-op)."""
    model.log = model.log_dict = lambda *args, **kwargs: None
    return model


def test_one_batch_is_overfitted_in_a_few_dozen_steps():
    clip = flow_clip(batch=2)
    model = unlogged(tiny_amcnet())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = model.training_step(clip, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.15 * losses[0], losses
    model.eval()
    with torch.no_grad():
        logits, _ = model(clip.frames[:, 0], clip.flow[:, 0])
    predicted = logits > 0
    truth = clip.masks[:, 0] == 1
    valid = clip.masks[:, 0] != 255
    iou = (predicted & truth & valid).sum() / ((predicted | truth) & valid).sum()
    assert iou > 0.8, float(iou)


def with_flow(video: LoadedVideo) -> LoadedVideo:
    """test_agnn's random video with random flow."""
    flow = torch.randn(len(video), 2, *video.video.size, generator=torch.Generator().manual_seed(1))
    return replace(video, flow=flow)


def test_predict_video_resizes_the_probabilities_back():
    model = tiny_amcnet(frames_per_batch=2).eval()
    video = with_flow(make_video(num_frames=3))
    probabilities = model.predict_video(video)
    assert probabilities.shape == (3, 1, 40, 56)
    with torch.no_grad():
        logits, _ = model(F.interpolate(video.frames[2:].float() / 255, (SIZE, SIZE),
                                        mode="bilinear"),
                          resize_flow(video.flow[2:], (SIZE, SIZE)))
        expected = F.interpolate(torch.sigmoid(logits)[:, None], (40, 56), mode="bilinear")
    assert torch.allclose(probabilities[2:], expected, atol=1e-5)
    with pytest.raises(InputError, match="'clip': amcnet needs optical flow"):
        model.predict_video(make_video(num_frames=3))
