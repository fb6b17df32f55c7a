"""Group: fMRI images to the estimators and back to the brain.

``group_ivae`` (:class:`GroupIVAE`: images in, maps and time courses out), ``training``
(the estimator a group fit trains), ``backprojection`` (time courses, regression maps,
z-scores, sign and order), ``fit_folder`` (a fit folder read back), ``sampling`` (fMRI
generated from a fit) and ``nonlinearity`` (the held-out test against the linear
counterpart).
"""
