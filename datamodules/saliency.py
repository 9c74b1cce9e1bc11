"""Reader for the static-image saliency sets used to pre-train on images: MSRA10K and DUTS, each
image a one-frame `Video` with a 0/1 mask (dataset "saliency").

Release layouts, unzipped side by side under one root:
  MSRA10K_Imgs_GT/Imgs/<id>.jpg + <id>.png          images and masks in one folder
  DUTS-TR/DUTS-TR-Image/<name>.jpg, DUTS-TR/DUTS-TR-Mask/<name>.png   (DUTS-TE likewise)
Masks are grayscale 0/255 with antialiased borders, thresholded at 127. A split names one set
("msra10k", "duts-tr", "duts-te") or several joined by '+' ("msra10k+duts-tr", the default: the
two training sets); each video's `split` is the set it comes from.
"""

from pathlib import Path

from vosbench.datamodules.binary_masks import BinaryMaskVideo
from vosbench.datamodules.video import Video, image_size, pair_by_stem
from vosbench.errors import InputError

# set name -> (image folder, mask folder), relative to the root
SETS = {
    "msra10k": ("MSRA10K_Imgs_GT/Imgs", "MSRA10K_Imgs_GT/Imgs"),
    "duts-tr": ("DUTS-TR/DUTS-TR-Image", "DUTS-TR/DUTS-TR-Mask"),
    "duts-te": ("DUTS-TE/DUTS-TE-Image", "DUTS-TE/DUTS-TE-Mask"),
}


def saliency_images(root: str | Path, split: str = "msra10k+duts-tr") -> list[Video]:
    """The images of one saliency set or of several joined by '+', in set then name order."""
    root = Path(root)
    names = split.split("+")
    unknown = [name for name in names if name not in SETS]
    if unknown:
        raise InputError(f"unknown saliency set {unknown[0]!r} in split {split!r}; known: "
                         f"{', '.join(SETS)} (join several with '+')")
    return [image for name in names for image in set_images(root, name)]


def set_images(root: Path, name: str) -> list[BinaryMaskVideo]:
    """The images of one set, each paired with the mask of the same stem."""
    image_dir, mask_dir = (root / folder for folder in SETS[name])
    images = {path.stem: path for path in sorted(image_dir.glob("*.jpg"))}
    if not images:
        raise InputError(f"{image_dir}: no images (expected the {name} release as "
                         f"{SETS[name][0]}/<name>.jpg with masks {SETS[name][1]}/<name>.png)")
    masks = {path.stem: path for path in sorted(mask_dir.glob("*.png"))}
    pair_by_stem(images, masks, frame_dir=image_dir, frame_suffix=".jpg", mask_dir=mask_dir,
                 every_frame=f"every image of {name} has a mask")
    return [BinaryMaskVideo(stem, "saliency", name, (images[stem],), (masks[stem],),
                          image_size(images[stem]), single_object=True)
            for stem in images]
