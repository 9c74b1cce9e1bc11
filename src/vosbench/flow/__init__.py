"""Optical flow: estimators (RAFT, FlowNet2-C, Farneback), .flo files, a disk cache, colour
coding."""

from vosbench.flow.colour import colour_code, flow_to_colour
from vosbench.flow.estimators import (
    FarnebackEstimator,
    FlowEstimator,
    FlowNet2CEstimator,
    RaftEstimator,
)
from vosbench.flow.flo import read_flo, write_flo
from vosbench.flow.provider import FlowProvider

__all__ = ["FarnebackEstimator", "FlowEstimator", "FlowNet2CEstimator", "FlowProvider",
           "RaftEstimator", "colour_code", "flow_to_colour", "read_flo", "write_flo"]
