"""Time-course post-processing before connectivity and spectra (GIFT's defaults).

:class:`PostprocessSettings` is the one description of the steps, in the order they run
on each run at its own repetition time (TR):

1. **confound regression** (``regress_confounds``): the run's confound columns (with an
   intercept) are regressed out by least squares, when the caller gives them;
2. **detrend** (``detrend``): a polynomial of this degree in time (0: the mean only; GIFT's
   default 3, cubic) is removed by least squares (Legendre basis, well conditioned);
3. **despike** (``despike``): as GIFT's ``icatb_despike_tc`` and AFNI's 3dDespike, a
   value whose residual from the detrended fit exceeds ``c1 = 2.5`` scaled median
   absolute deviations is squashed smoothly towards ``c2 = 3``:
   ``r -> sign(r) (c1 + (c2 - c1) tanh((|r| - c1) / (c2 - c1)))``;
4. **low-pass** (``low_pass``, 0.15 Hz): a zero-phase Butterworth filter
   (``scipy.signal.butter`` of order ``filter_order``, ``sosfiltfilt``) at the run's
   own TR. A cut-off at or above the run's Nyquist frequency is skipped (nothing to
   remove), and the result says so.

Connectivity uses all four steps; spectra use the same settings without the low-pass
filter (filtering would remove the band that fALFF compares against). Runs with
different TRs are each filtered at their own TR.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

__all__ = ["PostprocessSettings", "postprocess", "check_timecourses"]

#: despiking thresholds in scaled MADs (GIFT, AFNI 3dDespike)
DESPIKE_C1, DESPIKE_C2 = 2.5, 3.0


@dataclass(frozen=True)
class PostprocessSettings:
    """How time courses are cleaned before FNC, dFNC and spectra (GIFT's defaults).

    Attributes
    ----------
    detrend : int or None, default=3
        Degree of the polynomial removed from each run (0: the mean; 1: linear; 3:
        cubic, GIFT's default). None: nothing is removed (not even the mean).
    despike : bool, default=True
        Squash spikes beyond 2.5 scaled MADs of the detrended residual (GIFT,
        AFNI 3dDespike).
    low_pass : float or None, default=0.15
        Butterworth low-pass cut-off in Hz, applied at each run's own TR (skipped when
        at or above the Nyquist frequency). None: no filter.
    filter_order : int, default=5
        Order of the Butterworth filter (zero phase: applied forward and backward).
    regress_confounds : bool, default=False
        Regress out the confound columns the fit used (read from each run's confounds
        table when the caller passes them).
    """

    detrend: int | None = 3
    despike: bool = True
    low_pass: float | None = 0.15
    filter_order: int = 5
    regress_confounds: bool = False

    def __post_init__(self) -> None:
        if self.detrend is not None and int(self.detrend) < 0:
            raise ValueError(f"detrend must be None or a degree >= 0, got {self.detrend}")
        if self.low_pass is not None and not float(self.low_pass) > 0:
            raise ValueError(f"low_pass must be None or > 0 Hz, got {self.low_pass}")
        if int(self.filter_order) < 1:
            raise ValueError(f"filter_order must be >= 1, got {self.filter_order}")

    def for_spectra(self) -> "PostprocessSettings":
        """The same settings without the low-pass filter (what spectra use)."""
        return replace(self, low_pass=None)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-friendly values (written in the sidecars)."""
        return asdict(self)


def check_timecourses(tc: Any, name: str = "time courses") -> np.ndarray:
    """``tc`` as a finite (n_volumes, n_components) float array, or ValueError naming ``name``."""
    arr = np.asarray(tc, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name}: expected (n_volumes >= 2, n_components) values, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{name}: {int(bad.sum())} value(s) are NaN or infinite (first at volume {row + 1}, "
                         f"column {col + 1})")
    return arr


def _polynomial(n: int, degree: int) -> np.ndarray:
    """(n, degree + 1) Legendre polynomials on [-1, 1]."""
    return np.polynomial.legendre.legvander(np.linspace(-1.0, 1.0, n), degree)


def _despike(tc: np.ndarray, degree: int) -> np.ndarray:
    """Spikes squashed towards ``c2`` scaled MADs of the residual from a polynomial fit."""
    basis = _polynomial(len(tc), max(degree, 0))
    fit = basis @ np.linalg.lstsq(basis, tc, rcond=None)[0]
    resid = tc - fit
    mad = np.median(np.abs(resid - np.median(resid, axis=0)), axis=0) * 1.4826
    mad[mad == 0] = 1.0
    r = resid / mad
    big = np.abs(r) > DESPIKE_C1
    width = DESPIKE_C2 - DESPIKE_C1
    squashed = np.sign(r) * (DESPIKE_C1 + width * np.tanh((np.abs(r) - DESPIKE_C1) / width))
    return np.where(big, fit + squashed * mad, tc)


def postprocess(tc: Any, tr: float, settings: PostprocessSettings | None = None, *,
                confounds: Any = None, name: str = "time courses") -> np.ndarray:
    """Post-process one run's time courses (see the module's docstring for the steps).

    Parameters
    ----------
    tc : array-like of shape (n_volumes, n_components)
        One run's time courses.
    tr : float
        The run's repetition time in seconds.
    settings : PostprocessSettings, optional
        Default: ``PostprocessSettings()`` (GIFT's defaults).
    confounds : array-like of shape (n_volumes, n_confounds), optional
        Regressed out when ``settings.regress_confounds``.
    name : str
        How error messages name the run (a file name).

    Returns
    -------
    ndarray of shape (n_volumes, n_components)

    Raises
    ------
    ValueError
        NaN or infinite values, a missing or non-positive TR, confounds of another
        length; the message starts with ``name``.
    """
    from scipy import signal

    s = settings or PostprocessSettings()
    out = check_timecourses(tc, name)
    if tr is None or not np.isfinite(float(tr)) or float(tr) <= 0:
        raise ValueError(f"{name}: the repetition time is missing or not positive ({tr!r}); give the TR")
    n = len(out)
    if s.regress_confounds and confounds is not None:
        conf = check_timecourses(confounds, f"{name} (confounds)")
        if len(conf) != n:
            raise ValueError(f"{name}: {len(conf)} confound rows for {n} volumes")
        design = np.column_stack([np.ones(n), conf])
        out = out - design @ np.linalg.lstsq(design, out, rcond=None)[0]
    if s.despike:
        out = _despike(out, 0 if s.detrend is None else int(s.detrend))
    if s.detrend is not None:
        basis = _polynomial(n, int(s.detrend))
        out = out - basis @ np.linalg.lstsq(basis, out, rcond=None)[0]
    nyquist = 0.5 / float(tr)
    if s.low_pass is not None and float(s.low_pass) < nyquist:
        sos = signal.butter(int(s.filter_order), float(s.low_pass), btype="lowpass", fs=1.0 / float(tr),
                            output="sos")
        padlen = min(n - 1, 3 * (2 * len(sos) + 1))
        out = signal.sosfiltfilt(sos, out, axis=0, padlen=padlen)
    return out
