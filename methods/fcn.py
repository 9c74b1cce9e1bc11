"""`fcn`: a per-frame segmentation baseline — AGNN's node embedding (DeepLabV3 on a ResNet) with a
1×1 readout, no graph: the "w/o AGNN" row of the AGNN paper (Table 6, J 72.2 on DAVIS16)."""

import torch
from torch import nn

from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.methods.backbones import DeepLabV3, normalize_images, resize
from vosbench.methods.base import VOSMethod
from vosbench.methods.losses import FOREGROUND_LOSSES
from vosbench.methods.optimizers import check_optimizer, embedding_and_rest, make_optimizer


class FCN(VOSMethod):
    """Zero-shot per-frame segmentation.

    Args:
        backbone, output_stride, channels, weights: the DeepLabV3 embedding (ResNet-101, stride 8,
            256 channels in the paper preset; `weights` a local ImageNet state_dict file).
        input_size: (H, W) the frames are resized to, in training clips and at inference.
        loss: "balanced" (AGNN's class-balanced BCE, Eq. 12) or "bce" (plain, calibrated).
        lr, momentum, weight_decay, poly_power: the learning rate, SGD momentum, weight decay
            and the power of the per-step poly decay.
        optimizer: "sgd" (AGNN's paper) or "adamw" (momentum unused), both with the poly decay.
        head_lr_multiplier: the head's learning rate relative to `lr`.
        frames_per_batch: frames per forward pass at inference.
        kwargs: VOSMethod's arguments (crf, threshold, protocol, …).
    """

    name = "fcn"
    inference_only = ("frames_per_batch",)

    def __init__(self, backbone: str = "resnet101", output_stride: int = 8, channels: int = 256,
                 weights: str | None = None, input_size: tuple[int, int] = (473, 473),
                 loss: str = "balanced", lr: float = 2.5e-4, momentum: float = 0.9,
                 weight_decay: float = 5e-4, poly_power: float = 0.9, optimizer: str = "sgd",
                 head_lr_multiplier: float = 10.0, frames_per_batch: int = 8, **kwargs):
        super().__init__(**kwargs)
        if loss not in FOREGROUND_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(FOREGROUND_LOSSES)}")
        check_optimizer(optimizer)
        self.save_hyperparameters()
        self.loss_function = FOREGROUND_LOSSES[loss]
        self.embedding = DeepLabV3(backbone, output_stride, channels, weights)
        self.readout = nn.Conv2d(channels, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images in [0, 1] → (N, H, W) foreground logits at the input size."""
        logits = self.readout(self.embedding(normalize_images(images)))
        return resize(logits, images.shape[-2:])[:, 0]

    def training_step(self, clip: Clip, batch_index: int) -> torch.Tensor:
        target, valid = clip.foreground()
        logits = self(clip.frames.flatten(0, 1))
        loss = self.loss_function(logits, target.flatten(0, 1), valid.flatten(0, 1))
        self.log("train/loss", loss, prog_bar=True)  # per step: no batch size needed
        return loss

    @torch.inference_mode()
    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        size = tuple(video.video.size)
        probabilities = []
        for chunk in video.frames.split(self.hparams.frames_per_batch):
            images = resize(chunk.float().div(255), tuple(self.hparams.input_size))
            logits = resize(self(images)[:, None], size)
            probabilities.append(torch.sigmoid(logits))
        return torch.cat(probabilities)

    def configure_optimizers(self):
        hp = self.hparams
        groups = embedding_and_rest(self, self.embedding, hp.lr, hp.head_lr_multiplier)
        optimizer = make_optimizer(hp.optimizer, groups, hp.momentum, hp.weight_decay)
        return self.poly_schedule(optimizer, hp.poly_power)
