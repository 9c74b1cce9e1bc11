"""YouTube-Objects, SegTrack-v2 and saliency-set readers on fixtures in the release layouts."""

import json

import numpy as np
import pytest
from davis_fixtures import write_jpeg
from other_fixtures import (
    bordered_grey,
    saliency_mask,
    save_image,
    segtrack_object_mask,
    write_saliency,
    write_segtrackv2,
    write_youtube_objects,
    youtube_objects_mask,
)
from PIL import Image

from vosbench.datamodules.saliency import saliency_images
from vosbench.datamodules.segtrack import object_folders, segtrackv2_videos
from vosbench.datamodules.video import VOID_LABEL
from vosbench.datamodules.youtube_objects import youtube_objects_videos
from vosbench.errors import InputError

SHOTS = {("car", "0001", "001"): (21, [1, 11, 21]), ("car", "0003", "002"): (9, [3, 8]),
         ("motorbike", "0007", "001"): (6, [4])}


@pytest.fixture
def youtube_objects(tmp_path):
    write_youtube_objects(tmp_path, SHOTS)
    (tmp_path / "v1" / "car" / "data" / "0001" / "shots" / "002").mkdir()  # an unannotated shot
    return tmp_path


def test_youtube_objects_sequences(youtube_objects):
    videos = youtube_objects_videos(youtube_objects)
    assert [(v.name, v.category, len(v), v.annotated) for v in videos] == [
        ("car_0001", "car", 21, (0, 10, 20)), ("car_0003_002", "car", 9, (2, 7)),
        ("motorbike_0007", "motorbike", 6, (3,))]
    video = videos[1]
    assert video.frame_names[2] == "frame0003" and video.mask_files[2].name == "00003.jpg"
    assert video.size == (24, 32) and video.single_object and video.dataset == "youtube-objects"
    assert video.first_appearance == {1: 2}
    assert [v.name for v in youtube_objects_videos(youtube_objects, "motorbike")] == [
        "motorbike_0007"]


def test_youtube_objects_labels_are_thresholded_at_the_midpoint(youtube_objects):
    video = youtube_objects_videos(youtube_objects, "car")[0]
    grey = np.asarray(Image.open(video.mask_files[10]))
    assert ((grey > 15) & (grey <= 127)).any() and ((grey > 127) & (grey < 255)).any()
    mask = video.mask(10)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, youtube_objects_mask("car", "0001", 11, 24, 32))
    with pytest.raises(InputError, match="frame frame0002 is not annotated"):
        video.mask(1)


def test_youtube_objects_errors(youtube_objects, tmp_path):
    with pytest.raises(InputError, match="unknown YouTube-Objects split 'val'; known: all, aero"):
        youtube_objects_videos(youtube_objects, "val")
    with pytest.raises(InputError, match=r"youtube_masks: ground-truth folder not found .*v1/"):
        youtube_objects_videos(tmp_path / "nowhere")
    with pytest.raises(InputError, match="/youtube_masks/dog: no annotated shots"):
        youtube_objects_videos(youtube_objects, "dog")
    (youtube_objects / "youtube_masks" / "cars").mkdir()
    with pytest.raises(InputError, match="cars: not a YouTube-Objects class"):
        youtube_objects_videos(youtube_objects)


def test_youtube_objects_missing_frames_and_orphan_labels(tmp_path):
    write_youtube_objects(tmp_path, {("cow", "0019", "001"): (5, [1, 7])})
    with pytest.raises(InputError, match=r"labels/00007.jpg: annotation without a frame \(no "
                                         r".*v1/cow/data/0019/shots/001/frame0007.jpg\)"):
        youtube_objects_videos(tmp_path)
    for frame in (tmp_path / "v1" / "cow" / "data" / "0019" / "shots" / "001").iterdir():
        frame.unlink()
    with pytest.raises(InputError, match=r"shots/001: no frames \(expected "
                                         r"v1/cow/data/0019/shots/001/frame0001.jpg"):
        youtube_objects_videos(tmp_path)


def test_youtube_objects_label_size_and_unreadable_label(youtube_objects):
    video = youtube_objects_videos(youtube_objects, "car")[0]
    label = video.mask_files[10]
    Image.fromarray(np.zeros((24, 30), np.uint8)).save(label)
    with pytest.raises(InputError, match=f"{label}: size 30x24 differs from the video's 32x24"):
        video.mask(10)
    label.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=f"{label}: not a readable mask image"):
        video.mask(10)
    label.rename(label.with_name("0011.jpg"))
    with pytest.raises(InputError, match="0011.jpg: expected a file name like 00001.jpg"):
        youtube_objects_videos(youtube_objects, "car")


