"""Joint augmentation of a clip's frames, masks and optical flow.

Every frame of a clip (the reference frame included) goes through the same transform, so that the
objects move between frames as they did in the video. The geometry — resizing to the output size,
random scale, rotation, a crop placed around the objects, horizontal flip — is one affine map
applied with OpenCV: frames bilinear, masks nearest (labels are never blended), flow bilinear.
A flow vector is a displacement, so it is multiplied by the map's linear part: a flip negates its
x component, a rotation turns it, a scale stretches it. Colour jitter (brightness, contrast,
saturation, hue) follows on the frames only.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.transforms.v2 import functional as tvf

VOID_LABEL = 255


@dataclass(frozen=True)
class Geometry:
    """The drawn geometric parameters: scale factor, rotation in degrees (counter-clockwise),
    horizontal flip, and the source point (x, y) in pixels that lands at the output centre."""

    scale: float
    rotation: float
    flip: bool
    centre: tuple[float, float]


class ClipTransform:
    """Resize a clip to `size` and augment it; with the defaults, only resize.

    Args:
        size: output (H, W) in pixels; None keeps the original size (no resize).
        flip_probability: chance of a horizontal flip.
        max_rotation: rotations are drawn uniformly in ±max_rotation degrees.
        scale_range: zoom factors drawn uniformly in [low, high]; above 1 zooms in (a crop),
            below 1 zooms out (borders padded: frames black, masks void 255, flow zero).
        crop_around_objects: a zoomed-in view is centred on a random point of the objects'
            bounding box (over all frames of the clip) rather than anywhere in the frame.
        brightness, contrast, saturation: factors drawn in [1 − v, 1 + v]; hue: a shift drawn in
            [−v, v] of the hue circle (v ≤ 0.5). Zero turns each off.
    """

    def __init__(self, size: tuple[int, int] | None = None, flip_probability: float = 0.0,
                 max_rotation: float = 0.0, scale_range: tuple[float, float] = (1.0, 1.0),
                 crop_around_objects: bool = False, brightness: float = 0.0,
                 contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0):
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (H, W) with positive entries, got {size}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, "
                             f"got {scale_range}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], got {hue}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.flip_probability = flip_probability
        self.max_rotation = max_rotation
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.crop_around_objects = crop_around_objects
        self.brightness, self.contrast, self.saturation, self.hue = (brightness, contrast,
                                                                     saturation, hue)

    def __call__(self, frames: np.ndarray, masks: np.ndarray, flow: np.ndarray | None,
                 rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Transform one clip.

        Args:
            frames: (T, H, W, 3) uint8 RGB. masks: (T, H, W) uint8 labels (0, 1..K, 255 void).
            flow: (T, H, W, 2) float32 displacements in pixels (x, y), or None.
            rng: the generator all random choices come from.

        Returns:
            frames (T, 3, h, w) float32 in [0, 1], masks (T, h, w) uint8, flow (T, 2, h, w)
            float32 in output pixels or None; (h, w) = `size`.
        """
        height, width = frames.shape[1:3]
        out_height, out_width = self.size or (height, width)
        geometry = self.draw_geometry(masks, rng)
        matrix = affine_matrix(geometry, (height, width), (out_height, out_width))
        frames = np.stack([warp(frame, matrix, (out_height, out_width), cv2.INTER_LINEAR, 0)
                           for frame in frames])
        masks = np.stack([warp(mask, matrix, (out_height, out_width), cv2.INTER_NEAREST,
                               VOID_LABEL) for mask in masks])
        if flow is not None:
            flow = np.stack([warp(f, matrix, (out_height, out_width), cv2.INTER_LINEAR, 0)
                             for f in flow])
            flow = flow @ matrix[:, :2].T.astype(np.float32)  # displacements: linear part only
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255)
        images = self.jitter_colour(images, rng)
        flow_tensor = None if flow is None else torch.from_numpy(
            np.ascontiguousarray(flow.transpose(0, 3, 1, 2)))
        return images, torch.from_numpy(masks), flow_tensor

    def draw_geometry(self, masks: np.ndarray, rng: np.random.Generator) -> Geometry:
        """Scale, rotation, flip and view centre for a clip whose masks are (T, H, W) labels."""
        height, width = masks.shape[1:]
        scale = rng.uniform(*self.scale_range)
        rotation = rng.uniform(-self.max_rotation, self.max_rotation)
        flip = bool(rng.random() < self.flip_probability)
        centre = ((width - 1) / 2, (height - 1) / 2)
        if scale > 1:  # a zoomed-in view: choose where, keeping it inside the frame
            half_w, half_h = width / (2 * scale), height / (2 * scale)
            box = objects_box(masks) if self.crop_around_objects else None
            x0, y0, x1, y1 = box if box is not None else (0, 0, width - 1, height - 1)
            centre = (float(np.clip(rng.uniform(x0, x1), half_w - 0.5, width - half_w - 0.5)),
                      float(np.clip(rng.uniform(y0, y1), half_h - 0.5, height - half_h - 0.5)))
        return Geometry(scale, rotation, flip, centre)

    def jitter_colour(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """(T, 3, H, W) float images in [0, 1], each adjustment drawn once for the whole clip."""
        for amount, adjust in ((self.brightness, tvf.adjust_brightness),
                               (self.contrast, tvf.adjust_contrast),
                               (self.saturation, tvf.adjust_saturation)):
            if amount > 0:
                images = adjust(images, float(rng.uniform(max(0.0, 1 - amount), 1 + amount)))
        if self.hue > 0:
            images = tvf.adjust_hue(images, float(rng.uniform(-self.hue, self.hue)))
        return images


def objects_box(masks: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel bounds of every object pixel (labels 1..254) of (T, H, W) masks;
    None when there is none."""
    objects = ((masks != 0) & (masks != VOID_LABEL)).any(axis=0)
    rows, cols = np.flatnonzero(objects.any(axis=1)), np.flatnonzero(objects.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def affine_matrix(geometry: Geometry, size: tuple[int, int], out_size: tuple[int, int]
                  ) -> np.ndarray:
    """(2, 3) float64 map from source pixel (x, y) to output pixel: resize to out_size, zoom by
    `scale` about `centre`, rotate, flip, with `centre` landing at the output centre. Pixel
    centres are at integer coordinates (OpenCV's convention)."""
    (height, width), (out_height, out_width) = size, out_size
    zoom_x, zoom_y = geometry.scale * out_width / width, geometry.scale * out_height / height
    angle = math.radians(geometry.rotation)
    rotate = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    linear = rotate @ np.diag([zoom_x, zoom_y])
    if geometry.flip:
        linear = np.diag([-1.0, 1.0]) @ linear
    out_centre = np.array([(out_width - 1) / 2, (out_height - 1) / 2])
    offset = out_centre - linear @ np.asarray(geometry.centre)
    return np.hstack([linear, offset[:, None]])


def warp(image: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int], interpolation: int,
         fill: float) -> np.ndarray:
    """One (H, W) or (H, W, C) image through the (2, 3) affine map, out_size (h, w), the area
    outside the source filled with `fill`."""
    return cv2.warpAffine(image, matrix, (out_size[1], out_size[0]), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
