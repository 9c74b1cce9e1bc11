"""Reader for FBMS-59 (Freiburg-Berkeley Motion Segmentation), as its Trainingset/Testset unzip.

<root>/Testset/<seq>/<seq>_<num>.jpg (tennis: tennis<num>.jpg), <seq>.bmf (the frame list), and
GroundTruth/<seq>Def.dat, which names the annotated frames (0-based indices into the frame list)
and their ground-truth files: grayscale .pgm (region = grey level, BMS-26 sequences) or colour
.ppm (region = R·65536 + G·256 + B); `Scale of region k` gives each region's value and region 0 is
the background. Probability maps (`PROB` files) are not listed there and so never read. Masks are
binarised to one foreground (every region but 0), as zero-shot VOS evaluates FBMS.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vosbench.datamodules.video import Video, image_size
from vosbench.errors import InputError

SPLIT_FOLDERS = {"train": "trainingset", "test": "testset"}  # matched case-insensitively


@dataclass(frozen=True)
class GroundTruthDefinition:
    """The content of a `<seq>Def.dat` file that the reader needs."""

    region_values: tuple[int, ...]  # pixel value of region k (grey level or packed RGB)
    annotated: dict[int, str]  # frame index -> ground-truth file name


@dataclass(frozen=True)
class FBMSVideo(Video):
    """An FBMS video: annotations are PGM/PPM region maps, decoded to region indices."""

    region_values: tuple[int, ...] = ()

    def read_labels(self, path: Path) -> np.ndarray:
        """(H, W) uint8 region index of each pixel (0 = background)."""
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"{path}: missing or not a readable PGM/PPM image")
        if image.ndim == 3:  # PPM: OpenCV gives BGR
            blue, green, red = (image[..., c].astype(np.int64) for c in range(3))
            values = red * 65536 + green * 256 + blue
        else:
            values = image.astype(np.int64)
        table = np.asarray(self.region_values)
        order = np.argsort(table)
        position = np.clip(np.searchsorted(table[order], values), 0, len(table) - 1)
        known = table[order][position] == values
        if not known.all():
            unknown = int(values[~known][0])
            raise InputError(f"{path}: pixel value {unknown} is not a region of the ground-truth "
                             f"definition (regions: {list(self.region_values)})")
        return order[position].astype(np.uint8)


def parse_definition(path: Path) -> GroundTruthDefinition:
    """Read a `<seq>Def.dat`: 'Key:' lines each followed by a value line (CRLF allowed)."""
    if not path.is_file():
        raise InputError(f"{path}: ground-truth definition not found")
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    try:
        count = int(lines[lines.index("Total number of regions:") + 1])
        values = tuple(int(lines[lines.index(f"Scale of region {k}:") + 1]) for k in range(count))
        annotated = {}
        for i, line in enumerate(lines):
            if line == "Frame number:":
                if lines[i + 2] != "File name:":
                    raise ValueError(f"'File name:' expected after frame {lines[i + 1]}")
                annotated[int(lines[i + 1])] = lines[i + 3]
    except (ValueError, IndexError) as error:
        raise InputError(f"{path}: not a valid FBMS ground-truth definition ({error})") from None
    if not annotated:
        raise InputError(f"{path}: lists no annotated frame")
    return GroundTruthDefinition(values, annotated)


def _frame_number(path: Path) -> int:
    digits = re.search(r"(\d+)$", path.stem)
    return int(digits.group(1)) if digits else -1


def frame_list(folder: Path, name: str) -> list[Path]:
    """The frames of a sequence: the .bmf list when there is one (its .ppm names stand for the
    .jpg files), else the JPEGs sorted by their number."""
    bmf = folder / f"{name}.bmf"
    if not bmf.is_file():
        return sorted(folder.glob("*.jpg"), key=_frame_number)
    entries = bmf.read_text(errors="replace").split()[2:]  # first line: '<count> 1'
    frames = [folder / Path(entry).with_suffix(".jpg").name for entry in entries]
    for frame in frames:
        if not frame.is_file():
            raise InputError(f"{frame}: listed in {bmf} but not found")
    return frames


def fbms_video(folder: Path, split: str) -> FBMSVideo:
    name = folder.name
    frames = frame_list(folder, name)
    if not frames:
        raise InputError(f"{folder}: no frames (expected {name}_<num>.jpg and {name}.bmf)")
    definition = parse_definition(folder / "GroundTruth" / f"{name}Def.dat")
    masks: list[Path | None] = [None] * len(frames)
    for index, file_name in definition.annotated.items():
        if not 0 <= index < len(frames):
            raise InputError(f"{folder / 'GroundTruth' / f'{name}Def.dat'}: frame number {index} "
                             f"outside the {len(frames)} frames of {name!r}")
        masks[index] = folder / "GroundTruth" / file_name
        if not masks[index].is_file():
            raise InputError(f"{masks[index]}: named in {name}Def.dat but not found")
    return FBMSVideo(name, "fbms", split, tuple(frames), tuple(masks), image_size(frames[0]),
                     single_object=True, region_values=definition.region_values)


def fbms_videos(root: str | Path, split: str = "test") -> list[FBMSVideo]:
    """The videos of the FBMS-59 Trainingset ("train") or Testset ("test")."""
    root = Path(root)
    if split not in SPLIT_FOLDERS:
        raise InputError(f"unknown FBMS split {split!r}; known: {', '.join(SPLIT_FOLDERS)}")
    folders = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == SPLIT_FOLDERS[split]]
    if not folders:
        raise InputError(f"{root}: no {SPLIT_FOLDERS[split].capitalize()} folder (expected "
                         f"{root / 'Testset'}/<seq>/ or {root / 'Trainingset'}/<seq>/)")
    sequences = sorted(p for p in folders[0].iterdir() if p.is_dir())
    if not sequences:
        raise InputError(f"{folders[0]}: no sequence folders")
    return [fbms_video(folder, split) for folder in sequences]
