"""Analysis: what group-ICA users compute after the fit.

The room for the post-ICA analyses (network connectivity static and dynamic, spectra,
template matching and labels, denoising, group statistics). They work on the results a
fit writes or returns (maps, time courses, the prior's parameters) with numpy, scipy,
nilearn and scikit-learn, and never import torch. Empty for now.
"""
