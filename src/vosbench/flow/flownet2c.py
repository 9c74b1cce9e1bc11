"""FlowNet2-C (Ilg et al., "FlowNet 2.0", CVPR 2017): the optical flow network of AGSS-VOS's
released code, ported so that its checkpoints load and compute the same flow.

The original is NVIDIA's flownet2-pytorch `FlowNet2C`, as AGSS-VOS ships it
(dvlab-research/AGSS-VOS, `flow_inference/networks_flow/FlowNetC.py`, `submodules.py`,
`flow_inference/models.py` class `FlowNet2C`, `flow_inference/flow_inference.py`
`Inference_flow.infer`): FlowNetC with `batchNorm=False`, its inputs centred by the mean colour
of both images and divided by 255, its finest flow (1/4 resolution) times `div_flow` = 20
upsampled ×4. Its correlation layer is a CUDA extension for torch 0.4
(`correlation_package/src/correlation_cuda_kernel.cu`); `Correlation` below computes the same
values in PyTorch, on any device.

The parameter names are the authors' (`conv1.0.weight`, …, `upsampled_flow6_to_5.weight`, …):
the state dict of AGSS-VOS's checkpoint (`torch.load(path)["flow"]`) and of NVIDIA's
`FlowNet2-C_checkpoint.pth.tar` (`["state_dict"]`) load without renaming
(`read_flownet2c_state`). 39,175,298 parameters, no buffers.
"""

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vosbench.methods.official import (
    CheckpointEntry,
    CheckpointError,
    CheckpointFormat,
    load_checkpoint_file,
    read_official_state,
)

# conv6 works at 1/64 of the input, and every decoder level doubles it exactly
SIZE_MULTIPLE = 64
# How each kind of file holds the network's state dict (the names are the module's own).
IDENTITY = (("", ""),)
CHECKPOINT_FORMATS = {
    "agssvos": CheckpointFormat((CheckpointEntry("flow", "", IDENTITY),)),
    "nvidia": CheckpointFormat((CheckpointEntry("state_dict", "", IDENTITY),)),
    "state_dict": CheckpointFormat((CheckpointEntry(None, "", IDENTITY),)),
}


