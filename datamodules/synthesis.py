"""The synthetic default dataset: seeded procedural videos written in the DAVIS 2017 layout.

Every video shows a textured background seen by a panning and zooming camera, 1–3 annotated
objects (smooth star-shaped outlines that move, deform, rotate, change scale, occlude one another
and partly leave the frame) and 1–3 unannotated distractors: shapes fixed in the scene, in the
background's colours with a texture of their own (clutter such as stones or leaves). As in
DAVIS, the annotated objects are the salient ones — their colours lie away from the background's
on the hue circle — and the moving ones, so that appearance and motion both tell them from the
distractors, while a model that segments every textured shape is penalised. Illumination drifts,
sensor noise is added and frames are JPEG-compressed.

Format 1 drew each distractor in the style of an object (a twin with fresh noise): only motion
could tell them apart, which capped a perfect appearance-only segmenter at J 0.63 on the val
split and left zero-shot methods without motion input nothing to learn in minutes.

The "camouflage" variant brings that test back on purpose: the same videos (layout, motion,
camera, textures' patterns, lighting, noise, encoding), but the objects take clutter colours as
the distractors do, so that only motion tells them apart.

Each sequence draws from its own generator seeded by (seed, split, index), so the files are
byte-identical for a seed however many worker processes generate them.
"""

import colorsys
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from vosbench.io import write_label_png

# Bump when the generator's output changes: cached copies of the set are keyed by it.
FORMAT_VERSION = 2
VARIANTS = ("default", "camouflage")
HEIGHT, WIDTH = 240, 432
VOID = 255
SPLIT_CODES = {"train": 0, "val": 1}
DB_SETS = {"train": "training", "val": "test"}  # the names DAVIS 2016's db_info.yml uses
DB_ATTRIBUTES = ["AC", "BC", "CS", "DB", "DEF", "EA", "FM", "HO", "IO", "LR", "MB", "OCC", "OV",
                 "ROT", "SC", "SV"]
OUTLINE_VERTICES = 96
HARMONICS = np.arange(2, 6)  # outline harmonics k = 2..5 (k = 1 would only shift the shape)
MAX_ZOOM = 1.3  # the background canvas holds MAX_ZOOM pixels per frame pixel, so it is never
#                 magnified (a blurry background next to sharp objects would be a give-away)
CANVAS_MARGIN = 1.45  # canvas extent in frame units: room for the camera to pan
POLY_SHIFT = 4  # fractional bits of polygon vertices passed to OpenCV (1/16 pixel precision)


@dataclass(frozen=True)
class TextureStyle:
    """Parameters of a texture family; two textures of one style share their statistics.

    colours: (3, 3) float RGB in 0..255; feature_size: size in pixels of the coarsest noise
    features; stripe_period in pixels, stripe_angle in radians, strengths in 0..1; grain: the
    amplitude in grey levels of 4-pixel noise.
    """

    colours: np.ndarray
    feature_size: float
    octaves: int
    stripe_strength: float
    stripe_period: float
    stripe_angle: float
    blob_strength: float
    grain: float


@dataclass
class Shape:
    """A textured star-shaped layer: its texture patch and its pose in every frame.

    texture: (P, P, 3) float32 patch in the shape's own frame, where one patch pixel spans one
    frame pixel at radius == base_radius. Per frame (arrays of length T): centre_x, centre_y and
    radius in frame pixels, angle in radians; amplitudes and phases are (T, len(HARMONICS)).
    """

    texture: np.ndarray
    base_radius: float
    centre_x: np.ndarray
    centre_y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    amplitudes: np.ndarray
    phases: np.ndarray

    def outline(self, t: int) -> np.ndarray:
        """(OUTLINE_VERTICES, 2) float64 outline vertices (x, y) in frame pixels at frame t."""
        theta = np.linspace(0.0, 2 * np.pi, OUTLINE_VERTICES, endpoint=False)
        wobble = self.amplitudes[t] @ np.cos(np.outer(HARMONICS, theta) + self.phases[t][:, None])
        r = self.radius[t] * (1.0 + wobble)
        return np.stack([self.centre_x[t] + r * np.cos(theta + self.angle[t]),
                         self.centre_y[t] + r * np.sin(theta + self.angle[t])], axis=1)


