"""Every shipped method preset composes with the trainer and data configs into its method."""

from pathlib import Path

import pytest
import torch

from vosbench.lightning_cli import VOSCLI
from vosbench.methods.agssvos import AGSSVOS
from vosbench.methods.stgnet import STGNet
from vosbench.postprocess import RECIPES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("preset", sorted((CONFIGS / "methods").glob("*/*.yaml")),
                         ids=lambda path: f"{path.parent.name}-{path.stem}")
@pytest.mark.parametrize("trainer", ["cpu", "cpu_ddp"])
def test_method_presets_build(preset, trainer, tmp_path):
    cli = VOSCLI(["--config", str(CONFIGS / "trainer" / f"{trainer}.yaml"),
                  "--config", str(CONFIGS / "data" / "synthetic.yaml"), "--config", str(preset),
                  "--data.init_args.root", str(tmp_path / "data"), "--wandb_mode", "disabled",
                  "--trainer.default_root_dir", str(tmp_path / "run")], run=False)
    assert cli.model.name == preset.parent.name
    assert cli.datamodule.dataset == "synthetic" and cli.trainer.world_size == (
        2 if trainer == "cpu_ddp" else 1)
    if preset.stem == "paper" and cli.model.trainable:
        assert cli.datamodule.transform.size is not None


def paper_preset(method: str, tmp_path) -> VOSCLI:
    """The CLI of `method`'s paper preset on the synthetic data and the CPU trainer, not run."""
    return VOSCLI(["--config", str(CONFIGS / "trainer" / "cpu.yaml"),
                   "--config", str(CONFIGS / "data" / "synthetic.yaml"),
                   "--config", str(CONFIGS / "methods" / method / "paper.yaml"),
                   "--data.init_args.root", str(tmp_path / "data"), "--wandb_mode", "disabled",
                   "--trainer.default_root_dir", str(tmp_path / "run")], run=False)


def test_agnn_paper_preset_holds_the_papers_settings(tmp_path):
    """configs/methods/agnn/paper.yaml against the sentences of the paper (papers/agnn-iccv2019
    §3.3, §4.1.1) and METHODS.md §1 that give each value."""
    cli = paper_preset("agnn", tmp_path)
    model, data = cli.model.hparams, cli.datamodule
    # "the first five convolution blocks of DeepLabV3" (ResNet-101, output stride 8):
    # "473×473 … h0 ∈ R^{60×60×256}"
    assert (model.backbone, model.output_stride, model.channels) == ("resnet101", 8, 256)
    assert tuple(model.input_size) == (473, 473) and tuple(data.transform.size) == (473, 473)
    # "we set the total number of iterations as K = 3"; "In practice, we set N′ = 5 during
    # testing"; Eq. 8's channel-wise gates; Eq. 12's weighted BCE
    assert (model.num_iterations, model.num_nodes_test) == (3, 5)
    assert (model.gate, model.graph, model.loss) == ("channel", True, "balanced")
    # "we randomly select 2 videos … and sample 3 frames (N′ = 3) per video": one frame from
    # each of N′ segments
    assert type(data.sampler).__name__ == "SegmentSampler" and data.sampler.num_segments == 3
    assert data.batch_size == 2
    # "'static-image' and 'dynamic-video' iterations are executed alternately", 6 static images
    assert model.static_every == 2 and data.static_batch_size == 6
    # METHODS.md: SGD, momentum 0.9, weight decay 5e-4, lr 2.5e-4 with poly 0.9, graph at 10×
    assert (model.optimizer, model.momentum, model.weight_decay) == ("sgd", 0.9, 5e-4)
    assert (model.lr, model.poly_power, model.graph_lr_multiplier) == (2.5e-4, 0.9, 10.0)
    # "we apply CRF as a post-processing step" (the recipe of METHODS.md §1)
    assert cli.model.crf == RECIPES["agnn"]