# name -> (frames, first frame number, frame extension, mask extension per object)
SEGTRACK = {"birdfall": (3, 0, "png", ("png",)), "cheetah": (4, 7, "bmp", ("bmp", "png")),
            "worm": (2, 1, "jpg", ("png",))}


@pytest.fixture
def segtrack(tmp_path):
    root = tmp_path / "SegTrackv2"
    write_segtrackv2(root, SEGTRACK)
    return root


def test_segtrack_sequences(segtrack):
    videos = segtrackv2_videos(segtrack)
    assert [(v.name, len(v), v.annotated, v.size) for v in videos] == [
        ("birdfall", 3, (0, 1, 2), (16, 24)), ("cheetah", 4, (0, 1, 2, 3), (16, 24)),
        ("worm", 2, (0, 1), (16, 24))]
    cheetah = videos[1]
    assert cheetah.frame_files[0].name == "cheetah_00007.bmp" and cheetah.frame(0).shape == (
        16, 24, 3)
    assert [path.name for path in cheetah.object_files[0]] == ["cheetah_00007.bmp",
                                                               "cheetah_00007.png"]
    assert cheetah.first_appearance == {1: 0, 2: 0} and videos[0].first_appearance == {1: 0}
    assert not cheetah.single_object and cheetah.dataset == "segtrackv2"


def test_segtrack_objects_merge_in_folder_order_and_borders_threshold(segtrack):
    cheetah = segtrackv2_videos(segtrack)[1]
    first, second = (segtrack_object_mask(1, k, 16, 24) for k in (1, 2))
    expected = np.where(first == 1, 1, 0) + np.where(second == 1, 2, 0)
    expected[(first == 1) & (second == 1)] = VOID_LABEL
    assert (expected == VOID_LABEL).any()
    np.testing.assert_array_equal(cheetah.mask(1), expected)
    birdfall = segtrackv2_videos(segtrack)[0]
    np.testing.assert_array_equal(birdfall.mask(2), segtrack_object_mask(2, 1, 16, 24))


def test_segtrack_object_folders_sort_numerically(tmp_path):
    for name in ("10", "2", "1"):
        (tmp_path / name).mkdir()
    assert [path.name for path in object_folders(tmp_path)] == ["1", "2", "10"]


def test_segtrack_missing_folders_and_lists(segtrack, tmp_path):
    with pytest.raises(InputError, match="ImageSets/all.txt: sequence list not found"):
        segtrackv2_videos(tmp_path)
    with pytest.raises(InputError, match="unknown SegTrack-v2 split 'train'"):
        segtrackv2_videos(segtrack, "train")
    (segtrack / "GroundTruth" / "worm").rename(segtrack / "worm-gt")
    with pytest.raises(InputError, match=r"GroundTruth/worm: ground-truth folder not found "
                                         r"\(expected GroundTruth/worm/<frame>.png"):
        segtrackv2_videos(segtrack)
    (segtrack / "JPEGImages" / "worm").rename(segtrack / "worm-frames")
    with pytest.raises(InputError, match=r"JPEGImages/worm: no frames \(expected "
                                         r"JPEGImages/worm/<frame>.png, .bmp or .jpg\)"):
        segtrackv2_videos(segtrack)


def test_segtrack_missing_and_orphan_masks(segtrack):
    masks = segtrack / "GroundTruth" / "cheetah" / "2"
    (masks / "cheetah_00008.png").rename(masks / "cheetah_00099.png")
    with pytest.raises(InputError, match=r"2/cheetah_00099.png: annotation without a frame "
                                         r"\(no .*JPEGImages/cheetah/cheetah_00099.png, .bmp"):
        segtrackv2_videos(segtrack)
    (masks / "cheetah_00099.png").unlink()
    with pytest.raises(InputError, match="2/cheetah_00008.png: missing; SegTrack-v2 annotates "
                                         "every frame"):
        segtrackv2_videos(segtrack)


