"""Tiny YouTube-Objects, SegTrack-v2 and saliency-set folders in the release layouts of
../shared/DATASETS.md, in the real file formats (JPEG labels with compression noise, 3-channel
per-object masks, image + mask pairs)."""

from pathlib import Path

import numpy as np
from davis_fixtures import write_jpeg
from PIL import Image


def box(height: int, width: int, top: int, left: int, size: int) -> np.ndarray:
    """(H, W) uint8 0/1 map of a size×size square at (top, left)."""
    mask = np.zeros((height, width), np.uint8)
    mask[top:top + size, left:left + size] = 1
    return mask


def noisy_label_jpeg(path: Path, mask: np.ndarray, seed: int) -> None:
    """Write a 0/1 mask as a grayscale JPEG of 0/255 plus noise up to 60 grey levels towards the
    midpoint, so that only a midpoint threshold recovers it (as with the ringing of real labels)."""
    noise = np.random.default_rng(seed).integers(0, 61, mask.shape)
    grey = np.where(mask == 1, 255 - noise, noise).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grey, mode="L").save(path, quality=75)


def youtube_objects_mask(category: str, vid: str, number: int, height: int,
                         width: int) -> np.ndarray:
    """The (H, W) 0/1 ground truth that `write_youtube_objects` writes for frame `number`."""
    return box(height, width, 4 + len(category) % 5, number % 10 + int(vid) % 4, 8)


def write_youtube_objects(root: Path, shots: dict[tuple[str, str, str], tuple[int, list[int]]],
                          height: int = 24, width: int = 32) -> None:
    """shots: (class, vid, shot) -> (number of v1 frames, 1-based indices of the labelled frames).
    Writes v1/<class>/data/<vid>/shots/<shot>/frame0001.jpg … and
    youtube_masks/<class>/data/<vid>/shots/<shot>/labels/00001.jpg …"""
    for seed, ((category, vid, shot), (num_frames, labelled)) in enumerate(sorted(shots.items())):
        relative = Path(category, "data", vid, "shots", shot)
        for number in range(1, num_frames + 1):
            write_jpeg(root / "v1" / relative / f"frame{number:04d}.jpg", height, width,
                       seed + number)
        for number in labelled:
            noisy_label_jpeg(root / "youtube_masks" / relative / "labels" / f"{number:05d}.jpg",
                             youtube_objects_mask(category, vid, number, height, width),
                             seed + number)


def segtrack_object_mask(index: int, object_id: int, height: int, width: int) -> np.ndarray:
    """The (H, W) 0/1 mask of object `object_id` in frame `index` of `write_segtrackv2`: objects
    1 and 2 overlap by one column."""
    return box(height, width, 2 + 3 * (object_id - 1), index + 5 * (object_id - 1), 6)


def bordered_grey(mask: np.ndarray) -> np.ndarray:
    """A 0/1 mask as (H, W) uint8 0/255 with a border of 100 outside the object and 200 inside
    it (the intermediate values of real masks' antialiased borders)."""
    grey = np.where(mask == 1, 255, 0).astype(np.uint8)
    grown, inner = np.zeros_like(mask), mask.copy()
    grown[1:-1, 1:-1] = mask[:-2, 1:-1] | mask[2:, 1:-1] | mask[1:-1, :-2] | mask[1:-1, 2:]
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    grey[(grown == 1) & (mask == 0)] = 100
    grey[(mask == 1) & (inner == 0)] = 200
    return grey


def save_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_segtrackv2(root: Path, sequences: dict[str, tuple[int, int, str, tuple[str, ...]]],
                     height: int = 16, width: int = 24) -> None:
    """sequences: name -> (frames, first frame number, frame extension, mask extension per
    object); one mask extension means a single-object sequence (GroundTruth/<seq>/<frame>.<ext>),
    several mean folders GroundTruth/<seq>/1, 2, …; all.txt marks multi-object names with '*'."""
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    listed = []
    for seed, (name, (num_frames, first, frame_ext, mask_exts)) in enumerate(sequences.items()):
        stems = [f"{name}_{first + index:05d}" for index in range(num_frames)]
        for index, stem in enumerate(stems):
            write_jpeg(root / "JPEGImages" / name / f"{stem}.{frame_ext}", height, width,
                       seed + index)
            for object_id, ext in enumerate(mask_exts, start=1):
                folder = root / "GroundTruth" / name
                folder = folder / str(object_id) if len(mask_exts) > 1 else folder
                grey = bordered_grey(segtrack_object_mask(index, object_id, height, width))
                save_image(folder / f"{stem}.{ext}", np.stack([grey] * 3, axis=-1))
        listed.append(("*" if len(mask_exts) > 1 else "") + name)
        (root / "ImageSets" / f"{name}.txt").write_text(f"{name}/\n" + "".join(
            f"{stem}\n" for stem in stems))
    (root / "ImageSets" / "all.txt").write_text("".join(f"{name}\n" for name in listed))


def saliency_mask(seed: int, height: int, width: int) -> np.ndarray:
    """The (H, W) 0/1 mask of image `seed` of `write_saliency`."""
    return box(height, width, seed % 4, seed % 5, 6)


def write_saliency(root: Path, counts: dict[str, int], height: int = 12,
                   width: int = 16) -> None:
    """counts: set ("msra10k", "duts-tr", "duts-te") -> number of images, written as the releases
    lay them out; masks are grayscale 0/255 PNGs with an antialiased border (100 / 200)."""
    folders = {"msra10k": ("MSRA10K_Imgs_GT/Imgs", "MSRA10K_Imgs_GT/Imgs"),
               "duts-tr": ("DUTS-TR/DUTS-TR-Image", "DUTS-TR/DUTS-TR-Mask"),
               "duts-te": ("DUTS-TE/DUTS-TE-Image", "DUTS-TE/DUTS-TE-Mask")}
    for name, count in counts.items():
        image_dir, mask_dir = (root / folder for folder in folders[name])
        for seed in range(count):
            stem = str(75 + seed) if name == "msra10k" else f"ILSVRC2012_test_{seed:08d}"
            write_jpeg(image_dir / f"{stem}.jpg", height, width, seed)
            save_image(mask_dir / f"{stem}.png", bordered_grey(saliency_mask(seed, height, width)))
