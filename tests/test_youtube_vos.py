"""YouTube-VOS reader on a tiny fixture in the release layout."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from youtube_vos_fixtures import HELD_OUT, write_youtube_png, write_youtube_vos

from vosbench.datamodules.families import YouTubeVOSDataModule
from vosbench.datamodules.youtube_vos import youtube_vos_videos
from vosbench.errors import InputError
from vosbench.metrics.protocols import ObjectScores, SequenceScores


@pytest.fixture
def root(tmp_path):
    write_youtube_vos(tmp_path / "YouTube")
    return tmp_path / "YouTube"


def edit_meta(root, split, edit):
    path = root / split / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    return path


def test_train_sparse_frames_every_one_annotated(root):
    videos = youtube_vos_videos(root, "train")
    assert [v.name for v in videos] == ["003234408d", "0043f083b5", "00a23ccf53"]
    penguins, skater, _ = videos
    assert penguins.dataset == "youtube-vos" and penguins.split == "train"
    assert penguins.frame_names == ("00000", "00005", "00010")
    assert penguins.annotated == (0, 1, 2) and skater.annotated == (0, 1, 2)
    assert penguins.size == (12, 20) and skater.size == (14, 16)
    assert penguins.frame(0).shape == (12, 20, 3)
    assert penguins.category == "penguin"
    assert skater.category is None
    assert skater.object_categories == {1: "person", 3: "skateboard"}


def test_train_empty_masks_and_reference_masks_from_the_masks(root):
    skater = youtube_vos_videos(root, "train")[1]
    assert not skater.mask(0).any()  # all-zero PNG of the first frame
    assert skater.first_appearance == {1: 1, 3: 2}  # ids need not be contiguous
    # meta.json lists object 1 from 00000, before its first non-empty mask
    assert skater.object_first_frames == {1: "00000", 3: "00010"}
    references = skater.reference_masks()
    assert sorted(references) == [1, 2]
    assert set(np.unique(references[1])) == {0, 1}
    assert set(np.unique(references[2])) == {0, 3}  # object 1, given at 1, is left out
    assert set(np.unique(skater.mask(2))) == {0, 1, 3}


def test_palette_indices_not_colours(root):
    path = root / "train" / "Annotations" / "003234408d" / "00000.png"
    with Image.open(path) as image:
        assert image.mode == "P" and image.getpalette()[3:6] == [236, 95, 103]
    video = youtube_vos_videos(root, "train")[0]
    assert set(np.unique(video.mask(0))) == {0, 1, 2}


def test_valid_first_appearance_pngs_and_mid_video_object(root):
    cat, skater = youtube_vos_videos(root)  # default split: valid; sorted by id
    assert skater.split == "valid" and len(skater) == 5
    assert skater.annotated == (0, 2)
    assert set(np.unique(skater.mask(2))) == {0, 2}  # the PNG holds only the new object
    assert skater.object_first_frames == {1: "00000", 2: "00010"}
    assert skater.object_frames[2] == ("00010", "00015", "00020")
    assert skater.first_appearance == {1: 0, 2: 2}
    references = skater.reference_masks()
    assert sorted(references) == [0, 2]
    assert set(np.unique(references[0])) == {0, 1}
    assert np.array_equal(references[2], skater.mask(2))
    assert skater.category is None and skater.object_categories == {1: "person",
                                                                     2: "skateboard"}


def test_valid_empty_png_and_category_missing(root):
    cat = youtube_vos_videos(root, "valid")[0]
    assert cat.annotated == (0, 1)
    assert not cat.mask(0).any()
    assert sorted(cat.reference_masks()) == [1]  # first annotated frame is not 00000
    assert cat.category is None and cat.object_categories == {}
    with pytest.raises(InputError, match="frame 00010 is not annotated"):
        cat.mask(2)


def test_all_frames_with_sparse_annotations(root):
    cat, skater = youtube_vos_videos(root, "valid", all_frames=True)
    assert len(skater) == 21 and len(cat) == 16
    assert skater.frame_names[:3] == ("00000", "00001", "00002")
    assert skater.annotated == (0, 10)
    assert "valid_all_frames" in str(skater.frame_files[0])
    assert sorted(skater.reference_masks()) == [0, 10]
    assert skater.first_appearance == {1: 0, 2: 10}


def test_all_frames_in_the_xmem_place(root):
    (root / "all_frames").mkdir()
    (root / "valid_all_frames").rename(root / "all_frames" / "valid_all_frames")
    assert len(youtube_vos_videos(root, "valid", all_frames=True)[1]) == 21


def test_missing_folders_and_files(root):
    with pytest.raises(InputError, match="unknown YouTube-VOS split 'val'; known: train, valid"):
        youtube_vos_videos(root, "val")
    with pytest.raises(InputError, match="test: split folder not found .*test/meta.json"):
        youtube_vos_videos(root, "test")
    with pytest.raises(InputError, match="train_all_frames/JPEGImages or .*all_frames/train_all"):
        youtube_vos_videos(root, "train", all_frames=True)
    (root / "valid" / "meta.json").unlink()
    with pytest.raises(InputError, match="valid/meta.json: meta.json not found"):
        youtube_vos_videos(root, "valid")
    shutil.rmtree(root / "train" / "Annotations")
    with pytest.raises(InputError, match="train/Annotations: folder not found"):
        youtube_vos_videos(root, "train")


def test_meta_json_that_does_not_parse_or_lacks_keys(root):
    meta = root / "train" / "meta.json"
    meta.write_text("{videos")
    with pytest.raises(InputError, match="train/meta.json: not valid JSON"):
        youtube_vos_videos(root, "train")
    meta.write_text('{"video": {}}')
    with pytest.raises(InputError, match="train/meta.json: missing key 'videos'"):
        youtube_vos_videos(root, "train")
    meta.write_text('{"videos": {"003234408d": {"objects": {"one": {"frames": []}}}}}')
    with pytest.raises(InputError, match="has key 'one'; object keys are pixel ids 1..255"):
        youtube_vos_videos(root, "train")
    edit_meta(root, "valid", lambda m: m["videos"]["00f88c4f0a"]["objects"]["2"].pop("frames"))
    with pytest.raises(InputError, match="meta.json: missing key 'videos/00f88c4f0a/objects/2/"):
        youtube_vos_videos(root, "valid")
    meta.write_text('{"videos": {"003234408d": {}}}')
    with pytest.raises(InputError, match="missing key 'videos/003234408d/objects'"):
        youtube_vos_videos(root, "train")


def test_videos_and_frames_must_match_meta_json(root):
    meta = edit_meta(root, "valid", lambda m: m["videos"].update({"ffffffffff": {"objects": {}}}))
    with pytest.raises(InputError, match="ffffffffff: no frames for video 'ffffffffff'"):
        youtube_vos_videos(root, "valid")
    edit_meta(root, "valid", lambda m: m["videos"].pop("ffffffffff"))
    edit_meta(root, "valid", lambda m: m["videos"].pop("0062f687f1"))
    with pytest.raises(InputError, match=f"0062f687f1: video '0062f687f1' has no entry in {meta}"):
        youtube_vos_videos(root, "valid")


def test_missing_pngs(root):
    (root / "train" / "Annotations" / "003234408d" / "00005.png").unlink()
    with pytest.raises(InputError, match="00005.png: missing; every train frame has a PNG"):
        youtube_vos_videos(root, "train")
    (root / "valid" / "Annotations" / "00f88c4f0a" / "00010.png").unlink()
    with pytest.raises(InputError, match="00010.png: missing; meta.json gives 00010 as the first "
                                         "frame of object 2"):
        youtube_vos_videos(root, "valid")


def test_meta_json_frames_without_jpegs(root):
    edit_meta(root, "valid", lambda m: m["videos"]["00f88c4f0a"]["objects"]["2"]["frames"]
              .append("00025"))
    with pytest.raises(InputError, match="00025.jpg: missing; meta.json lists frame 00025 for "
                                         "object 2"):
        youtube_vos_videos(root, "valid")


def test_reference_masks_check_pngs_against_meta_json(root):
    png = root / "valid" / "Annotations" / "00f88c4f0a" / "00010.png"
    labels = np.zeros((12, 20), np.uint8)
    labels[0, 0], labels[5, 5] = 1, 2
    write_youtube_png(png, labels)
    with pytest.raises(InputError, match="00010.png: holds object 1, which meta.json first gives "
                                         "at frame 00000"):
        youtube_vos_videos(root, "valid")[1].reference_masks()
    write_youtube_png(png, np.zeros((12, 20), np.uint8))
    with pytest.raises(InputError, match="00010.png: object 2 is missing"):
        youtube_vos_videos(root, "valid")[1].reference_masks()
    labels[0, 0] = 7
    write_youtube_png(png, labels)
    with pytest.raises(InputError, match="00010.png: object id 7 is not in meta.json"):
        youtube_vos_videos(root, "valid")[1].reference_masks()


def test_valid_object_without_frames(root):
    meta = edit_meta(root, "valid",
                     lambda m: m["videos"]["00f88c4f0a"]["objects"]["2"].update(frames=[]))
    with pytest.raises(InputError, match=f"{meta}: object 2 of video '00f88c4f0a' lists no frames"):
        youtube_vos_videos(root, "valid")


def test_videos_are_hashable(root):
    assert len(set(youtube_vos_videos(root, "valid"))) == 2


def test_data_check_reports_youtube_vos(root, capsys):
    import json

    from vosbench.cli import main as vosbench_main

    assert vosbench_main(["data", "check", "--dataset", "youtube-vos", "--root", str(root),
                          "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["split"] == "valid"
    for name, info in summary["sequences"].items():
        video = next(v for v in youtube_vos_videos(root) if v.name == name)
        assert info == {"frames": len(video), "annotated": len(video.annotated),
                        "objects": sorted(video.object_frames), "size": list(video.size)}


# --------------------------------------------------------------- held-out train videos (bench)

@pytest.fixture
def heldout(root):
    path = root.parent / "heldout.txt"
    path.write_text(f"\n  {HELD_OUT}  \n\n")  # spaces and blank lines do not count
    return path


def test_heldout_videos_are_val_and_test_the_others_train(root, heldout):
    data = YouTubeVOSDataModule(root, heldout=heldout, num_workers=0)
    data.setup("fit")
    assert [video.name for video in data.videos["train"]] == ["003234408d", "0043f083b5"]
    assert [video.name for video in data.videos["val"]] == [HELD_OUT]
    data.setup("test")
    (video,) = data.videos["test"]
    assert video.name == HELD_OUT and video.split == "train" and video.annotated == (0, 1, 2, 3, 4)
    assert data.test_label == "train-heldout"  # results rows apart from the server's valid


def test_heldout_objects_seen_where_their_category_is_trained_on(root, heldout):
    data = YouTubeVOSDataModule(root, heldout=heldout, num_workers=0)
    scores = [SequenceScores(HELD_OUT, [], [ObjectScores(1), ObjectScores(2)])]
    data.mark_seen(scores)
    # person: also in 0043f083b5, a training video; dog: in no other video
    assert [(obj.category, obj.seen) for obj in scores[0].objects] == [("person", True),
                                                                       ("dog", False)]
    heldout.write_text(f"{HELD_OUT}\n0043f083b5\n")  # now no training video has a person
    data = YouTubeVOSDataModule(root, heldout=heldout, num_workers=0)
    data.mark_seen(scores)
    assert [obj.seen for obj in scores[0].objects] == [False, False]


def test_heldout_file_errors_name_the_file(root, heldout):
    def error(text: str | bytes | None) -> str:
        path = root.parent / "list.txt"
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_bytes(text.encode() if isinstance(text, str) else text)
        with pytest.raises(InputError) as caught:
            YouTubeVOSDataModule(root, heldout=path, num_workers=0).setup("fit")
        message = str(caught.value)
        assert message.startswith(f"{path}: ")
        return message

    assert "file of held-out videos not found (one name per line)" in error(None)
    assert "names no held-out videos" in error("\n \n")
    assert "cannot read the file of held-out videos" in error(b"\xff\xfe\x00")
    assert f"'{HELD_OUT}' is listed 2 times" in error(f"{HELD_OUT}\n{HELD_OUT}\n")
    message = error(f"{HELD_OUT}\n00f88c4f0a\nnope\n")  # a valid video, a typo
    assert f"'00f88c4f0a' (and 1 more) is not a video of youtube-vos train " \
           f"({root / 'train' / 'meta.json'})" in message
    with pytest.raises(InputError, match="test_split: not with heldout"):
        YouTubeVOSDataModule(root, heldout=heldout, test_split="valid")


def test_without_heldout_valid_is_predicted_not_scored(root):
    data = YouTubeVOSDataModule(root, num_workers=0)
    with pytest.raises(InputError, match=r"youtube-vos valid: the ground truth is not public, so "
                                         r"it cannot be scored; give --data.init_args.heldout"):
        data.setup("test")
    data.setup("predict")
    assert [video.name for video in data.videos["test"]] == ["0062f687f1", "00f88c4f0a"]
    assert data.test_label == "valid"