@dataclass
class SyntheticVideo:
    """One rendered sequence before encoding.

    frames: (T, H, W, 3) uint8 RGB; labels: (T, H, W) uint8 (0 background, 1..K objects, 255
    void); distractor_visible: (T, H, W) bool, distractor pixels not hidden by an object;
    attributes: DAVIS attribute codes, sorted; jpeg_quality: the JPEG quality to encode with.
    """

    frames: np.ndarray
    labels: np.ndarray
    distractor_visible: np.ndarray
    num_objects: int
    attributes: list[str]
    jpeg_quality: int


def sequence_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one sequence, a function of (seed, split, index) only."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Ease-in/ease-out ramp from 0 to 1 over x in [0, 1] (zero slope at both ends)."""
    return x * x * (3.0 - 2.0 * x)


def wobble(rng: np.random.Generator, progress: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random signal over progress in [0, 1]: two sinusoids of 0.5–2 cycles per video,
    of peak `amplitude` in total, shifted to start at 0 (frame 0 keeps its planned pose)."""
    cycles = rng.uniform(0.5, 2.0, size=2)
    phases = rng.uniform(0, 2 * np.pi, size=2)
    weights = rng.dirichlet([1.0, 1.0]) * amplitude
    signal = sum(w * np.sin(2 * np.pi * c * progress + p)
                 for w, c, p in zip(weights, cycles, phases))
    return signal - signal[0]


def fractal_noise(rng: np.random.Generator, height: int, width: int, cells: int,
                  octaves: int) -> np.ndarray:
    """(height, width) float32 multi-octave value noise, zero mean, unit standard deviation.

    Octave o interpolates a random grid of cells * 2**o cells along the long side, weighted 2**-o.
    """
    total = np.zeros((height, width), np.float32)
    for octave in range(octaves):
        long_cells = cells * 2 ** octave
        grid_h = max(2, round(long_cells * height / max(height, width)) + 1)
        grid_w = max(2, round(long_cells * width / max(height, width)) + 1)
        grid = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
        total += 0.5 ** octave * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return (total - total.mean()) / (total.std() + 1e-6)


def hsv_colours(rng: np.random.Generator, count: int, hue: float, hue_spread: float,
                saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """(count, 3) float RGB colours in 0..255 around `hue` (hues and ranges in 0..1)."""
    colours = []
    for _ in range(count):
        h = (hue + rng.uniform(-hue_spread, hue_spread)) % 1.0
        rgb = colorsys.hsv_to_rgb(h, rng.uniform(*saturation), rng.uniform(*value))
        colours.append([255.0 * c for c in rgb])
    return np.array(colours)


def random_style(rng: np.random.Generator, hue: float, hue_spread: float) -> TextureStyle:
    """A texture style with colours around `hue`; the other parameters are drawn freely."""
    return TextureStyle(
        colours=hsv_colours(rng, 3, hue, hue_spread, (0.15, 0.7), (0.25, 0.9)),
        feature_size=float(rng.uniform(12.0, 45.0)),
        octaves=int(rng.integers(3, 6)),
        stripe_strength=float(rng.uniform(0.0, 0.35) * (rng.random() < 0.5)),
        stripe_period=float(rng.uniform(5.0, 18.0)),
        stripe_angle=float(rng.uniform(0, np.pi)),
        blob_strength=float(rng.uniform(0.0, 0.8)),
        grain=float(rng.uniform(4.0, 14.0)),
    )


def clutter_colours(rng: np.random.Generator, background: TextureStyle) -> np.ndarray:
    """(3, 3) float RGB colours in 0..255 of clutter: the background's, each 15 % darker to
    15 % brighter."""
    return background.colours * rng.uniform(0.85, 1.15, size=(3, 1))


def clutter_style(rng: np.random.Generator, background: TextureStyle) -> TextureStyle:
    """A distractor's style: clutter colours with a texture of its own (feature size, stripes,
    blobs, grain drawn afresh)."""
    fresh = random_style(rng, 0.0, 0.0)
    return replace(fresh, colours=clutter_colours(rng, background))


def render_texture(rng: np.random.Generator, style: TextureStyle, height: int,
                   width: int) -> np.ndarray:
    """(height, width, 3) float32 RGB texture in 0..255 of the given style.

    Coarse noise mixes the first two colours, thresholded noise adds blobs of the third, stripes
    (bent by noise) and fine grain modulate the brightness.
    """
    colours = style.colours.astype(np.float32)
    cells = max(1, round(max(height, width) / style.feature_size))
    mix = 1.0 / (1.0 + np.exp(-1.5 * fractal_noise(rng, height, width, cells, style.octaves)))
    texture = colours[0] * (1 - mix[..., None]) + colours[1] * mix[..., None]
    blobs = fractal_noise(rng, height, width, cells * 2, 2)
    blob_alpha = style.blob_strength * np.clip(blobs - 0.8, 0.0, 0.5)[..., None] * 2.0
    texture = texture * (1 - blob_alpha) + colours[2] * blob_alpha
    if style.stripe_strength > 0:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        along = x * np.cos(style.stripe_angle) + y * np.sin(style.stripe_angle)
        bend = 3.0 * fractal_noise(rng, height, width, cells, 2)
        stripes = np.sin(2 * np.pi * along / style.stripe_period + bend)
        texture *= (1.0 + style.stripe_strength * stripes)[..., None]
    grain = style.grain * fractal_noise(rng, height, width, max(height, width) // 4, 1)
    return texture + grain[..., None]


def render_background(rng: np.random.Generator, style: TextureStyle, height: int,
                      width: int) -> np.ndarray:
    """(height, width, 3) float32 RGB background canvas: a texture under a colour gradient."""
    texture = render_texture(rng, style, height, width)
    direction = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (x * np.cos(direction) + y * np.sin(direction)) / max(height, width)
    tint = rng.uniform(-40.0, 40.0, size=3).astype(np.float32)
    return texture + (ramp - ramp.mean())[..., None] * tint


def outline_harmonics(rng: np.random.Generator, num_frames: int,
                      deform: bool) -> tuple[np.ndarray, np.ndarray]:
    """(T, len(HARMONICS)) amplitudes and phases of a random star-shaped outline; with `deform`
    they drift smoothly over time. The amplitudes sum to at most 0.5, so the radius stays > 0."""
    progress = np.linspace(0.0, 1.0, num_frames)
    base = rng.uniform(0.0, 0.2, size=len(HARMONICS)) / np.sqrt(HARMONICS - 1)
    phase0 = rng.uniform(0, 2 * np.pi, size=len(HARMONICS))
    amplitudes = np.tile(base, (num_frames, 1))
    phases = np.tile(phase0, (num_frames, 1))
    if deform:
        for k in range(len(HARMONICS)):
            amplitudes[:, k] += wobble(rng, progress, 0.6 * base[k] + 0.03)
            phases[:, k] += wobble(rng, progress, 0.6)
    amplitudes = np.abs(amplitudes)
    total = amplitudes.sum(axis=1, keepdims=True)
    return amplitudes * np.minimum(1.0, 0.5 / np.maximum(total, 1e-9)), phases


@dataclass
class Camera:
    """Per-frame zoom (frame pixels per scene unit) and view centre (scene units), arrays of
    length T. Scene units are frame pixels at zoom 1."""

    zoom: np.ndarray
    centre_x: np.ndarray
    centre_y: np.ndarray

    def to_frame(self, t: int, x: float, y: float) -> tuple[float, float]:
        """Frame pixel coordinates at frame t of the scene point (x, y)."""
        return (self.zoom[t] * (x - self.centre_x[t]) + WIDTH / 2,
                self.zoom[t] * (y - self.centre_y[t]) + HEIGHT / 2)

    def to_scene(self, t: int, x: float, y: float) -> tuple[float, float]:
        """Scene coordinates of the frame pixel (x, y) at frame t."""
        return ((x - WIDTH / 2) / self.zoom[t] + self.centre_x[t],
                (y - HEIGHT / 2) / self.zoom[t] + self.centre_y[t])


def random_camera(rng: np.random.Generator, num_frames: int) -> Camera:
    """A smooth pan and zoom with a slight hand-held sway, always inside the canvas."""
    progress = smoothstep(np.linspace(0.0, 1.0, num_frames))
    zoom_start, zoom_end = rng.uniform(1.0, MAX_ZOOM, size=2)
    zoom = zoom_start + (zoom_end - zoom_start) * progress
    centres = []
    for extent in (HEIGHT, WIDTH):
        # at zoom z the view spans extent / z scene units: keep it inside the canvas
        low, high = extent / (2 * zoom), CANVAS_MARGIN * extent - extent / (2 * zoom)
        start, end = rng.uniform(0.0, 1.0, size=2)
        position = start + (end - start) * progress + wobble(rng, progress, 0.02)
        centres.append(low + (high - low) * np.clip(position, 0.0, 1.0))
    return Camera(zoom=zoom, centre_x=centres[1], centre_y=centres[0])


def render_view(canvas: np.ndarray, camera: Camera, t: int) -> np.ndarray:
    """(H, W, 3) float32 view of the canvas at frame t (MAX_ZOOM canvas px per scene unit)."""
    scale = camera.zoom[t] / MAX_ZOOM
    matrix = np.array([[scale, 0.0, WIDTH / 2 - camera.zoom[t] * camera.centre_x[t]],
                       [0.0, scale, HEIGHT / 2 - camera.zoom[t] * camera.centre_y[t]]])
    return cv2.warpAffine(canvas, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def shape_texture(rng: np.random.Generator, style: TextureStyle, base_radius: float) -> np.ndarray:
    """(P, P, 3) float32 texture patch covering a shape of radius up to 1.6 * base_radius."""
    size = int(np.ceil(3.2 * base_radius)) + 4
    return render_texture(rng, style, size, size)


def moving_object(rng: np.random.Generator, style: TextureStyle, num_frames: int,
                  base_radius: float, start: np.ndarray, end: np.ndarray) -> Shape:
    """An annotated object gliding from `start` to `end` (frame pixels) with wobble, rotating,
    changing scale and deforming."""
    progress = np.linspace(0.0, 1.0, num_frames)
    ramp = smoothstep(progress)
    amplitudes, phases = outline_harmonics(rng, num_frames, deform=True)
    spin = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.5)  # radians over the video
    log_scale = rng.uniform(-0.35, 0.35)
    return Shape(
        texture=shape_texture(rng, style, base_radius),
        base_radius=base_radius,
        centre_x=start[0] + (end[0] - start[0]) * ramp + wobble(rng, progress, 15.0),
        centre_y=start[1] + (end[1] - start[1]) * ramp + wobble(rng, progress, 10.0),
        radius=base_radius * np.exp(log_scale * ramp + wobble(rng, progress, 0.05)),
        angle=rng.uniform(0, 2 * np.pi) + spin * ramp + wobble(rng, progress, 0.2),
        amplitudes=amplitudes,
        phases=phases,
    )


def static_distractor(rng: np.random.Generator, style: TextureStyle, camera: Camera,
                      num_frames: int, base_radius: float) -> Shape:
    """An unannotated rigid shape fixed in the scene: it moves only with the camera. It sits
    where the camera looks at a random frame, so that it is in view for part of the video."""
    seen_at = int(rng.integers(num_frames))
    scene_x, scene_y = camera.to_scene(seen_at, rng.uniform(0.1, 0.9) * WIDTH,
                                       rng.uniform(0.15, 0.85) * HEIGHT)
    scene_radius = base_radius / camera.zoom[seen_at]
    frame_x, frame_y = zip(*(camera.to_frame(t, scene_x, scene_y) for t in range(num_frames)))
    amplitudes, phases = outline_harmonics(rng, num_frames, deform=False)
    return Shape(
        texture=shape_texture(rng, style, base_radius),
        base_radius=base_radius,
        centre_x=np.array(frame_x),
        centre_y=np.array(frame_y),
        radius=scene_radius * camera.zoom,
        angle=np.full(num_frames, rng.uniform(0, 2 * np.pi)),
        amplitudes=amplitudes,
        phases=phases,
    )


def start_points(rng: np.random.Generator, max_radii: list[float]) -> list[np.ndarray]:
    """Frame-0 centres (x, y) in pixels at which the shapes of the given maximal radii lie
    fully inside the frame and do not overlap (so every object is visible in frame 0).

    Retries random placements; the radii are assumed small enough for that to succeed.
    """
    for _ in range(1000):
        points = [np.array([rng.uniform(r, WIDTH - r), rng.uniform(r, HEIGHT - r)])
                  for r in max_radii]
        if all(np.linalg.norm(points[i] - points[j]) > max_radii[i] + max_radii[j]
               for i in range(len(points)) for j in range(i)):
            return points
    raise RuntimeError("cannot place the objects apart in frame 0; radii too large")


def end_point(rng: np.random.Generator, radius: float, exits: bool) -> np.ndarray:
    """A last-frame centre (x, y) in pixels: inside the frame, or, if `exits`, on a frame edge
    so that 30–70 % of the shape lies outside."""
    point = np.array([rng.uniform(radius, WIDTH - radius), rng.uniform(radius, HEIGHT - radius)])
    if exits:
        axis = int(rng.integers(2))
        extent = (WIDTH, HEIGHT)[axis]
        point[axis] = rng.choice([0.0, extent]) + rng.uniform(-0.3, 0.3) * radius
    return point


def polygon_masks(outline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 anti-aliased coverage in 0..1 and (H, W) bool hard mask of a polygon
    given as (N, 2) frame-pixel vertices."""
    vertices = np.round(outline * (1 << POLY_SHIFT)).astype(np.int32)[None]
    coverage = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.fillPoly(coverage, vertices, 255, lineType=cv2.LINE_AA, shift=POLY_SHIFT)
    hard = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.fillPoly(hard, vertices, 1, lineType=cv2.LINE_8, shift=POLY_SHIFT)
    return coverage.astype(np.float32) / 255.0, hard.astype(bool)


