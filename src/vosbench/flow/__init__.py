"""Optical flow: estimators (RAFT, Farneback), .flo files, a disk cache, colour coding."""

from vosbench.flow.colour import colour_code, flow_to_colour
from vosbench.flow.estimators import FarnebackEstimator, FlowEstimator, RaftEstimator
from vosbench.flow.flo import read_flo, write_flo
from vosbench.flow.provider import FlowProvider

__all__ = ["FarnebackEstimator", "FlowEstimator", "FlowProvider", "RaftEstimator",
           "colour_code", "flow_to_colour", "read_flo", "write_flo"]
