"""Reader for YouTube-VOS 2018 and 2019, in the release layout as the zips unpack.

<root>/<split>/JPEGImages/<video>/00000.jpg 00005.jpg …   every 5th frame of the 30 fps video
<root>/<split>/Annotations/<video>/00000.png …           indexed PNGs, YouTube palette, no void
<root>/<split>/meta.json                                 {"videos": {<video>: {"objects": {"1":
                                                           {"category": …, "frames": [stems]}}}}}
<root>/<split>_all_frames/JPEGImages/<video>/00000.jpg 00001.jpg …   every frame, no annotations
(or <root>/all_frames/<split>_all_frames/JPEGImages, as XMem and Cutie place it)

The annotations differ between the splits. In train every sparse frame has a PNG that labels every
object present (all-zero where none is), and an object's meta.json frames are the frames where it
is annotated. In valid and test a PNG exists only where some object first appears and holds only
those new objects; an object's meta.json frames run from its first appearance to the end of the
video (the frames to predict), so frames[0] names the PNG with its first mask.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vosbench.datamodules.video import Video, image_size
from vosbench.errors import InputError

SPLITS = ("train", "valid", "test")


class MetaObject(NamedTuple):
    """One object of meta.json: its category (None where not given) and its frame stems."""

    category: str | None
    frames: tuple[str, ...]


@dataclass(frozen=True)
class YouTubeVOSVideo(Video):
    """A YouTube-VOS video with its meta.json objects.

    object_frames: object id → the frame stems meta.json lists for it (train: the frames where it
    is annotated; valid/test: its first appearance to the end). object_categories: object id →
    category, for the objects meta.json gives one. `category` is their common category, or None
    where they differ or one lacks it.

    `mask(i)` returns the labels of frame i's PNG as they are. In train that is every object
    present; in valid/test it is only the objects that first appear at frame i, so a mask is not
    the full ground truth of its frame: semi-supervised methods take `reference_masks()`.
    """

    # hash=False keeps videos hashable like the base class (dicts are not)
    object_categories: dict[int, str] = field(default_factory=dict, hash=False)
    object_frames: dict[int, tuple[str, ...]] = field(default_factory=dict, hash=False)

    @property
    def object_first_frames(self) -> dict[int, str]:
        """Object id → the stem of the first frame meta.json lists for it: in valid/test the
        frame whose PNG holds its first mask. (In train a few listed first frames precede the
        first non-empty mask; `reference_masks()` goes by the masks there.)"""
        return {obj: frames[0] for obj, frames in self.object_frames.items() if frames}

    def reference_masks(self) -> dict[int, np.ndarray]:
        """Frame index → (H, W) uint8 labels of the objects first given at that frame, the
        others 0: the masks a semi-supervised method is handed. Only frames where some object
        first appears are keys. valid/test go by meta.json's first frames, train by the first
        frame whose mask holds the object. Decodes every annotated frame; raises InputError for a
        label not in meta.json, and in valid/test for a PNG that holds an object first given
        elsewhere or lacks one meta.json first gives there."""
        listed = None if self.split == "train" else self._listed_first_indices()
        given: set[int] = set()
        references = {}
        for index in self.annotated:
            labels = self.mask(index)
            present = set(np.unique(labels).tolist()) - {0}
            self._check_known(index, present)
            if listed is None:
                new = present - given  # train masks are exhaustive: new where first seen
            else:
                new = {obj for obj, first in listed.items() if first == index}
                self._check_first_masks(index, present, new, listed)
            given |= new
            if new:
                references[index] = np.where(np.isin(labels, sorted(new)), labels, 0).astype(
                    np.uint8)
        return references

    def _listed_first_indices(self) -> dict[int, int]:
        index_of = {name: index for index, name in enumerate(self.frame_names)}
        return {obj: index_of[stem] for obj, stem in self.object_first_frames.items()}

    def _check_known(self, index: int, present: set[int]) -> None:
        unknown = sorted(present - set(self.object_frames))
        if unknown:
            raise InputError(f"{self.mask_files[index]}: object id {unknown[0]} is not in "
                             f"meta.json for video {self.name!r} (known: "
                             f"{sorted(self.object_frames)})")

    def _check_first_masks(self, index: int, present: set[int], new: set[int],
                           listed: dict[int, int]) -> None:
        path, old, missing = self.mask_files[index], sorted(present - new), sorted(new - present)
        if old:
            raise InputError(f"{path}: holds object {old[0]}, which meta.json first gives at "
                             f"frame {self.frame_names[listed[old[0]]]}; a {self.split} PNG holds "
                             f"only the objects that first appear in it")
        if missing:
            raise InputError(f"{path}: object {missing[0]} is missing, but meta.json gives this "
                             f"frame as its first")


def youtube_vos_videos(root: str | Path, split: str = "valid", *,
                       all_frames: bool = False) -> list[YouTubeVOSVideo]:
    """The videos of a YouTube-VOS split (train, valid or test), sorted by id.

    all_frames: frames from <split>_all_frames (every 30 fps frame) instead of the sparse every-5th
    frames; the annotations stay the sparse ones, matched to the frames by stem.
    """
    if split not in SPLITS:
        raise InputError(f"unknown YouTube-VOS split {split!r}; known: {', '.join(SPLITS)}")
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise InputError(f"{split_dir}: split folder not found (expected {split}/JPEGImages, "
                         f"{split}/Annotations and {split}/meta.json under {root})")
    meta_path = split_dir / "meta.json"
    meta = read_meta(meta_path)
    if split != "train":
        check_first_frames_listed(meta_path, meta)
    frame_root = all_frames_dir(Path(root), split) if all_frames else split_dir / "JPEGImages"
    mask_root = split_dir / "Annotations"
    for folder in (frame_root, mask_root):
        if not folder.is_dir():
            raise InputError(f"{folder}: folder not found")
    check_same_videos(meta_path, meta, frame_root, mask_root)
    return [_video(name, split, frame_root / name, mask_root / name, objects, all_frames)
            for name, objects in sorted(meta.items())]


def all_frames_dir(root: Path, split: str) -> Path:
    """The JPEGImages folder of the all-frames zip, in either place the tools put it."""
    candidates = [root / f"{split}_all_frames" / "JPEGImages",
                  root / "all_frames" / f"{split}_all_frames" / "JPEGImages"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise InputError(f"{root}: no all-frames folder for split {split!r} (expected "
                     f"{candidates[0]} or {candidates[1]})")


def read_meta(path: Path) -> dict[str, dict[int, MetaObject]]:
    """meta.json as video id → object id → MetaObject."""
    if not path.is_file():
        raise InputError(f"{path}: meta.json not found")
    try:
        meta = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    videos = _entry(path, meta, "videos", "")
    return {name: {_object_id(path, f"videos/{name}/objects", key): _meta_object(
                       path, obj, f"videos/{name}/objects/{key}")
                   for key, obj in _entry(path, video, "objects", f"videos/{name}/").items()}
            for name, video in videos.items()}


def _entry(path: Path, parent, key: str, where: str) -> dict:
    """parent[key], which must be a JSON object."""
    if not isinstance(parent, dict) or key not in parent:
        raise InputError(f"{path}: missing key '{where}{key}' (expected {{\"videos\": {{<id>: "
                         f"{{\"objects\": {{\"1\": {{\"category\": …, \"frames\": […]}}}}}}}}}})")
    if not isinstance(parent[key], dict):
        raise InputError(f"{path}: '{where}{key}' must be a JSON object")
    return parent[key]


def _object_id(path: Path, where: str, key: str) -> int:
    if not key.isdigit() or not 1 <= int(key) <= 255:
        raise InputError(f"{path}: '{where}' has key {key!r}; object keys are pixel ids 1..255")
    return int(key)


def _meta_object(path: Path, obj, where: str) -> MetaObject:
    if not isinstance(obj, dict) or "frames" not in obj:
        raise InputError(f"{path}: missing key '{where}/frames'")
    frames, category = obj["frames"], obj.get("category")  # category: optional in valid/test
    if not isinstance(frames, list) or not all(isinstance(stem, str) for stem in frames):
        raise InputError(f"{path}: '{where}/frames' must be a list of frame names")
    if category is not None and not isinstance(category, str):
        raise InputError(f"{path}: '{where}/category' must be a string")
    return MetaObject(category, tuple(sorted(frames)))


def check_first_frames_listed(meta_path: Path, meta: dict[str, dict[int, MetaObject]]) -> None:
    """valid/test: every object lists frames, the first being the frame of its first mask."""
    for name, objects in sorted(meta.items()):
        for obj, entry in objects.items():
            if not entry.frames:
                raise InputError(f"{meta_path}: object {obj} of video {name!r} lists no frames; "
                                 f"valid/test list each object's frames from its first mask on")


def check_same_videos(meta_path: Path, meta: dict, frame_root: Path, mask_root: Path) -> None:
    """Every video of meta.json has frames and every frame or annotation folder has an entry."""
    for name in sorted(meta):
        if not any((frame_root / name).glob("*.jpg")):
            raise InputError(f"{frame_root / name}: no frames for video {name!r} of {meta_path} "
                             f"(expected {name}/00000.jpg …)")
    for folder in (frame_root, mask_root):
        for extra in sorted(path for path in folder.iterdir() if path.is_dir()):
            if extra.name not in meta:
                raise InputError(f"{extra}: video {extra.name!r} has no entry in {meta_path}")


def _video(name: str, split: str, frame_dir: Path, mask_dir: Path,
           objects: dict[int, MetaObject], all_frames: bool) -> YouTubeVOSVideo:
    frames = sorted(frame_dir.glob("*.jpg"))
    stems = {path.stem for path in frames}
    by_stem = {path.stem: path for path in mask_dir.glob("*.png")}
    orphans = sorted(set(by_stem) - stems)
    if orphans:
        raise InputError(f"{by_stem[orphans[0]]}: annotation without a frame "
                         f"(no {frame_dir / (orphans[0] + '.jpg')})")
    masks = [by_stem.get(path.stem) for path in frames]
    if split == "train" and not all_frames and None in masks:
        missing = frames[masks.index(None)].stem
        raise InputError(f"{mask_dir / (missing + '.png')}: missing; every train frame has a PNG")
    for obj, entry in objects.items():
        _check_listed_frames(name, split, obj, entry.frames, stems, by_stem, frame_dir, mask_dir)
    categories = {obj: entry.category for obj, entry in objects.items() if entry.category}
    shared = set(categories.values())
    category = shared.pop() if len(shared) == 1 and len(categories) == len(objects) else None
    return YouTubeVOSVideo(name, "youtube-vos", split, tuple(frames), tuple(masks),
                           image_size(frames[0]), category=category,
                           object_categories=dict(sorted(categories.items())),
                           object_frames={obj: objects[obj].frames for obj in sorted(objects)})


def _check_listed_frames(name: str, split: str, obj: int, listed: tuple[str, ...],
                         stems: set[str], by_stem: dict[str, Path], frame_dir: Path,
                         mask_dir: Path) -> None:
    """meta.json's frames of one object exist; in valid/test the first one has its PNG."""
    for stem in listed:
        if stem not in stems:
            raise InputError(f"{frame_dir / (stem + '.jpg')}: missing; meta.json lists frame "
                             f"{stem} for object {obj} of video {name!r}")
    if split != "train" and listed[0] not in by_stem:
        raise InputError(f"{mask_dir / (listed[0] + '.png')}: missing; meta.json gives "
                         f"{listed[0]} as the first frame of object {obj}")