def warp_texture(shape: Shape, t: int) -> np.ndarray:
    """(H, W, 3) float32 shape texture placed, rotated and scaled to the shape's pose at t."""
    scale = shape.radius[t] / shape.base_radius
    cos, sin = scale * np.cos(shape.angle[t]), scale * np.sin(shape.angle[t])
    half = (shape.texture.shape[0] - 1) / 2
    matrix = np.array([[cos, -sin, shape.centre_x[t] - (cos - sin) * half],
                       [sin, cos, shape.centre_y[t] - (sin + cos) * half]])
    return cv2.warpAffine(shape.texture, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def paint(frame: np.ndarray, shape: Shape, t: int) -> np.ndarray:
    """Blend the shape over the (H, W, 3) float32 frame in place; return its (H, W) bool mask.

    The shape gets a faint darker rim, as objects in real footage catch less light at the edge."""
    coverage, hard = polygon_masks(shape.outline(t))
    rim = cv2.GaussianBlur(coverage, (0, 0), 2.0)
    texture = warp_texture(shape, t) * (0.92 + 0.08 * rim[..., None])
    frame += coverage[..., None] * (texture - frame)
    return hard


def void_band(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool band about 3 pixels wide around every border between different labels."""
    edges = np.zeros(labels.shape, bool)
    horizontal = labels[:, 1:] != labels[:, :-1]
    vertical = labels[1:] != labels[:-1]
    edges[:, 1:] |= horizontal
    edges[:, :-1] |= horizontal
    edges[1:] |= vertical
    edges[:-1] |= vertical
    return cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def lighting(rng: np.random.Generator, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame illumination: (T, 3) float gains (global drift plus a slight colour cast) and
    (T,) float offsets in grey levels."""
    progress = np.linspace(0.0, 1.0, num_frames)
    gain = 1.0 + rng.uniform(-0.2, 0.2) * progress + wobble(rng, progress, 0.12)
    cast = 1.0 + np.outer(progress, rng.uniform(-0.06, 0.06, size=3))
    offset = rng.uniform(-10.0, 10.0) * progress + wobble(rng, progress, 6.0)
    return gain[:, None] * cast, offset


def check_variant(variant: str) -> None:
    """Raise ValueError unless `variant` is one of VARIANTS."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown synthetic dataset variant {variant!r}; "
                         f"known: {', '.join(VARIANTS)}")


def render_video(seed: int, split: str, index: int, frame_range: tuple[int, int] = (25, 35),
                 variant: str = "default") -> SyntheticVideo:
    """Render sequence `index` of `split` for `seed`, with a frame count in frame_range
    (inclusive), in one of VARIANTS ("camouflage": the objects in clutter colours, like the
    distractors). Deterministic in its arguments."""
    check_variant(variant)
    rng = sequence_rng(seed, split, index)
    num_frames = int(rng.integers(frame_range[0], frame_range[1] + 1))
    num_objects = int(rng.integers(1, 4))
    num_distractors = int(rng.integers(1, 4))

    # Objects are salient: each has its own hue, 0.25–0.5 of the hue circle away from the
    # background's; distractors are clutter of the background's colours (see clutter_style).
    hue = rng.random()
    background_style = random_style(rng, hue, 0.1)
    object_hues = hue + rng.choice([-1.0, 1.0], size=num_objects) * rng.uniform(
        0.25, 0.5, size=num_objects)
    object_styles = [random_style(rng, object_hue, 0.05) for object_hue in object_hues]
    if variant == "camouflage":
        # The objects keep their textures (drawn as the distractors' are) but take clutter
        # colours, as the distractors do. A generator of their own draws those colours, so that
        # every other draw is the default video's.
        colour_rng = np.random.default_rng([seed, SPLIT_CODES[split], index, 1])
        object_styles = [replace(style, colours=clutter_colours(colour_rng, background_style))
                         for style in object_styles]
    canvas = render_background(rng, background_style, round(CANVAS_MARGIN * HEIGHT * MAX_ZOOM),
                               round(CANVAS_MARGIN * WIDTH * MAX_ZOOM))
    camera = random_camera(rng, num_frames)

    # In frame 0 an outline lies within 1.5 * base_radius of its centre (harmonics sum <= 0.5).
    base_radii = list(rng.uniform(22.0, 40.0, size=num_objects))
    starts = start_points(rng, [1.5 * r for r in base_radii])
    exits = rng.random(num_objects) < 0.5
    objects = []
    for k in range(num_objects):
        end = end_point(rng, base_radii[k], bool(exits[k]))
        if k > 0 and rng.random() < 0.6:  # head for another object's start: paths cross
            end = starts[k - 1] + rng.uniform(-20, 20, size=2)
        objects.append(moving_object(rng, object_styles[k], num_frames, base_radii[k],
                                     starts[k], end))
    distractors = [static_distractor(rng, clutter_style(rng, background_style), camera,
                                     num_frames, float(rng.uniform(22.0, 40.0)))
                   for _ in range(num_distractors)]
    depth_order = rng.permutation(num_objects)  # back to front
    gains, offsets = lighting(rng, num_frames)
    noise_sigma = rng.uniform(2.0, 5.0)
    num_void_frames = min(int(rng.integers(2, 6)), num_frames - 1)
    void_frames = set(rng.choice(np.arange(1, num_frames), size=num_void_frames,
                                 replace=False).tolist())

    frames = np.empty((num_frames, HEIGHT, WIDTH, 3), np.uint8)
    labels = np.zeros((num_frames, HEIGHT, WIDTH), np.uint8)
    distractor_visible = np.zeros((num_frames, HEIGHT, WIDTH), bool)
    occluded = out_of_view = False
    for t in range(num_frames):
        frame = render_view(canvas, camera, t)
        for distractor in distractors:  # behind the objects, so frame 0 shows every object
            distractor_visible[t] |= paint(frame, distractor, t)
        for k in depth_order:
            mask = paint(frame, objects[k], t)
            # OCC: this object covers objects behind it over a fifth of its own area
            occluded |= bool((labels[t][mask] > 0).sum() > 0.2 * mask.sum())
            # OV: over a fifth of the outline's area lies outside the frame
            out_of_view |= bool(mask.sum() < 0.8 * cv2.contourArea(
                objects[k].outline(t).astype(np.float32)))
            labels[t][mask] = k + 1
        distractor_visible[t] &= labels[t] == 0
        if t in void_frames:
            labels[t][void_band(labels[t])] = VOID  # every label border touches an object
        frame = cv2.GaussianBlur(frame, (0, 0), 0.6)  # lens blur, shared by all layers
        frame = frame * gains[t] + offsets[t]
        frame += noise_sigma * rng.standard_normal(frame.shape, dtype=np.float32)
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)

    attributes = {"AC", "BC", "DEF", "ROT", "SC"}
    for code, present in (("OCC", occluded), ("OV", out_of_view), ("IO", num_objects > 1)):
        if present:
            attributes.add(code)
    return SyntheticVideo(frames=frames, labels=labels, distractor_visible=distractor_visible,
                          num_objects=num_objects, attributes=sorted(attributes),
                          jpeg_quality=int(rng.integers(85, 91)))


def write_video(root: Path, name: str, video: SyntheticVideo) -> None:
    """Write the frames as root/JPEGImages/480p/<name>/00000.jpg … and the labels as indexed
    PNGs root/Annotations/480p/<name>/00000.png …"""
    image_folder = root / "JPEGImages" / "480p" / name
    image_folder.mkdir(parents=True, exist_ok=True)
    for t, (frame, labels) in enumerate(zip(video.frames, video.labels)):
        # Pillow writes no timestamp or EXIF into a JPEG: the bytes depend on the pixels only.
        Image.fromarray(frame, mode="RGB").save(image_folder / f"{t:05d}.jpg", format="JPEG",
                                                quality=video.jpeg_quality)
        write_label_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", labels)


def sequence_name(split: str, index: int) -> str:
    """The sequence name, e.g. synth-train-000."""
    return f"synth-{split}-{index:03d}"


def generate_sequence(task: tuple[Path, int, str, int, tuple[int, int], str]) -> dict:
    """Render and write one sequence; task is (root, seed, split, index, frame_range, variant).

    Returns its db_info entry: name, attributes, num_frames, split, num_objects.
    """
    root, seed, split, index, frame_range, variant = task
    video = render_video(seed, split, index, frame_range, variant)
    name = sequence_name(split, index)
    write_video(root, name, video)
    return {"name": name, "attributes": video.attributes, "num_frames": len(video.frames),
            "split": split, "num_objects": video.num_objects}


def db_info_yaml(entries: list[dict]) -> str:
    """Annotations/db_info.yml text in the DAVIS 2016 layout (flow lists, fixed key order,
    sequences sorted by name), with the `year` key of DAVIS 2017's db_info."""
    lines = [f"attributes: [{', '.join(DB_ATTRIBUTES)}]", "sets: [training,test]", "sequences:"]
    for entry in sorted(entries, key=lambda item: item["name"]):
        lines += [f"- attributes: [{', '.join(entry['attributes'])}]",
                  f"  name: {entry['name']}",
                  f"  num_frames: {entry['num_frames']}",
                  f"  set: {DB_SETS[entry['split']]}",
                  "  eval_t: True",
                  "  year: 2016"]
    return "\n".join(lines) + "\n"


def write_index_files(root: Path, entries: list[dict]) -> None:
    """ImageSets/2017 and ImageSets/2016 train.txt and val.txt (sorted names, one a line) and
    Annotations/db_info.yml. The 2016 sets repeat the 2017 ones: DAVIS 2016 readers binarise
    the multi-object masks."""
    for split in SPLIT_CODES:
        names = sorted(entry["name"] for entry in entries if entry["split"] == split)
        for year in ("2016", "2017"):
            # plain writes: the whole set becomes visible at once by the final rename
            path = root / "ImageSets" / year / f"{split}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    (root / "Annotations" / "db_info.yml").write_text(db_info_yaml(entries), encoding="utf-8")


def write_synthetic_dataset(out_dir: str | Path, seed: int = 0, *, progress: bool = False,
                            num_train: int = 72, num_val: int = 16,
                            frame_range: tuple[int, int] = (25, 35), workers: int = 2,
                            variant: str = "default") -> dict:
    """Write the synthetic dataset for `seed` in `variant` (one of VARIANTS, see render_video)
    to out_dir in the DAVIS 2017 480p layout.

    Frames are 240×432 (H×W); frame counts are drawn from frame_range (inclusive). The set is
    built in a temporary sibling folder and renamed to out_dir at the end, so an interrupted run
    leaves no out_dir. Refuses an out_dir that exists and is not an empty folder. `workers`
    processes render the sequences (1: in this process); the bytes do not depend on it.

    Returns {"root", "seed", "variant", "size": [H, W], "splits": {"train": [...], "val": [...]},
    "num_frames": {name: T}, "object_ids": {name: [1..K]}}.
    """
    check_variant(variant)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir}: exists and is not an empty folder; "
                              "refusing to overwrite it (choose another --out or remove it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    tasks = [(staging, seed, split, index, frame_range, variant)
             for split, count in (("train", num_train), ("val", num_val))
             for index in range(count)]
    try:
        if workers > 1:
            # spawn: forking a parent that runs threads (torch, OpenCV) can deadlock
            with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
                entries = list(tqdm(pool.imap(generate_sequence, tasks), total=len(tasks),
                                    desc="synthesising", unit="video", disable=not progress))
        else:
            entries = [generate_sequence(task) for task in tqdm(
                tasks, desc="synthesising", unit="video", disable=not progress)]
        write_index_files(staging, entries)
        staging.chmod(0o755)  # mkdtemp makes it private; a dataset folder should be readable
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "root": str(out_dir),
        "seed": seed,
        "variant": variant,
        "size": [HEIGHT, WIDTH],
        "splits": {split: sorted(e["name"] for e in entries if e["split"] == split)
                   for split in SPLIT_CODES},
        "num_frames": {e["name"]: e["num_frames"] for e in entries},
        "object_ids": {e["name"]: list(range(1, e["num_objects"] + 1)) for e in entries},
    }
