"""Multitaper power spectra of component time courses and GIFT's spectral summary.

Each run's time courses are post-processed without the low-pass filter
(:meth:`PostprocessSettings.for_spectra`), then their power spectral density is the mean
of ``scipy.signal.periodogram`` over the Slepian tapers
``scipy.signal.windows.dpss(n_volumes, NW=time_bandwidth, Kmax=n_tapers)`` (GIFT: time-
bandwidth 3, 5 tapers), in units² per Hz. Spectra are put on one common frequency grid
(linear interpolation): from 0 to the lowest Nyquist frequency of the runs, in steps of
the coarsest frequency resolution ``1 / (n_volumes TR)``; runs that all share a length
and a TR keep their own frequencies exactly. A subject's spectrum is the mean over its
runs.

The summary per component and subject (GIFT's ``icatb_get_spec_stats``), on the
spectrum normalised to unit sum over the grid (a fraction of the power per frequency
bin, so subjects with different signal scales compare):

- **dynamic range**: the peak power minus the minimum power at frequencies at or above
  the peak;
- **fALFF**: the power (trapezoid integral) below ``low_band`` (0.10 Hz) over the power
  in ``high_band`` (0.15 to 0.25 Hz). NaN when the grid has no frequency in the high
  band (a TR above 3.3 s).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .connectivity import as_trs, subject_order
from .postprocess import PostprocessSettings, postprocess

__all__ = ["SpectraSettings", "Spectra", "multitaper_psd", "frequency_grid", "spectral_summary", "spectra"]


@dataclass(frozen=True)
class SpectraSettings:
    """How spectra are estimated and summarised.

    Attributes
    ----------
    time_bandwidth : float, default=3.0
        The tapers' time-half-bandwidth product NW (GIFT: 3).
    n_tapers : int, default=5
        Slepian tapers averaged (GIFT: 5; at most ``2 NW``, and fewer than the volumes).
    low_band : float, default=0.10
        fALFF's low band: frequencies below this (Hz).
    high_band : tuple of float, default=(0.15, 0.25)
        fALFF's reference band (Hz, both ends included).
    """

    time_bandwidth: float = 3.0
    n_tapers: int = 5
    low_band: float = 0.10
    high_band: tuple = (0.15, 0.25)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly values (written in the sidecars)."""
        return {**asdict(self), "high_band": list(self.high_band)}


@dataclass
class Spectra:
    """Spectra of a group of runs on one frequency grid, and their summary.

    Attributes
    ----------
    kind : str
        Which time courses (``"model"`` or ``"dualreg"``).
    names : list of str
        Component names.
    subjects : list of str
        Subject labels, in the order of ``power``.
    frequencies : ndarray of shape (n_freq,)
        The common grid, Hz.
    power : ndarray of shape (n_subjects, n_freq, k)
        Power spectral density (units² / Hz), runs of a subject averaged.
    dynamic_range, falff : ndarray of shape (n_subjects, k)
        The summary (module docstring).
    settings : SpectraSettings
    postprocess : PostprocessSettings
        What ran before (without the low-pass filter).
    """

    kind: str
    names: list
    subjects: list
    frequencies: np.ndarray
    power: np.ndarray
    dynamic_range: np.ndarray
    falff: np.ndarray
    settings: SpectraSettings = field(default_factory=SpectraSettings)
    postprocess: PostprocessSettings = field(default_factory=PostprocessSettings)