class Correlation(nn.Module):
    """FlowNetC's correlation of two feature maps, as the authors' CUDA kernel computes it with
    `Correlation(pad_size=max_displacement, kernel_size=1, max_displacement, stride1=1,
    stride2=stride)`.

    Output channel (j + r)·(2r + 1) + (i + r), r = max_displacement // stride and
    i, j ∈ −r…r (row-major in (dy, dx)), at pixel (y, x) is
    Σ_c first[c, y, x] · second[c, y + j·stride, x + i·stride] / C, with `second` zero outside
    the map.

    first, second: (B, C, H, W) → (B, (2r + 1)², H, W).
    """

    def __init__(self, max_displacement: int = 20, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.radius = max_displacement // stride

    @property
    def num_channels(self) -> int:
        return (2 * self.radius + 1) ** 2

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = first.shape
        reach = self.radius * self.stride
        padded = F.pad(second, (reach, reach, reach, reach))
        rows = first.permute(0, 2, 3, 1)  # (B, H, W, C)
        # Per vertical displacement, one matrix product per image row gives the products of
        # every column of `first` with every column of the shifted `second` (a BLAS call, far
        # faster than (2r + 1)² elementwise passes); the band of horizontal displacements
        # x + i·stride is then gathered from it.
        band = (torch.arange(width, device=first.device)[:, None]
                + self.stride * torch.arange(2 * self.radius + 1, device=first.device))
        band = band.expand(batch, height, width, -1)
        shifted_rows = [padded[:, :, j * self.stride:j * self.stride + height].transpose(1, 2)
                        for j in range(2 * self.radius + 1)]  # (B, H, C, W + 2·reach) each
        products = [torch.matmul(rows, shifted).gather(3, band) for shifted in shifted_rows]
        return torch.cat(products, 3).permute(0, 3, 1, 2) / channels


def conv_block(in_channels: int, out_channels: int, kernel_size: int = 3,
               stride: int = 1) -> nn.Sequential:
    """Convolution ("same" padding, with bias) and LeakyReLU(0.1): the authors' `conv` with
    batchNorm=False. (B, in, H, W) → (B, out, H / stride, W / stride)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2),
        nn.LeakyReLU(0.1))


def deconv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Transposed convolution doubling the size, and LeakyReLU(0.1): the authors' `deconv`."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1),
                         nn.LeakyReLU(0.1))


class FlowNet2C(nn.Module):
    """FlowNet2-C: FlowNetC (a shared three-convolution encoder on both images, their
    correlation, a contracting trunk to 1/64 and a refinement decoder predicting flow at 1/64 …
    1/4), with FlowNet2's input normalisation and output scaling.

    rgb_max: the inputs' range (255: uint8 images as floats). div_flow: the factor of the
    predicted flow (the network was trained on flow / 20). max_displacement, displacement_stride:
    the correlation's reach and step at 1/8 resolution, in feature pixels (20 and 2: 21 × 21
    displacements up to ±160 image pixels).

    forward(images): (B, 3, 2, H, W) float in [0, rgb_max], the two images stacked on dim 2, H and
    W multiples of 64 → (B, 2, H, W) float flow in pixels from image 0 to image 1, channel 0 = x
    (columns), 1 = y (rows): what the authors' `FlowNet2C.forward` returns.
    """

    def __init__(self, rgb_max: float = 255.0, div_flow: float = 20.0,
                 max_displacement: int = 20, displacement_stride: int = 2) -> None:
        super().__init__()
        self.rgb_max = rgb_max
        self.div_flow = div_flow
        # the authors' order of construction, which is their state dict's order
        self.conv1 = conv_block(3, 64, kernel_size=7, stride=2)
        self.conv2 = conv_block(64, 128, kernel_size=5, stride=2)
        self.conv3 = conv_block(128, 256, kernel_size=5, stride=2)
        self.conv_redir = conv_block(256, 32, kernel_size=1)
        self.corr = Correlation(max_displacement, displacement_stride)
        self.corr_activation = nn.LeakyReLU(0.1)
        self.conv3_1 = conv_block(32 + self.corr.num_channels, 256)
        self.conv4 = conv_block(256, 512, stride=2)
        self.conv4_1 = conv_block(512, 512)
        self.conv5 = conv_block(512, 512, stride=2)
        self.conv5_1 = conv_block(512, 512)
        self.conv6 = conv_block(512, 1024, stride=2)
        self.conv6_1 = conv_block(1024, 1024)
        # decoder level l (5 … 2) concatenates the trunk's features at that level, the
        # transposed convolution of the level below and its flow upsampled
        self.deconv5 = deconv_block(1024, 512)
        self.deconv4 = deconv_block(512 + 512 + 2, 256)
        self.deconv3 = deconv_block(512 + 256 + 2, 128)
        self.deconv2 = deconv_block(256 + 128 + 2, 64)
        self.predict_flow6 = predict_flow(1024)
        self.predict_flow5 = predict_flow(512 + 512 + 2)
        self.predict_flow4 = predict_flow(512 + 256 + 2)
        self.predict_flow3 = predict_flow(256 + 128 + 2)
        self.predict_flow2 = predict_flow(128 + 64 + 2)
        self.upsampled_flow6_to_5 = nn.ConvTranspose2d(2, 2, 4, 2, 1)
        self.upsampled_flow5_to_4 = nn.ConvTranspose2d(2, 2, 4, 2, 1)
        self.upsampled_flow4_to_3 = nn.ConvTranspose2d(2, 2, 4, 2, 1)
        self.upsampled_flow3_to_2 = nn.ConvTranspose2d(2, 2, 4, 2, 1)
        # the authors' initialisation (FlowNetC.__init__), for training from scratch
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.uniform_(module.bias)
                nn.init.xavier_uniform_(module.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        mean = images.flatten(2).mean(-1)[:, :, None, None, None]  # per channel, both images
        normalised = (images - mean) / self.rgb_max
        batch = len(images)
        # the encoder's weights are shared: both images in one pass
        pair = torch.cat((normalised[:, :, 0], normalised[:, :, 1]))
        conv2 = self.conv2(self.conv1(pair))
        conv3 = self.conv3(conv2)
        first_conv3 = conv3[:batch]
        correlation = self.corr_activation(self.corr(first_conv3, conv3[batch:]))
        conv3_1 = self.conv3_1(torch.cat((self.conv_redir(first_conv3), correlation), 1))
        conv4 = self.conv4_1(self.conv4(conv3_1))
        conv5 = self.conv5_1(self.conv5(conv4))
        features = self.conv6_1(self.conv6(conv5))
        flow = self.predict_flow6(features)
        skips = {5: conv5, 4: conv4, 3: conv3_1, 2: conv2[:batch]}
        for level, skip in skips.items():
            upsampled_flow = getattr(self, f"upsampled_flow{level + 1}_to_{level}")(flow)
            features = torch.cat((skip, getattr(self, f"deconv{level}")(features),
                                  upsampled_flow), 1)
            flow = getattr(self, f"predict_flow{level}")(features)
        # the authors' nn.Upsample(scale_factor=4, mode="bilinear"): align_corners=False, the
        # default since torch 0.4.0, the version AGSS-VOS requires
        return F.interpolate(flow * self.div_flow, scale_factor=4, mode="bilinear",
                             align_corners=False)

    def official_forward(self, images: torch.Tensor) -> torch.Tensor:
        """The authors' `FlowNet2C.forward` at test time: the module is theirs throughout, so
        this is `forward` (the seam the official variants of the methods share)."""
        return self(images)


def predict_flow(in_channels: int) -> nn.Conv2d:
    """3×3 convolution to the 2 flow channels: the authors' `predict_flow`."""
    return nn.Conv2d(in_channels, 2, 3, 1, 1)


