"""What the datamodules hand to a method: training `Clip`s and whole `LoadedVideo`s.

Masks are integer label maps: 0 background, 1..K objects, 255 void. A frame without annotation
(sparse datasets, or the neighbour a sampler adds for flow) has a mask that is void everywhere, so
that a loss that leaves void out leaves it out.
"""

import time
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from vosbench.datamodules.video import VOID_LABEL, Video


@dataclass
class Clip:
    """One training clip, or a batch of clips (then every tensor has a leading batch dimension B
    and `video` is a list of names).

    frames: (T, 3, H, W) float32 RGB in [0, 1]. masks: (T, H, W) uint8 labels.
    indices: (T,) int64 frame indices in the video. flow: (T, 2, H, W) float32 optical flow of
    each frame in pixels (x, y), forward (backward negated for a video's last frame), or None.
    reference_frame (3, H, W) / reference_mask (H, W): the reference frame and its labels, for
    samplers that give one (AGSS-VOS), else None.
    """

    video: str | list[str]
    indices: torch.Tensor
    frames: torch.Tensor
    masks: torch.Tensor
    flow: torch.Tensor | None = None
    reference_frame: torch.Tensor | None = None
    reference_mask: torch.Tensor | None = None

    def foreground(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The binarized union of the objects, as zero-shot methods are trained on: (target,
        valid), both shaped like `masks`; target float32 1 on any object, valid False on void."""
        valid = self.masks != VOID_LABEL
        return ((self.masks != 0) & valid).float(), valid


def collate_clips(clips: list[Clip]) -> Clip:
    """Stack clips into one batch Clip; every clip must have the same frame count and size."""
    shapes = {tuple(clip.frames.shape) for clip in clips}
    if len(shapes) > 1:
        names = ", ".join(f"{clip.video}: {tuple(clip.frames.shape)}" for clip in clips)
        raise ValueError(f"clips of different shapes cannot form a batch ({names}); give the "
                         f"datamodule a transform with a fixed `size`")
    batch = {}
    for field in fields(Clip):
        values = [getattr(clip, field.name) for clip in clips]
        if field.name == "video":
            batch["video"] = values
        elif any(value is None for value in values):
            batch[field.name] = None
        else:
            batch[field.name] = torch.stack(values)
    return Clip(**batch)


@dataclass
class LoadedVideo:
    """A whole video decoded for validation, testing or prediction.

    video: the `Video` it comes from (name, frame names, original size, annotated frames, …).
    frames: (T, 3, H, W) uint8 RGB at the original size. masks: (T, H, W) uint8 labels as the
    annotation files hold them (255 everywhere in frames without one). flow: (T, 2, H, W)
    float32 motion of each frame in pixels, or None. flow_seconds: the time its flow took to
    compute or read, for frame rates with flow.
    """

    video: Video
    frames: torch.Tensor
    masks: torch.Tensor
    flow: torch.Tensor | None = None
    flow_seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.video.name

    def to(self, device: torch.device | str, **kwargs) -> "LoadedVideo":
        """A copy with the tensors on `device`. Lightning moves batches with this method (the
        frozen `video` cannot go through its generic dataclass copy)."""
        return replace(self, frames=self.frames.to(device, **kwargs),
                       masks=self.masks.to(device, **kwargs),
                       flow=None if self.flow is None else self.flow.to(device, **kwargs))

    def __len__(self) -> int:
        return len(self.video)


def read_masks(video: Video, indices: list[int] | tuple[int, ...]) -> np.ndarray:
    """(len(indices), H, W) uint8 labels of the given frames; void everywhere in frames without
    annotation."""
    masks = np.full((len(indices), *video.size), VOID_LABEL, np.uint8)
    for row, index in enumerate(indices):
        if video.mask_files[index] is not None:
            masks[row] = video.mask(index)
    return masks


def load_video(video: Video, flow=None) -> LoadedVideo:
    """Decode every frame and annotation of `video` (and its motion from the FlowProvider
    `flow`, when one is given)."""
    indices = range(len(video))
    frames = np.stack([video.frame(i) for i in indices])
    motion, seconds = None, 0.0
    if flow is not None:
        start = time.perf_counter()
        motion = torch.from_numpy(np.stack([flow.motion(video, i) for i in indices])
                                  .transpose(0, 3, 1, 2).copy())
        seconds = time.perf_counter() - start
    return LoadedVideo(video, torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),
                       torch.from_numpy(read_masks(video, indices)), motion, seconds)
