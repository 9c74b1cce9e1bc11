"""Per-object statistics of a per-frame measure: Mean, Recall and Decay (DAVIS definitions)."""

import warnings

import numpy as np

NUM_DECAY_BINS = 4
RECALL_THRESHOLD = 0.5


def decay_bin_edges(length: int) -> np.ndarray:
    """Frame indices that delimit the four decay bins: round(linspace(1, L, 5) + 1e-10) − 1.

    Neighbouring bins share their edge frame. L=48 → [0, 12, 24, 35, 47]; L=10 → [0, 2, 5, 7, 9].
    The official toolkits cast these indices to uint8, which wraps around for L ≥ 256 and gives
    wrong bins (or NaN); here they stay int64, which is identical for L ≤ 255 and right beyond.
    """
    return (np.round(np.linspace(1, length, NUM_DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)


def statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of the per-frame values of one object over its evaluated frames.

    Mean = nanmean; Recall = fraction of frames with a value strictly above 0.5 (NaN counts as a
    miss); Decay = nanmean of the first quarter − nanmean of the last quarter. The NumPy calls are
    those of the official toolkit, so the results are bit-identical to it.
    """
    values = np.asarray(values, dtype=np.float64)
    edges = decay_bin_edges(len(values))
    bins = [values[edges[i]:edges[i + 1] + 1] for i in range(NUM_DECAY_BINS)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices give NaN
        mean = np.nanmean(values)
        recall = np.nanmean(values > RECALL_THRESHOLD)
        decay = np.nanmean(bins[0]) - np.nanmean(bins[-1])
    return float(mean), float(recall), float(decay)


def nanmean(values) -> float:
    """Mean over the non-NaN values; NaN (without a warning) when there is none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return float(np.nanmean(np.asarray(values, dtype=np.float64)))
