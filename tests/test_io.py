import json

import numpy as np
import pytest
from PIL import Image

from vosbench.errors import InputError
from vosbench.io import (
    DAVIS_PALETTE,
    read_label_png,
    to_json,
    write_atomic,
    write_label_png,
)


def test_davis_palette_colours():
    colour = lambda label: tuple(DAVIS_PALETTE[3 * label:3 * label + 3])  # noqa: E731
    assert colour(0) == (0, 0, 0)
    assert colour(1) == (128, 0, 0) and colour(2) == (0, 128, 0) and colour(3) == (128, 128, 0)
    assert colour(255) == (224, 224, 192)  # the void colour of DAVIS


@pytest.mark.parametrize("grayscale", [False, True])
def test_label_png_round_trip(tmp_path, grayscale):
    labels = np.arange(60, dtype=np.uint8).reshape(6, 10)
    labels[0, 0] = 255
    path = write_label_png(tmp_path / "a" / "00000.png", labels, grayscale=grayscale)
    assert Image.open(path).mode == ("L" if grayscale else "P")
    np.testing.assert_array_equal(read_label_png(path), labels)


def test_sixteen_bit_labels_within_range_are_read(tmp_path):
    Image.fromarray(np.array([[0, 1], [2, 3]], np.uint16)).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "a.png"), [[0, 1], [2, 3]])
    Image.fromarray(np.array([[0, 300]], np.uint16)).save(tmp_path / "b.png")
    with pytest.raises(InputError, match=r"b\.png: label values must lie in 0\.\.255"):
        read_label_png(tmp_path / "b.png")


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.png: file not found"):
        read_label_png(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="text.png: cannot decode PNG"):
        read_label_png(tmp_path / "text.png")
    Image.new("L", (4, 4)).save(tmp_path / "frame.jpg", format="JPEG")
    with pytest.raises(InputError, match="frame.jpg: not a PNG file"):
        read_label_png(tmp_path / "frame.jpg")
    Image.new("RGBA", (4, 4)).save(tmp_path / "rgba.png")
    with pytest.raises(InputError, match="rgba.png: expected a single-channel"):
        read_label_png(tmp_path / "rgba.png")


def test_write_atomic_leaves_no_partial_file(tmp_path):
    write_atomic(tmp_path / "out.json", "old\n")
    with pytest.raises(TypeError):
        write_atomic(tmp_path / "out.json", 12345)  # neither text nor bytes: fails mid-write
    assert (tmp_path / "out.json").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    write_atomic(tmp_path / "out.bin", b"\x00\xff", sync=False)
    assert (tmp_path / "out.bin").read_bytes() == b"\x00\xff"


def test_json_is_strict_with_full_precision():
    text = to_json({"a": np.float64(1 / 3), "b": float("nan"), "c": np.array([1.0, np.nan]),
                    "d": np.int64(7)})
    assert json.loads(text) == {"a": 1 / 3, "b": None, "c": [1.0, None], "d": 7}