def test_segtrack_mask_size_and_unreadable_mask(segtrack):
    cheetah = segtrackv2_videos(segtrack)[1]
    mask = cheetah.object_files[2][1]
    save_image(mask, bordered_grey(np.zeros((16, 20), np.uint8)))
    with pytest.raises(InputError, match=f"{mask}: size 20x16 differs from the video's 24x16"):
        cheetah.mask(2)
    mask.write_bytes(b"\x89PNG truncated")
    with pytest.raises(InputError, match=f"{mask}: not a readable mask image"):
        cheetah.mask(2)


@pytest.fixture
def saliency(tmp_path):
    write_saliency(tmp_path, {"msra10k": 3, "duts-tr": 2, "duts-te": 1})
    return tmp_path


def test_saliency_images_are_one_frame_videos(saliency):
    images = saliency_images(saliency)
    assert [(image.name, image.split) for image in images] == [
        ("75", "msra10k"), ("76", "msra10k"), ("77", "msra10k"),
        ("ILSVRC2012_test_00000000", "duts-tr"), ("ILSVRC2012_test_00000001", "duts-tr")]
    image = images[4]
    assert len(image) == 1 and image.annotated == (0,) and image.size == (12, 16)
    assert image.dataset == "saliency" and image.single_object
    grey = np.asarray(Image.open(image.mask_files[0]))
    assert set(np.unique(grey)) == {0, 100, 200, 255}
    np.testing.assert_array_equal(image.mask(0), saliency_mask(1, 12, 16))
    assert image.frame(0).shape == (12, 16, 3)
    assert [image.split for image in saliency_images(saliency, "duts-te")] == ["duts-te"]


def test_saliency_errors(saliency, tmp_path):
    with pytest.raises(InputError, match="unknown saliency set 'duts' in split 'msra10k\\+duts'"):
        saliency_images(saliency, "msra10k+duts")
    with pytest.raises(InputError, match=r"MSRA10K_Imgs_GT/Imgs: no images \(expected the msra10k "
                                         r"release as MSRA10K_Imgs_GT/Imgs/<name>.jpg"):
        saliency_images(tmp_path / "empty", "msra10k")
    masks = saliency / "DUTS-TR" / "DUTS-TR-Mask"
    (masks / "ILSVRC2012_test_00000001.png").rename(masks / "extra.png")
    with pytest.raises(InputError, match=r"extra.png: annotation without a frame \(no "
                                         r".*DUTS-TR-Image/extra.jpg\)"):
        saliency_images(saliency, "duts-tr")
    (masks / "extra.png").unlink()
    with pytest.raises(InputError, match="DUTS-TR-Mask/ILSVRC2012_test_00000001.png: missing; "
                                         "every image of duts-tr has a mask"):
        saliency_images(saliency, "duts-tr")


def test_saliency_mask_size_and_unreadable_files(saliency):
    image = saliency_images(saliency, "duts-te")[0]
    save_image(image.mask_files[0], np.zeros((12, 15), np.uint8))
    with pytest.raises(InputError, match="size 15x12 differs from the video's 16x12"):
        image.mask(0)
    image.mask_files[0].write_bytes(b"")
    with pytest.raises(InputError, match=f"{image.mask_files[0]}: not a readable mask image"):
        image.mask(0)
    image.frame_files[0].write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=f"{image.frame_files[0]}: not a readable image"):
        saliency_images(saliency, "duts-te")
    write_jpeg(image.frame_files[0], 12, 16, 0)


def check_json(capsys, dataset, root, *options):
    from vosbench.cli import main as vosbench_main

    assert vosbench_main(["data", "check", "--dataset", dataset, "--root", str(root), "--json",
                          *options]) == 0
    return json.loads(capsys.readouterr().out)


def test_data_check_reports_youtube_objects(youtube_objects, capsys):
    summary = check_json(capsys, "youtube-objects", youtube_objects)
    assert summary["split"] == "all"
    assert {name: (s["frames"], s["annotated"], s["objects"])
            for name, s in summary["sequences"].items()} == {
        "car_0001": (21, 3, [1]), "car_0003_002": (9, 2, [1]), "motorbike_0007": (6, 1, [1])}


def test_data_check_reports_segtrackv2_and_saliency(segtrack, saliency, capsys):
    summary = check_json(capsys, "segtrackv2", segtrack)
    assert summary["sequences"]["birdfall"] == {"frames": 3, "annotated": 3, "objects": [1],
                                                "size": [16, 24]}
    summary = check_json(capsys, "saliency", saliency, "--split", "duts-te")
    assert list(summary["sequences"].values()) == [
        {"frames": 1, "annotated": 1, "objects": [1], "size": [12, 16]}]
