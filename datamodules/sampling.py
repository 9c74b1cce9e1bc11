"""Clip samplers: which frames of a training video form one training clip.

A sampler draws frame indices from a `Video` with a NumPy generator, so that the datamodule's seed
fixes the clips. Frames that carry the training signal are drawn among the annotated frames;
sparse datasets (YouTube-VOS, YouTube-Objects, FBMS) annotate only some.

- `SegmentSampler`: AGNN. The annotated frames are split into N′ segments of (nearly) equal length
  and one random frame is drawn from each, so a clip spans the whole video.
- `ConsecutiveSampler`: AGSS-VOS. L consecutive annotated frames after a reference frame (the
  first annotated frame, whose masks a semi-supervised method is given); optionally reversed in
  time, the reference then being the last annotated frame.
- `NeighbourSampler`: AMC-Net. One annotated frame and the frame after it (before it for the last
  frame), whose pair gives the frame's optical flow; the neighbour need not be annotated.
"""

from dataclasses import dataclass

import numpy as np

from vosbench.datamodules.video import Video
from vosbench.errors import InputError


@dataclass(frozen=True)
class ClipIndices:
    """The frames of one clip: `frames` in the order the method sees them, and `reference`, the
    index of a reference frame given with its masks (None when the sampler has none)."""

    frames: tuple[int, ...]
    reference: int | None = None


class ClipSampler:
    """Base class: `sample(video, rng)` returns the ClipIndices of one training clip."""

    def sample(self, video: Video, rng: np.random.Generator) -> ClipIndices:
        raise NotImplementedError

    @staticmethod
    def annotated_frames(video: Video) -> tuple[int, ...]:
        """The annotated frame indices; a training video without any is an error."""
        if not video.annotated:
            raise InputError(f"video {video.name!r} ({video.dataset} {video.split}): no annotated "
                             f"frame, so no training clip can be drawn from it")
        return video.annotated


class SegmentSampler(ClipSampler):
    """N′ segments of the annotated frames, one random frame from each (AGNN, §3.4 of the paper).

    A video with fewer annotated frames than N′ gives N′ frames drawn with replacement, in order.
    """

    def __init__(self, num_segments: int = 3):
        if num_segments < 1:
            raise ValueError(f"num_segments must be at least 1, got {num_segments}")
        self.num_segments = num_segments

    def sample(self, video: Video, rng: np.random.Generator) -> ClipIndices:
        annotated = self.annotated_frames(video)
        if len(annotated) < self.num_segments:
            picks = np.sort(rng.integers(0, len(annotated), self.num_segments))
        else:
            bounds = np.linspace(0, len(annotated), self.num_segments + 1).round().astype(int)
            picks = [rng.integers(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
        return ClipIndices(tuple(annotated[i] for i in picks))


class ConsecutiveSampler(ClipSampler):
    """L consecutive annotated frames plus the reference frame (AGSS-VOS).

    The reference is the first annotated frame and the clip starts at a random annotated frame
    after it; with probability `reverse_probability` the video is read backwards (the reference is
    then the last annotated frame). With `max_stride` s > 1 each clip takes every r-th annotated
    frame, r drawn in 1 … s: larger motion between a clip's frames, as between YouTube-VOS's
    annotated frames (5 frames apart), on densely annotated videos. A video with fewer than
    L + 1 annotated frames (at that stride) repeats its last frame, so that every clip has L
    frames.
    """

    def __init__(self, length: int = 8, reverse_probability: float = 0.0, max_stride: int = 1):
        if length < 1 or max_stride < 1:
            raise ValueError(f"length and max_stride must be at least 1, got {length} and "
                             f"{max_stride}")
        if not 0 <= reverse_probability <= 1:
            raise ValueError(f"reverse_probability must lie in [0, 1], got {reverse_probability}")
        self.length = length
        self.reverse_probability = reverse_probability
        self.max_stride = max_stride

    def sample(self, video: Video, rng: np.random.Generator) -> ClipIndices:
        annotated = list(self.annotated_frames(video))
        if rng.random() < self.reverse_probability:
            annotated.reverse()
        stride = int(rng.integers(1, self.max_stride + 1)) if self.max_stride > 1 else 1
        reference, rest = annotated[0], annotated[1::stride] or annotated[:1]
        start = rng.integers(0, max(len(rest) - self.length, 0) + 1)
        frames = rest[start:start + self.length]
        frames += frames[-1:] * (self.length - len(frames))
        return ClipIndices(tuple(frames), reference)


class NeighbourSampler(ClipSampler):
    """A random annotated frame t and its neighbour t + 1 (t − 1 for the last frame): the pair
    from which the frame's optical flow is computed (AMC-Net). A one-frame video repeats it."""

    def sample(self, video: Video, rng: np.random.Generator) -> ClipIndices:
        annotated = self.annotated_frames(video)
        frame = annotated[rng.integers(0, len(annotated))]
        neighbour = frame + 1 if frame + 1 < len(video) else max(frame - 1, 0)
        return ClipIndices((frame, neighbour))