def multitaper_psd(tc: np.ndarray, tr: float, settings: SpectraSettings | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies (n_freq,), PSD (n_freq, k)) of one run: the mean over the tapers of
    ``scipy.signal.periodogram`` (density scaling, no detrending: done before)."""
    from scipy import signal

    s = settings or SpectraSettings()
    x = np.asarray(tc, np.float64)
    n = len(x)
    n_tapers = int(min(s.n_tapers, max(1, int(2 * s.time_bandwidth) - 1), n - 1))
    tapers = signal.windows.dpss(n, s.time_bandwidth, Kmax=n_tapers)
    psd = None
    for taper in tapers:
        f, p = signal.periodogram(x, fs=1.0 / tr, window=taper, detrend=False, scaling="density", axis=0)
        psd = p if psd is None else psd + p
    return f, psd / len(tapers)


def frequency_grid(n_volumes: Sequence[int], trs: Sequence[float]) -> np.ndarray:
    """The common grid: 0 to the lowest Nyquist frequency, in steps of the coarsest
    resolution ``1 / (n_volumes TR)`` of the runs."""
    nyquist = min(0.5 / float(t) for t in trs)
    step = max(1.0 / (int(n) * float(t)) for n, t in zip(n_volumes, trs))
    n_steps = int(np.floor(nyquist / step + 1e-9))
    return np.arange(n_steps + 1) * step


def spectral_summary(frequencies: np.ndarray, power: np.ndarray, settings: SpectraSettings | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(dynamic range, fALFF), each (k,), of one spectrum (n_freq, k) (module docstring)."""
    s = settings or SpectraSettings()
    f = np.asarray(frequencies, float)
    p = np.asarray(power, float)
    p = p / np.where(p.sum(axis=0) > 0, p.sum(axis=0), 1.0)
    k = p.shape[1]
    peak = np.argmax(p, axis=0)
    dyn = np.array([p[peak[j], j] - p[peak[j]:, j].min() for j in range(k)])
    low = f < s.low_band
    high = (f >= s.high_band[0]) & (f <= s.high_band[1])
    if low.sum() < 2 or high.sum() < 2:
        return dyn, np.full(k, np.nan)
    falff = np.trapezoid(p[low], f[low], axis=0) / np.trapezoid(p[high], f[high], axis=0)
    return dyn, falff


def spectra(timecourses: Sequence[Any], subjects: Sequence[Any], tr: float | Sequence[float], *,
            settings: SpectraSettings | None = None, postprocess_settings: PostprocessSettings | None = None,
            names: Sequence[str] | None = None, kind: str = "model",
            run_names: Sequence[str] | None = None) -> Spectra:
    """Multitaper spectra and their summary per subject and component.

    Parameters
    ----------
    timecourses : sequence of array-like (n_volumes, k)
        Each run's time courses.
    subjects : sequence of str
        The subject of each run.
    tr : float or sequence of float
        One TR for all runs or one per run (seconds).
    settings : SpectraSettings, optional
    postprocess_settings : PostprocessSettings, optional
        Applied first, without its low-pass filter.
    names : sequence of str, optional
        Component names (default ``ic01, ...``).
    kind : str, default="model"
        Which time courses these are.
    run_names : sequence of str, optional
        How error messages name the runs.

    Returns
    -------
    Spectra

    Raises
    ------
    ValueError
        NaN in a run, a missing TR, or a run too short for the tapers (the message names it).
    """
    s = settings or SpectraSettings()
    pp = (postprocess_settings or PostprocessSettings()).for_spectra()
    n = len(timecourses)
    trs = as_trs(tr, n)
    labels = list(run_names) if run_names is not None else [f"run {i + 1}" for i in range(n)]
    clean = [postprocess(t, trs[i], pp, name=labels[i]) for i, t in enumerate(timecourses)]
    for c, label in zip(clean, labels):
        if len(c) < 2 * s.time_bandwidth + 2:
            raise ValueError(f"{label}: {len(c)} volumes are too few for multitaper spectra "
                             f"(time-bandwidth {s.time_bandwidth})")
    grid = frequency_grid([len(c) for c in clean], trs)
    per_run = []
    for c, t in zip(clean, trs):
        f, p = multitaper_psd(c, float(t), s)
        per_run.append(np.column_stack([np.interp(grid, f, p[:, j]) for j in range(p.shape[1])]))
    distinct, groups = subject_order(subjects)
    power = np.stack([np.mean([per_run[i] for i in idx], axis=0) for idx in groups])
    summary = [spectral_summary(grid, pw, s) for pw in power]
    k = power.shape[2]
    return Spectra(kind=kind, names=list(names) if names is not None else [f"ic{i + 1:02d}" for i in range(k)],
                   subjects=distinct, frequencies=grid, power=power,
                   dynamic_range=np.stack([d for d, _ in summary]), falff=np.stack([a for _, a in summary]),
                   settings=s, postprocess=pp)
