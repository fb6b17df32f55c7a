"""Export: a fit's results as files.

``derivatives`` (the BIDS-derivatives maps, time courses and sidecars), ``layouts``
(MELODIC- and GIFT-style folders from the same arrays), ``outputs`` (dataset_description,
the manifest of written files, the atomic output folder) and ``naming``. Never imports
torch: the model file is written by the estimators.
"""
