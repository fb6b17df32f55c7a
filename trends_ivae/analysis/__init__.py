"""Analysis: what group-ICA users compute after the fit.

Post-ICA analyses on the results a fit writes or returns (maps, time courses, the prior's
parameters), with numpy, scipy, nilearn and scikit-learn; never torch. On arrays (time
courses per run, a TR per run), each returning a result object:

- :mod:`.postprocess`: :class:`PostprocessSettings` (detrend, despike, low-pass 0.15 Hz,
  confounds; GIFT's defaults) and :func:`postprocess`;
- :mod:`.connectivity`: static FNC (:func:`static_fnc`, Fisher z per subject, group mean
  and SD);
- :mod:`.dynamic`: dynamic FNC (:func:`dynamic_fnc`: tapered windows, graphical lasso,
  k-means states, fraction of time, dwell time, transitions);
- :mod:`.spectra`: multitaper spectra, dynamic range and fALFF (:func:`spectra`);
- :mod:`.prior_dynamics`: the fitted prior p(z|u) per volume (:func:`prior_dynamics`);
- :mod:`.run`: all of them on a group's time courses (:func:`analyze_timecourses`), and
  the end of ``fit`` (:func:`analyze_into_stage`);
- :mod:`.files`: the files (``docs/analysis.md``).
"""
from .connectivity import StaticFNC, static_fnc
from .dynamic import DFNCSettings, DynamicFNC, dynamic_fnc
from .postprocess import PostprocessSettings, postprocess
from .prior_dynamics import PriorDynamics, prior_dynamics
from .spectra import Spectra, SpectraSettings, spectra

__all__ = ["PostprocessSettings", "postprocess", "StaticFNC", "static_fnc", "DFNCSettings", "DynamicFNC",
           "dynamic_fnc", "Spectra", "SpectraSettings", "spectra", "PriorDynamics", "prior_dynamics"]
