"""Estimators: the array-level models, numpy in and out, torch inside.

``base`` (:class:`SourceEstimator`: what the estimators share), ``ivae``
(:class:`IVAE`), ``flow`` (:class:`IFlow`), ``model_file`` (saving and loading, the
format registry), ``aux_codes`` (u coded as level indices), ``disk_rows`` (rows of an
on-disk X), ``threads``, ``consensus`` (matching restarts), ``linear_start`` (linear ICA
starts), ``distributed`` (the torchrun process group) and ``nn/`` (the torch networks and
their training loops, which never import nibabel or nilearn).

The package imports its concrete estimators, which enter their model-file formats in
the registry of ``model_file`` as their classes are defined: whatever module of the
package is imported first, ``SourceEstimator.load`` then reads every kind of model file.
"""
from .base import SourceEstimator
from .flow import IFlow
from .ivae import IVAE

__all__ = ["SourceEstimator", "IVAE", "IFlow"]
