"""Synthetic data with known truth.

- :mod:`.synthetic`: the iVAE paper's generator (non-stationary sources, MLP mixing).
- :mod:`.fmri`: a SimTB-like fMRI simulator writing BIDS datasets with their truth.
"""
from .fmri import *  # noqa: F401,F403
from .fmri import __all__ as _fmri_all
from .synthetic import SegmentRanges, SyntheticData, make_segment_data, mixing_mlp, well_conditioned_matrix

__all__ = ["SegmentRanges", "SyntheticData", "make_segment_data", "mixing_mlp", "well_conditioned_matrix", *_fmri_all]
