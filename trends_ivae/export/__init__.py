"""Export: a fit's results as files.

``fit_outputs`` (:class:`~trends_ivae.export.fit_outputs.FitOutputs`, the arrays every
writer takes), ``derivatives`` (the BIDS-derivatives maps, time courses and sidecars),
``layouts`` (MELODIC- and GIFT-style folders from the same arrays), ``space`` (the input's
qform/sform codes on the written images), ``outputs`` (dataset_description, the manifest
of written files, the atomic output folder in which a fit's files are staged) and
``naming`` (file names, the model file's among them). Never imports torch: the model file
is written into the staged folder by the group layer
(:func:`trends_ivae.group.fit_folder.write_model_folder`).
"""
