"""vosbench: a PyTorch Lightning benchmark suite for video object segmentation.

Importing this package is cheap: the metrics engine and `vosbench eval` need only NumPy, OpenCV,
SciPy and Pillow; torch and Lightning are imported by the subcommands that train or predict.
"""

__version__ = "0.1.0"