def check_images(images: torch.Tensor) -> None:
    """ValueError unless `images` is (B, 3, 2, H, W) with H and W multiples of 64."""
    if images.dim() != 5 or images.shape[1:3] != (3, 2):
        raise ValueError(f"FlowNet2C takes (B, 3, 2, H, W) images (two RGB images stacked on "
                         f"dim 2), got shape {tuple(images.shape)}")
    if images.shape[3] % SIZE_MULTIPLE or images.shape[4] % SIZE_MULTIPLE:
        raise ValueError(f"FlowNet2C takes images whose sides are multiples of {SIZE_MULTIPLE}, "
                         f"got {images.shape[4]}x{images.shape[3]} (infer_flow resizes)")


def network_size(height: int, width: int, scale: int = 1) -> tuple[int, int]:
    """The (height, width) at which AGSS-VOS's `Inference_flow.infer` runs the network on
    images of `height` × `width`: each side divided by `scale`, floored to a multiple of 64,
    64 where that leaves 0."""
    return tuple(max(side // scale // SIZE_MULTIPLE * SIZE_MULTIPLE, SIZE_MULTIPLE)
                 for side in (height, width))


def infer_flows(network: FlowNet2C, firsts: Sequence[np.ndarray],
                seconds: Sequence[np.ndarray], scale: int = 1) -> list[np.ndarray]:
    """AGSS-VOS's `Inference_flow.infer(img1, img2, scale)` (flow_inference/flow_inference.py)
    on pairs of images of one size, in one batch: the flow from firsts[i] to seconds[i].

    firsts, seconds: (H, W, 3) uint8 images, in the channel order the weights expect (AGSS-VOS
    passes cv2's BGR frames; nothing is converted here). When H or W is not what
    `network_size` gives, the images are resized to it with cv2 INTER_LINEAR (as uint8) and the
    flow back to H × W with cv2 INTER_LINEAR, its x multiplied by W / width and its y by
    H / height. Returns (H, W, 2) float32 arrays in pixels, channel 0 = x, 1 = y. Runs on the
    network's device, without gradients.
    """
    height, width = firsts[0].shape[:2]
    network_height, network_width = network_size(height, width, scale)
    resized = (network_height, network_width) != (height, width)
    if resized:
        firsts, seconds = ([cv2.resize(image, (network_width, network_height),
                                       interpolation=cv2.INTER_LINEAR) for image in images]
                           for images in (firsts, seconds))
    pairs = np.stack([np.stack(firsts), np.stack(seconds)], axis=-1)  # (B, H, W, 3, 2)
    device = next(network.parameters()).device
    images = torch.from_numpy(pairs).to(device).permute(0, 3, 4, 1, 2).float()
    with torch.inference_mode():
        flows = network(images).permute(0, 2, 3, 1).float().cpu().numpy()
    if not resized:
        return list(flows)
    ratios = np.array([width / network_width, height / network_height], np.float32)
    return [cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) * ratios
            for flow in flows]


def infer_flow(network: FlowNet2C, first: np.ndarray, second: np.ndarray,
               scale: int = 1) -> np.ndarray:
    """AGSS-VOS's `Inference_flow.infer(first, second, scale)`: (H, W, 2) float32 flow in
    pixels from `first` to `second`, (H, W, 3) uint8 images (see `infer_flows`)."""
    return infer_flows(network, [first], [second], scale)[0]


def checkpoint_kind(document: object, path: Path) -> str:
    """Which of CHECKPOINT_FORMATS a loaded file is: "agssvos" (a dict with a "flow" entry),
    "nvidia" (a dict with a "state_dict" entry) or "state_dict" (names → tensors);
    CheckpointError naming the file when it is none, or both kinds of checkpoint at once."""
    if isinstance(document, dict):
        kinds = [kind for kind, entry in (("agssvos", "flow"), ("nvidia", "state_dict"))
                 if entry in document]
        if len(kinds) == 1:
            return kinds[0]
        if not kinds and document and all(isinstance(value, torch.Tensor)
                                          for value in document.values()):
            return "state_dict"
        found = ", ".join(map(repr, list(document)[:8])) or "nothing"
    else:
        found = f"a {type(document).__name__}"
    raise CheckpointError(f"{path}: not FlowNet2-C weights in a known format: expected "
                          f"AGSS-VOS's checkpoint (an entry 'flow'), NVIDIA's flownet2-pytorch "
                          f"checkpoint (an entry 'state_dict') or a state dict; found {found}")


def read_flownet2c_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The FlowNet2C state dict held by `path`: AGSS-VOS's checkpoint (its "flow" entry),
    NVIDIA's FlowNet2-C_checkpoint.pth.tar (its "state_dict" entry) or a bare state dict, read
    with torch.load(weights_only=True). Strict: CheckpointError (an InputError) naming the file
    and the key for a file of none of these kinds, a missing or unexpected key, or a tensor of
    another shape."""
    path = Path(path)
    kind = checkpoint_kind(load_checkpoint_file(path), path)
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation
        expected = FlowNet2C().state_dict()
    return read_official_state(path, CHECKPOINT_FORMATS[kind], expected)


def load_flownet2c(path: str | Path, device: str | torch.device = "cpu") -> FlowNet2C:
    """FlowNet2C with the weights of `path` (`read_flownet2c_state`), in eval mode on
    `device`."""
    network = FlowNet2C()
    network.load_state_dict(read_flownet2c_state(path))
    return network.eval().to(device)
