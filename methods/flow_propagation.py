"""`flow-propagation`: a semi-supervised floor without learning. Each object's first mask is
carried from frame to frame along the optical flow (backward flow t→t−1, bilinear warping)."""

import numpy as np
import torch

from vosbench.datamodules.clips import LoadedVideo
from vosbench.flow.provider import FlowProvider
from vosbench.methods.base import VOSMethod
from vosbench.methods.warping import warp_backward


class FlowPropagation(VOSMethod):
    """Warp the first-appearance masks along the flow; nothing is trained.

    Args:
        flow: where the flow comes from (default: Farnebäck, computed as needed, no cache); its
            time counts as model time.
        kwargs: VOSMethod's arguments.
    """

    name = "flow-propagation"
    semi_supervised = True
    trainable = False

    def __init__(self, flow: FlowProvider | None = None, **kwargs):
        super().__init__(**kwargs)
        self.flow = flow or FlowProvider("farneback")

    @torch.inference_mode()
    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        references = video.video.reference_masks()
        objects = sorted({int(k) for labels in references.values()
                          for k in np.unique(labels) if k not in (0, 255)})
        num_objects = max(objects, default=0) or 1
        height, width = video.video.size
        probabilities = torch.zeros(len(video), num_objects, height, width)
        for t in range(len(video)):
            if t > 0:
                backward = torch.from_numpy(self.flow.backward(video.video, t))
                probabilities[t] = warp_backward(probabilities[t - 1:t],
                                                 backward.permute(2, 0, 1)[None])[0]
            if t in references:
                given = torch.from_numpy(references[t]).long()
                for obj in np.unique(references[t]).tolist():
                    if obj not in (0, 255):
                        probabilities[t, obj - 1] = (given == obj).float()
        return probabilities
