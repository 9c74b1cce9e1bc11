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
        separate_gates: W_z and W_r as two convolutions `update_gate` and `reset_gate` (the
            layout of the AGNN authors' deeplab/units/ConvGRU2.py, whose `out_gate` is
            `candidate` here) instead of one convolution `gates` to 2C channels (z, then r): the
            same function, other parameter names.
    """

    def __init__(self, channels: int, input_channels: int | None = None, kernel_size: int = 1,
                 separate_gates: bool = False):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvGRU kernel_size must be odd (same-size padding), got "
                             f"{kernel_size}")
        input_channels = channels if input_channels is None else input_channels
        padding = kernel_size // 2

        def gate(out_channels: int) -> nn.Conv2d:
            return nn.Conv2d(input_channels + channels, out_channels, kernel_size,
                             padding=padding)

        if separate_gates:
            self.gates = None
            self.reset_gate, self.update_gate = gate(channels), gate(channels)
        else:
            self.gates = gate(2 * channels)
        self.candidate = gate(channels)

    def forward(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """state (B, C, H, W), inputs (B, C_in, H, W) → the new state (B, C, H, W)."""
        stacked = torch.cat([inputs, state], 1)
        if self.gates is None:
            update = torch.sigmoid(self.update_gate(stacked))
            reset = torch.sigmoid(self.reset_gate(stacked))
        else:
            update, reset = torch.sigmoid(self.gates(stacked)).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([inputs, reset * state], 1)))
        return (1 - update) * state + update * candidate
