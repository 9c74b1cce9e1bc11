"""FBMS-59 reader on a fixture in the release format (.bmf, Def.dat, PGM and PPM ground truth)."""

import json

import cv2
import numpy as np
import pytest
from davis_fixtures import write_jpeg

from vosbench.cli import main as vosbench_main
from vosbench.datamodules.fbms import fbms_videos, parse_definition
from vosbench.errors import InputError

WHITE = 255 * 65536 + 255 * 256 + 255
RED, BLUE = 255 * 65536, 255


def definition(region_values, frames: dict[int, str], total: int) -> str:
    lines = ["Ground truth definition file; do not change!", "", "Total number of regions:",
             str(len(region_values))]
    for k, value in enumerate(region_values):
        lines += [f"Scale of region {k}:", str(value)]
    lines += ["", "Confusion penality matrix:", "0 1", "1 0", "",
              "Total number of frames in this shot:", str(total),
              "Total number of labeled frames for this shot:", str(len(frames))]
    for index, name in frames.items():
        lines += ["Frame number:", str(index), "File name:", name, "Input file name:",
                  name.replace("_gt", "")]
    return "\r\n".join(lines) + "\r\n"  # the release files have DOS line ends


def write_sequence(root, name, frame_names, gt_files, region_values, bmf=True):
    folder = root / "Testset" / name
    for seed, frame in enumerate(frame_names):
        write_jpeg(folder / f"{frame}.jpg", 10, 16, seed)
    if bmf:  # the MoSeg convention lists .ppm names for the .jpg frames
        (folder / f"{name}.bmf").write_text(
            f"{len(frame_names)} 1\n" + "".join(f"{f}.ppm\n" for f in frame_names))
    (folder / "GroundTruth").mkdir()
    for file_name, image in gt_files.values():
        cv2.imwrite(str(folder / "GroundTruth" / file_name), image)
    (folder / "GroundTruth" / f"{name}Def.dat").write_text(definition(
        region_values, {index: file_name for index, (file_name, _) in gt_files.items()},
        len(frame_names)))


@pytest.fixture
def fbms(tmp_path):
    root = tmp_path / "FBMS"
    # PGM sequence: black background, two grey regions
    grey = np.zeros((10, 16), np.uint8)
    grey[2:5, 2:6], grey[6:9, 8:12] = 255, 128
    write_sequence(root, "cars1", [f"cars1_{i:02d}" for i in range(1, 6)],
                   {0: ("cars1_01_gt.pgm", grey), 4: ("cars1_05_gt.pgm", np.zeros_like(grey))},
                   (0, 255, 128))
    # PPM sequence: white background, coloured regions, a decoy probability map
    colour = np.full((10, 16, 3), 255, np.uint8)
    colour[1:4, 1:4] = (0, 0, 255)  # BGR red
    colour[5:8, 9:14] = (255, 0, 0)  # BGR blue
    write_sequence(root, "cats04", [f"cats04_{i:04d}" for i in range(20, 24)],
                   {1: ("cats04_0021_gt.ppm", colour)}, (WHITE, RED, BLUE))
    cv2.imwrite(str(root / "Testset" / "cats04" / "GroundTruth" / "cats04_0021_PROB.ppm"),
                np.zeros((10, 16, 3), np.uint8))
    # tennis: no underscore, numbering from an offset, no .bmf (sorted by number)
    write_sequence(root, "tennis", [f"tennis{i}" for i in (98, 99, 100, 101)],
                   {2: ("tennis100_gt.pgm", grey)}, (0, 255, 128), bmf=False)
    return root


def test_check_reports_fbms(fbms, capsys):
    assert vosbench_main(["data", "check", "--dataset", "fbms", "--root", str(fbms), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["split"] == "test"
    assert summary["sequences"] == {
        "cars1": {"frames": 5, "annotated": 2, "objects": [1], "size": [10, 16]},
        "cats04": {"frames": 4, "annotated": 1, "objects": [1], "size": [10, 16]},
        "tennis": {"frames": 4, "annotated": 1, "objects": [1], "size": [10, 16]},
    }


def test_regions_decode_and_binarise(fbms):
    cars, cats, tennis = fbms_videos(fbms)
    assert cars.read_labels(cars.mask_files[0])[3, 3] == 1  # grey 255 is region 1
    assert cars.read_labels(cars.mask_files[0])[7, 9] == 2
    assert cars.mask(0).sum() == 12 + 12 and cars.mask(4).sum() == 0  # empty frame stays empty
    labels = cats.read_labels(cats.mask_files[1])
    assert labels[2, 2] == 1 and labels[6, 10] == 2 and labels[0, 0] == 0  # white is background
    assert tennis.frame_names == ("tennis98", "tennis99", "tennis100", "tennis101")
    assert tennis.annotated == (2,)


def test_definition_parser_reads_crlf_files(fbms):
    parsed = parse_definition(fbms / "Testset" / "cats04" / "GroundTruth" / "cats04Def.dat")
    assert parsed.region_values == (WHITE, RED, BLUE)
    assert parsed.annotated == {1: "cats04_0021_gt.ppm"}


def test_errors_name_the_file(fbms):
    gt = fbms / "Testset" / "cars1" / "GroundTruth"
    image = cv2.imread(str(gt / "cars1_01_gt.pgm"), cv2.IMREAD_UNCHANGED)
    image[0, 0] = 7
    cv2.imwrite(str(gt / "cars1_01_gt.pgm"), image)
    cars = fbms_videos(fbms)[0]
    with pytest.raises(InputError, match="cars1_01_gt.pgm: pixel value 7 is not a region"):
        cars.mask(0)
    (gt / "cars1_05_gt.pgm").unlink()
    with pytest.raises(InputError, match="cars1_05_gt.pgm: named in cars1Def.dat but not found"):
        fbms_videos(fbms)
    (gt / "cars1Def.dat").write_text("Total number of regions:\nthree\n")
    with pytest.raises(InputError, match="cars1Def.dat: not a valid FBMS ground-truth definition"):
        fbms_videos(fbms)
    with pytest.raises(InputError, match="no Trainingset folder"):
        fbms_videos(fbms, "train")
