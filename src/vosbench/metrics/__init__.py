"""The J/F/T metrics engine: plain NumPy/OpenCV/SciPy, identical to the official DAVIS toolkits.

Arrays in, per-frame values and statistics out:
- `jaccard`, `boundary_f`: J and F of one object in one frame;
- `statistics`: Mean, Recall, Decay of per-frame values;
- `pair_cost`, `sequence_stability`: T of consecutive masks;
- `get_protocol` + `score_sequence`: one sequence under a benchmark protocol;
- `score_folders`: folders of label PNGs (what `vosbench eval --gt-root` runs);
- `dataset_protocol` + `score_dataset`: label PNGs against a dataset's ground truth, read in its
  native format (what `vosbench eval --dataset` runs).
"""

from vosbench.metrics.boundary import boundary_f
from vosbench.metrics.datasets import dataset_protocol, score_dataset
from vosbench.metrics.folders import score_folders
from vosbench.metrics.protocols import PROTOCOLS, get_protocol, score_sequence
from vosbench.metrics.region import jaccard
from vosbench.metrics.statistics import statistics
from vosbench.metrics.temporal import pair_cost, sequence_stability

__all__ = ["PROTOCOLS", "boundary_f", "dataset_protocol", "get_protocol", "jaccard", "pair_cost",
           "score_dataset", "score_folders", "score_sequence", "sequence_stability", "statistics"]