def test_agssvos_paper_preset_holds_the_papers_settings(tmp_path):
    """configs/methods/agssvos/paper.yaml against papers/agssvos-iccv2019 §4.1 and METHODS.md §3."""
    cli = paper_preset("agssvos", tmp_path)
    model, data = cli.model.hparams, cli.datamodule
    # RGMP's ResNet-50 Siamese encoder, 256-channel decoder; METHODS.md: DAVIS at 832×448
    assert (model.backbone, model.channels, model.kernel_size) == ("resnet50", 256, 7)
    assert tuple(model.input_size) == (448, 832) and tuple(data.transform.size) == (448, 832)
    assert (model.instance_agnostic, model.instance_specific, model.normalise, model.warp) == (
        True, True, True, True)
    # "the length of the sampled sequence is 8"; "flipping each frame horizontally; reversing
    # the sampled sequence"; "a tolerance threshold"
    assert type(data.sampler).__name__ == "ConsecutiveSampler" and data.sampler.length == 8
    assert data.sampler.reverse_probability == 0.5 and data.transform.flip_probability == 0.5
    assert model.tolerance == 0.5
    # "Adam optimizer and poly learning policy with the initial learning rate 1e-5 for 10-epoch
    # training"; METHODS.md: weight decay 4e-5, attention and last layers at 10×, frozen BN
    assert (model.optimizer, model.lr, model.weight_decay, model.poly_power) == (
        "adam", 1e-5, 4e-5, 0.9)
    assert model.head_lr_multiplier == 10 and model.freeze_encoder_bn
    assert cli.trainer.max_epochs == 10 and cli.model.crf is None
    # AGSSVOS() is the same model: its defaults are the values above (momentum, unused by Adam,
    # SGD's usual 0.9; no weights file; Eq. 7 alone)
    with torch.device("meta"):
        defaults = AGSSVOS().hparams
    assert dict(defaults) == dict(
        backbone="resnet50", weights=None, channels=256, kernel_size=7, instance_agnostic=True,
        instance_specific=True, normalise=True, warp=True, input_size=(448, 832), tolerance=0.5,
        cross_entropy=0.0, lr=1e-5, weight_decay=4e-5, poly_power=0.9, head_lr_multiplier=10,
        optimizer="adam", momentum=0.9, freeze_encoder_bn=True,
        # the official variant's switches at the paper's values (methods/agssvos.py docstring)
        shared_encoder=False, mask_conv_bias=False, mask_downsampling="area",
        warp_normalisation="corners", flow_source="provider", flow_weights=None,
        halve_large_frames=False, resampling="bilinear", normalisation_scope="all",
        label_background="normalised", overwrite_earlier_objects=True, drop_lost_objects=False)


def test_stgnet_paper_preset_holds_the_papers_settings(tmp_path):
    """configs/methods/stgnet/paper.yaml against papers/stgnet-aaai2021 ("Implementation
    Details") and METHODS.md §4."""
    cli = paper_preset("stgnet", tmp_path)
    model, proposals = cli.model.hparams, cli.model.proposals
    # "we set detection confidence as 0.05 and non-maxminum suppression as 0.6"; "a margin ratio
    # 0.15. Then we resize the cropped data into 512 × 512"; DeepLabv3+ with ResNet101
    assert (proposals.method, proposals.label) == ("maskrcnn", "Mask R-CNN proposals")
    settings = proposals.detector_settings
    assert (settings["score_threshold"], settings["nms_threshold"]) == (0.05, 0.6)
    assert proposals.segmenter_settings == dict(arch="deeplabv3_resnet101", weights=None,
                                                crop_size=512, margin=0.15)
    # "We adopt n = 10"; "α and β … 0.7 and 0.3 for DAVIS"; "λ1 and λ2 … 0.4 and 0.6"; "γ … 100";
    # "thr is set to 0.2"; Table 4: l = 2; ResNet101 features, "stage-4 feature map of a
    # ResNet50" (layer3)
    assert (model.history, model.alpha, model.box_weight, model.distance_weight) == (
        10, 0.7, 0.4, 100.0)
    assert model.iterations == 2 and cli.model.threshold == 0.2
    assert (model.feature_backbone, model.key_backbone, model.key_stage) == (
        "resnet101", "resnet50", 3)
    # "Adam optimizer with learning rate 0.1 which reduces by power of 0.9 for every 10 epochs"
    assert (model.optimizer, model.lr, model.lr_decay, model.lr_decay_epochs) == (
        "adam", 0.1, 0.9, 10)
    assert (model.motion_model, model.spatial_graph, model.temporal_graph, model.warp) == (
        True, True, True, True)
    assert model.memory_size is None  # every previous frame, frame 0 included
    # STGNet()'s defaults are the values above; the paper gives no H1×W1, and the preset takes
    # 64×64 where the default is 256×256 (Eq. 7's affinities grow as (H1·W1)²)
    with torch.device("meta"):
        defaults = STGNet()
    assert dict(defaults.hparams) == dict(
        feature_backbone="resnet101", feature_weights=None, feature_size=(224, 224),
        key_backbone="resnet50", key_weights=None, key_stage=3, key_channels=128,
        key_size=(256, 256), history=10, motion_model=True, spatial_graph=True, alpha=0.7,
        iterations=2, box_weight=0.4, temporal_graph=True, memory_size=None, warp=True,
        distance_weight=100.0, lr=0.1, optimizer="adam", momentum=0.9, weight_decay=0.0,
        lr_decay=0.9, lr_decay_epochs=10, threshold=0.2)
    assert defaults.threshold == 0.2 and defaults.proposals.label == "oracle proposals"
