"""A tiny YouTube-VOS folder in the release layout of ../shared/DATASETS.md section 3."""

import json
from pathlib import Path

import numpy as np
from davis_fixtures import write_jpeg
from PIL import Image

# The palette of valid/Annotations/0a49f5265b/00000.png: ten colours, then grey ramp i = (i, i, i).
YOUTUBE_PALETTE = [0, 0, 0, 236, 95, 103, 249, 145, 87, 250, 200, 99, 153, 199, 148, 98, 179, 178,
                   102, 153, 204, 197, 148, 197, 171, 121, 103, 255, 255, 255, 101, 115, 126]
YOUTUBE_PALETTE += [value for i in range(11, 256) for value in (i, i, i)]

# video id -> (height, width, sparse frame count, {object id: (category, first sparse frame)});
# train objects are labelled in every frame from their first on (PNGs before it are all-zero),
# valid objects only in the PNG of their first frame, which holds only them.
TRAIN = {"003234408d": (12, 20, 3, {1: ("penguin", 0), 2: ("penguin", 0)}),
         "0043f083b5": (14, 16, 3, {1: ("person", 1), 3: ("skateboard", 2)}),
         "00a23ccf53": (12, 20, 5, {1: ("person", 0), 2: ("dog", 2)})}
# the train video that bench holds out: a person (a category of 0043f083b5: seen) from the first
# frame and a dog (in no other video: unseen) from the middle one
HELD_OUT = "00a23ccf53"
VALID = {"00f88c4f0a": (12, 20, 5, {1: ("person", 0), 2: ("skateboard", 2)}),
         "0062f687f1": (10, 18, 4, {1: (None, 1)})}
# train: meta.json lists object 1 of 0043f083b5 from 00000, before its first non-empty mask
LISTED_EARLY = {("0043f083b5", 1)}
# valid: 0062f687f1 also has an all-zero 00000.png, a frame where no object first appears
EMPTY_VALID_PNGS = {("0062f687f1", 0)}


def write_youtube_png(path: Path, labels: np.ndarray) -> None:
    """An indexed (mode "P") PNG with the YouTube-VOS palette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="L").convert("P")
    image.putpalette(YOUTUBE_PALETTE)
    image.save(path)


def object_box(labels: np.ndarray, obj: int, t: int) -> None:
    """Draw object `obj` at sparse frame t: a 2x3 box in its own rows that moves right."""
    labels[2 * obj:2 * obj + 2, t:t + 3] = obj


def write_split(root: Path, split: str, videos: dict, all_frames: bool = False) -> None:
    meta = {"videos": {}}
    for seed, (name, (height, width, count, objects)) in enumerate(sorted(videos.items())):
        for t in range(count):
            write_jpeg(root / split / "JPEGImages" / name / f"{5 * t:05d}.jpg", height, width,
                       seed + t)
            labels = np.zeros((height, width), np.uint8)
            for obj, (_, first) in objects.items():
                if t == first or (split == "train" and t > first):
                    object_box(labels, obj, t)
            if split == "train" or labels.any() or (name, t) in EMPTY_VALID_PNGS:
                write_youtube_png(root / split / "Annotations" / name / f"{5 * t:05d}.png",
                                  labels)
        if all_frames:
            for t in range(5 * (count - 1) + 1):
                write_jpeg(root / f"{split}_all_frames" / "JPEGImages" / name / f"{t:05d}.jpg",
                           height, width, seed + t)
        meta["videos"][name] = {"objects": {
            str(obj): meta_object(category, range(0 if (name, obj) in LISTED_EARLY else first,
                                                  count))
            for obj, (category, first) in objects.items()}}
    (root / split / "meta.json").write_text(json.dumps(meta, indent=4))


def meta_object(category: str | None, sparse_frames: range) -> dict:
    entry = {"frames": [f"{5 * t:05d}" for t in sparse_frames]}
    return entry if category is None else {"category": category, **entry}


def write_youtube_vos(root: Path) -> None:
    """train (sparse, one PNG per frame, empty first masks) and valid (first-appearance PNGs,
    a mid-video object, an empty PNG, an object without category) with valid_all_frames."""
    write_split(root, "train", TRAIN)
    write_split(root, "valid", VALID, all_frames=True)


def bench_held_out(root: Path, method: str, *arguments: str) -> dict:
    """Write the fixture under `root`/YouTube and run `vosbench bench --method <method> --data
    youtube-vos` in the current folder with HELD_OUT held out (`arguments` appended): its
    results row."""
    from vosbench.cli import main as vosbench_main

    write_youtube_vos(root / "YouTube")
    Path("heldout.txt").write_text(f"{HELD_OUT}\n")
    assert vosbench_main(["bench", "--method", method, "--data", "youtube-vos", "--results",
                          "results", "--data.init_args.root", str(root / "YouTube"),
                          "--data.init_args.heldout", "heldout.txt",
                          "--model.init_args.output_workers", "0", *arguments]) == 0
    (path,) = Path("results").glob(f"{method}-youtube-vos-train-heldout-*.json")
    return json.loads(path.read_text())


def late_dog_is_predicted_from_its_frame(row: dict, root: Path) -> bool:
    """The semi-supervised contract on HELD_OUT: its dog (object 2, from 00010) is background in
    the predictions at 00000 and 00005 and its given mask at 00010."""
    from vosbench.io import read_label_png

    predictions = Path(row["run_dir"]) / "predictions" / HELD_OUT
    dog = [read_label_png(predictions / f"{5 * t:05d}.png") == 2 for t in range(3)]
    truth = read_label_png(root / "YouTube/train/Annotations" / HELD_OUT / "00010.png") == 2
    return not dog[0].any() and not dog[1].any() and np.array_equal(dog[2], truth)
