"""Recurrent layers shared by the methods: a convolutional GRU (AGNN's node-state update, Eq. 10;
also a building block of recurrent decoders)."""

import torch
from torch import nn


class ConvGRU(nn.Module):
    """A GRU whose gates and candidate state are convolutions, so that state and input keep their
    spatial layout: `h' = ConvGRU(h, x)`.

        z = σ(W_z * [x, h]),  r = σ(W_r * [x, h]),  h̃ = tanh(W * [x, r ⊙ h]),
        h' = (1 − z) ⊙ h + z ⊙ h̃

    Args:
        channels: C, the channels of the state h.
        input_channels: channels of the input x; default C.
        kernel_size: of every convolution (odd; 1 in AGNN, which keeps positions independent).
    """

    def __init__(self, channels: int, input_channels: int | None = None, kernel_size: int = 1):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvGRU kernel_size must be odd (same-size padding), got "
                             f"{kernel_size}")
        input_channels = channels if input_channels is None else input_channels
        padding = kernel_size // 2
        self.gates = nn.Conv2d(input_channels + channels, 2 * channels, kernel_size,
                               padding=padding)
        self.candidate = nn.Conv2d(input_channels + channels, channels, kernel_size,
                                   padding=padding)

    def forward(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """state (B, C, H, W), inputs (B, C_in, H, W) → the new state (B, C, H, W)."""
        update, reset = torch.sigmoid(self.gates(torch.cat([inputs, state], 1))).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([inputs, reset * state], 1)))
        return (1 - update) * state + update * candidate
