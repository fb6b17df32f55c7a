"""A SimTB-like fMRI simulator with known truth, and a BIDS writer.

The generative model, for subject ``s``, volume ``t`` and in-mask voxel ``v``::

    s_k(t)   sources: k < n_task are task-locked (HRF-convolved blocks of the BIDS
             events), the others are resting-state-like and non-stationary (mean and
             standard deviation redrawn in each segment of ``segment_length`` volumes);
             each run's mean and linear trend are removed from every source
             (``detrend_sources``; a run's offset and linear trend cannot be told apart
             from baseline and drift), then every source is standardised over all
             subjects and volumes.
    h(t)     = g(s(t)), the optional nonlinear mixing of the sources (the iVAE paper's
             injective MLP, ``mixing_layers`` layers; identity when 0), standardised.
    lin(v,t) = signal_scale * sum_k h_k(t) a_{s,k} M_{s,k}(v)      (percent signal change)
    y(v,t)   = saturation * tanh(lin / saturation)   (nonlinear voxel response)
               or lin                                 (``nonlinear=False``)
    Y(v,t)   = B(v) * (1 + (y + drift + noise) / 100)

``M_{s,k}`` are the subject's spatial maps: smooth Gaussian blobs (some bilateral, some
with a negative lobe), shifted and rescaled slightly per subject from the group template
``M_k`` (peak +1); ``a_{s,k}`` log-normal subject amplitudes; ``B`` a smooth baseline near
``baseline``; ``drift`` a slow scanner drift, per voxel
``drift_amplitude * (w_1(v) * ramp(t) + drift_curvature * w_2(v) * cos(2 pi t / T))``
with ``ramp`` going from -1/2 to +1/2 over the run and ``w_i`` smooth spatial fields
plus a global offset (unit standard deviation), so ``drift_amplitude`` is the typical
linear change over the run, in percent of baseline, and ``drift_curvature`` scales the
slow non-linear part that a linear detrend leaves; ``noise`` white Gaussian with standard
deviation ``std(y) / snr`` (``std`` over the subject's in-mask voxels and volumes).

Magnitudes. A source at one standard deviation changes its map's peak voxel by
``signal_scale`` % (2 %) before saturation at ``saturation`` % (1 %); summed over a
map that is a variance of about ``signal_scale**2 * sum(M**2)`` (%^2, 25-170 voxel-units
of ``M**2`` per map with the default blobs). The drift's residual after a linear detrend
is ``drift_amplitude * drift_curvature`` (0.1 %) per voxel, but it covers the whole brain,
so over ~4600 voxels its variance is comparable to one source's: it must stay this small
for the sources to be the leading principal components of detrended data (with the old
default, a two-cosine drift of 1 % everywhere, the drift's variance after detrending was
10-30 times the signal's, and temporal ICA on a group PCA recovered the sources with an
MCC of only about 0.4).

Recoverability with the defaults (8 subjects x 180 volumes, 12 sources, SNR 1;
prepare with linear detrending, one group-PCA basis of 12 dimensions; temporal FastICA;
time-course MCC, seeds 0-2): linear response and no mixing 0.90-0.93 (regressing the truth
on the reduced data reaches r >= 0.91 for every source); saturating response (the default)
0.76-0.83; ``mixing_layers=3`` about 0.35 (linear regression r 0.57-0.69).

The truth kept for evaluation (:class:`SimulationTruth`):

- ``maps`` (k, n_voxels): the group template maps ``M_k`` (peak +1), the target for
  spatial-map matching when there is no source mixing;
- ``effect_maps`` (k, n_voxels): the mean over subjects and volumes of
  ``d y(v, t) / d s_k(t)``, the voxel effect of each *source* through the mixing and the
  voxel nonlinearity (the counterpart of a decoder-Jacobian map; with neither mixing nor
  saturation it is proportional to ``maps`` up to subject variability);
- ``timecourses`` (n_subjects, n_volumes, k): the sources ``s``; ``mixed``: ``h``;
- ``segments`` (n_subjects, n_volumes): the segment index of each volume;
- ``task_regressors``, segment means and standard deviations, the mask and affine.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``params.seed``, so a
simulation is a deterministic function of its parameters.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage, stats

from .._version import __version__

__all__ = [
    "FMRISimParams",
    "FMRISimulation",
    "SimulationTruth",
    "simulate_fmri",
    "write_bids",
    "load_truth",
    "glover_hrf",
    "brain_mask",
    "mni_like_affine",
]

TASK_NAME = "sim"
_CONDITION_NAMES = ("visual", "motor", "auditory", "language", "memory", "attention",
                    "emotion", "reward")


# ----------------------------------------------------------------------------- parameters
@dataclass
class FMRISimParams:
    """Parameters of :func:`simulate_fmri` (all have defaults).

    Attributes
    ----------
    n_subjects : int, default 8
        Number of subjects (one run each).
    n_volumes : int, default 180
        Volumes per run.
    n_components : int, default 12
        Number of sources (task-locked plus resting).
    n_task : int, default 3
        How many of the sources are task-locked (one per task condition); the rest are
        non-stationary resting-state-like sources. 0 gives a resting-state simulation.
    tr : float, default 2.0
        Repetition time in seconds.
    segment_length : int, default 20
        Volumes per segment of the resting sources' non-stationarity: each segment has its
        own mean and standard deviation per source.
    segment_mean_range : float, default 1.0
        Segment means are drawn from U(-r, r) (in units of the innovation std).
    segment_std_range : tuple of float, default (0.25, 2.0)
        Segment standard deviations are log-uniform in this range.
    shared_segments : bool, default False
        When True every subject has the same segment means and standard deviations (so a
        window label shared across subjects is informative); otherwise they are drawn
        per subject.
    rest_ar : float, default 0.6
        AR(1) coefficient of the resting sources' innovations (temporal smoothness).
    block_duration : float, default 20.0
        Task block length in seconds.
    rest_between_blocks : tuple of float, default (10.0, 20.0)
        Uniform range of the fixation period between blocks, in seconds.
    task_noise : float, default 0.3
        Standard deviation of the spontaneous fluctuation added to each task source,
        relative to the regressor's standard deviation; block amplitudes also vary by
        ``task_noise / 2`` (relative).
    shape : tuple of int, default (24, 28, 24)
        Grid size. With 4 mm voxels the brain mask holds about 5000 voxels.
    voxel_size : float, default 4.0
        Isotropic voxel size in mm.
    blob_fwhm : tuple of float, default (14.0, 24.0)
        Range of the Gaussian blobs' FWHM, in mm.
    map_shift : float, default 2.0
        Standard deviation (mm) of the per-subject shift of each blob centre.
    amplitude_sd : float, default 0.2
        Standard deviation of the log of the per-subject, per-component amplitude.
    nonlinear : bool, default True
        Saturating (tanh) voxel response; False gives a linear response.
    saturation : float, default 1.0
        Percent signal change at which the response saturates (``nonlinear=True``).
    signal_scale : float, default 2.0
        Percent signal change at a map's peak for a source at one standard deviation,
        before saturation.
    mixing_layers : int, default 0
        Layers of the nonlinear mixing of the sources before they reach the maps:
        0 none, 1 a linear mixing, L >= 2 the iVAE paper's MLP (L - 1 leaky-tanh layers
        ``x <- tanh(x A) + slope x A`` then a linear one; A with U(-1, 1) entries, unit-norm
        columns, well conditioned).
    mixing_slope : float, default 0.1
        Slope of the leaky tanh.
    snr : float, default 1.0
        Signal-to-noise ratio: std of the (saturated) signal over the in-mask voxels and
        volumes, divided by the noise std.
    drift_amplitude : float, default 1.0
        Typical linear drift over the run, in percent of baseline (removed by a linear
        detrend).
    drift_curvature : float, default 0.1
        Amplitude of the drift's slow non-linear part (one cosine cycle over the run),
        relative to ``drift_amplitude``. This part survives a linear detrend and covers
        the whole brain; at 0.3 or more it dominates the leading principal components.
    detrend_sources : bool, default True
        Remove each run's mean and linear trend from the sources before standardising
        them (what a linear detrend of the data removes; without it the truth keeps a
        per-run offset and trend that no method can recover).
    baseline : float, default 1000.0
        Mean baseline intensity (modulated by a smooth spatial field, +-15 %).
    seed : int, default 0
        Seed of the random generator.
    """

    n_subjects: int = 8
    n_volumes: int = 180
    n_components: int = 12
    n_task: int = 3
    tr: float = 2.0
    segment_length: int = 20
    segment_mean_range: float = 1.0
    segment_std_range: tuple[float, float] = (0.25, 2.0)
    shared_segments: bool = False
    rest_ar: float = 0.6
    block_duration: float = 20.0
    rest_between_blocks: tuple[float, float] = (10.0, 20.0)
    task_noise: float = 0.3
    shape: tuple[int, int, int] = (24, 28, 24)
    voxel_size: float = 4.0
    blob_fwhm: tuple[float, float] = (14.0, 24.0)
    map_shift: float = 2.0
    amplitude_sd: float = 0.2
    nonlinear: bool = True
    saturation: float = 1.0
    signal_scale: float = 2.0
    mixing_layers: int = 0
    mixing_slope: float = 0.1
    snr: float = 1.0
    drift_amplitude: float = 1.0
    drift_curvature: float = 0.1
    baseline: float = 1000.0
    detrend_sources: bool = True
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid parameter."""
        if self.n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {self.n_subjects}")
        if self.n_volumes < 8:
            raise ValueError(f"n_volumes must be >= 8, got {self.n_volumes}")
        if self.n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components}")
        if not 0 <= self.n_task <= min(self.n_components, len(_CONDITION_NAMES)):
            raise ValueError(f"n_task must be in [0, min(n_components, {len(_CONDITION_NAMES)})],"
                             f" got {self.n_task} with n_components={self.n_components}")
        if self.tr <= 0:
            raise ValueError(f"tr must be > 0, got {self.tr}")
        if self.segment_length < 2:
            raise ValueError(f"segment_length must be >= 2, got {self.segment_length}")
        if len(self.shape) != 3 or min(self.shape) < 8:
            raise ValueError(f"shape must be 3 sizes >= 8, got {self.shape}")
        if self.voxel_size <= 0:
            raise ValueError(f"voxel_size must be > 0, got {self.voxel_size}")
        if self.mixing_layers < 0:
            raise ValueError(f"mixing_layers must be >= 0, got {self.mixing_layers}")
        if self.drift_amplitude < 0 or self.drift_curvature < 0:
            raise ValueError(f"drift_amplitude and drift_curvature must be >= 0, got "
                             f"{self.drift_amplitude} and {self.drift_curvature}")
        if self.snr <= 0:
            raise ValueError(f"snr must be > 0, got {self.snr}")
        if self.nonlinear and self.saturation <= 0:
            raise ValueError(f"saturation must be > 0, got {self.saturation}")
        lo, hi = self.segment_std_range
        if not 0 < lo <= hi:
            raise ValueError(f"segment_std_range must satisfy 0 < lo <= hi, got {self.segment_std_range}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FMRISimParams":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**kw)


# ----------------------------------------------------------------------------- results
@dataclass
class SimulationTruth:
    """Ground truth of a simulation (see the module docstring for the definitions).

    Attributes
    ----------
    maps : ndarray (n_components, n_voxels)
        Group template maps (peak +1).
    subject_maps : ndarray (n_subjects, n_components, n_voxels)
        Each subject's maps, amplitude included (``a_{s,k} M_{s,k}``).
    effect_maps : ndarray (n_components, n_voxels)
        Mean voxel effect (percent signal change per unit source) of each source.
    timecourses : ndarray (n_subjects, n_volumes, n_components)
        The sources.
    mixed : ndarray (n_subjects, n_volumes, n_components)
        The sources after the mixing MLP (equal to ``timecourses`` without mixing).
    segments : ndarray (n_subjects, n_volumes) int
        Segment index of each volume (0 .. n_segments - 1).
    segment_means, segment_stds : ndarray (n_subjects, n_segments, n_components)
        Segment parameters of the resting sources before detrending and standardisation
        (NaN for task sources).
    task_regressors : ndarray (n_subjects, n_volumes, n_task)
        HRF-convolved block regressors, one per condition.
    mask : ndarray bool, 3-D
    affine : ndarray (4, 4)
    tr : float
    component_names : list of str
        ``task-<condition>`` then ``rest-NN``.
    component_kinds : list of str
        ``"task"`` or ``"rest"``.
    conditions : list of str
        Task condition names (the ``trial_type`` values), in component order.
    subjects : list of str
        Subject labels (without ``sub-``).
    params : dict
        The :class:`FMRISimParams` as a dictionary.
    """

    maps: np.ndarray
    subject_maps: np.ndarray
    effect_maps: np.ndarray
    timecourses: np.ndarray
    mixed: np.ndarray
    segments: np.ndarray
    segment_means: np.ndarray
    segment_stds: np.ndarray
    task_regressors: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    tr: float
    component_names: list[str]
    component_kinds: list[str]
    conditions: list[str]
    subjects: list[str]
    params: dict[str, Any]

    @property
    def n_voxels(self) -> int:
        return int(self.mask.sum())

    def mask_img(self) -> nib.Nifti1Image:
        """The mask as a uint8 NIfTI image."""
        return _nifti(self.mask.astype(np.uint8), self.affine)

    def maps_img(self, which: str = "maps") -> nib.Nifti1Image:
        """``maps`` or ``effect_maps`` as a 4-D float32 image (one volume per component)."""
        return _nifti(_unmask(getattr(self, which), self.mask), self.affine)


@dataclass
class FMRISimulation:
    """Result of :func:`simulate_fmri`.

    Attributes
    ----------
    params : FMRISimParams
    data : list of ndarray (n_volumes, n_voxels) float32
        Each subject's in-mask voxel intensities (zero outside the mask in the images).
    events : list of pandas.DataFrame
        Each subject's events (``onset``, ``duration``, ``trial_type``).
    participants : pandas.DataFrame
        ``participant_id``, ``group``, ``site``.
    truth : SimulationTruth
    """

    params: FMRISimParams
    data: list[np.ndarray]
    events: list[pd.DataFrame]
    participants: pd.DataFrame
    truth: SimulationTruth

    @property
    def mask(self) -> np.ndarray:
        return self.truth.mask

    @property
    def affine(self) -> np.ndarray:
        return self.truth.affine

    @property
    def subjects(self) -> list[str]:
        return self.truth.subjects

    def img(self, index: int, dtype: str = "float32") -> nib.Nifti1Image:
        """Subject ``index``'s 4-D BOLD image (TR in the header), ``float32`` or ``int16``
        (rounded intensities, no scaling)."""
        data = _unmask(self.data[index], self.mask)  # (x, y, z, t)
        if dtype == "int16":
            data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
        elif dtype == "float32":
            data = data.astype(np.float32)
        else:
            raise ValueError(f"dtype must be 'float32' or 'int16', got {dtype!r}")
        return _nifti(data, self.affine, tr=self.params.tr)

    @property
    def imgs(self) -> list[nib.Nifti1Image]:
        """All subjects' images (float32)."""
        return [self.img(i) for i in range(len(self.data))]


# ----------------------------------------------------------------------------- geometry
def mni_like_affine(shape: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """RAS affine with isotropic ``voxel_size`` whose grid centre lies at about
    (0, -18, 10) mm, as in MNI space."""
    aff = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    centre = (np.asarray(shape, float) - 1) / 2
    aff[:3, 3] = np.array([0.0, -18.0, 10.0]) - voxel_size * centre
    return aff


def _smooth_field(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def brain_mask(shape: tuple[int, int, int], rng: np.random.Generator,
               irregularity: float = 0.06) -> np.ndarray:
    """A brain-shaped boolean mask: an ellipsoid (longer front to back) with a flattened
    base, a smooth random perturbation of its surface and a shallow midline fissure."""
    nx, ny, nz = shape
    ii, jj, kk = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    cx, cy, cz = (nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2 + 0.04 * nz
    ax, ay, az = 0.42 * nx, 0.44 * ny, 0.40 * nz
    x, y, z = (ii - cx) / ax, (jj - cy) / ay, (kk - cz) / az
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    r = r + irregularity * _smooth_field(shape, 2.5, rng)
    mask = r < 1.0
    mask &= z > -0.75 + 0.25 * np.clip(y, 0, None)                      # flattened base, orbitofrontal cut
    mask &= ~((np.abs(ii - cx) < 0.6) & (z > 0.55))                     # interhemispheric fissure
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def glover_hrf(dt: float, length: float = 32.0) -> np.ndarray:
    """Glover's canonical HRF sampled every ``dt`` seconds, normalised to unit sum
    (the same difference of gammas as ``nilearn.glm.first_level.glover_hrf``)."""
    t = np.linspace(0, length, int(np.rint(length / dt)))
    peak = stats.gamma.pdf(t, 6 / 0.9, loc=dt, scale=0.9)
    under = stats.gamma.pdf(t, 12 / 0.9, loc=dt, scale=0.9)
    h = peak - 0.35 * under
    return h / h.sum()


# ----------------------------------------------------------------------------- pieces
def _make_events(p: FMRISimParams, conditions: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Blocks of the task conditions in a random order per cycle, separated by fixation."""
    total = p.n_volumes * p.tr
    rows, t = [], float(rng.uniform(*p.rest_between_blocks))
    while conditions:
        for c in rng.permutation(len(conditions)):
            if t + p.block_duration > total:
                return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])
            rows.append((round(t, 3), p.block_duration, conditions[c]))
            t += p.block_duration + float(rng.uniform(*p.rest_between_blocks))
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def _task_regressors(events: pd.DataFrame, conditions: list[str], p: FMRISimParams,
                     rng: np.random.Generator) -> np.ndarray:
    """(n_volumes, n_conditions) HRF-convolved boxcars with block amplitudes varying by
    ``task_noise / 2``."""
    over = 16
    dt = p.tr / over
    n_fine = p.n_volumes * over + int(32 / dt)
    out = np.zeros((p.n_volumes, len(conditions)))
    hrf = glover_hrf(dt)
    for j, cond in enumerate(conditions):
        box = np.zeros(n_fine)
        for onset, dur in events.loc[events.trial_type == cond, ["onset", "duration"]].to_numpy():
            a = 1.0 + 0.5 * p.task_noise * rng.standard_normal()
            box[int(round(onset / dt)):int(round((onset + dur) / dt))] = a
        conv = np.convolve(box, hrf)[:n_fine]
        out[:, j] = conv[np.arange(p.n_volumes) * over]
    return out


def _detrend_linear(a: np.ndarray) -> np.ndarray:
    """Remove each run's mean and linear trend along axis 1 of ``a`` (S, T, K)."""
    T = a.shape[1]
    G = np.c_[np.ones(T), np.linspace(-1, 1, T)]  # (T, 2)
    coef = np.linalg.lstsq(G, a.transpose(1, 0, 2).reshape(T, -1), rcond=None)[0]
    fit = (G @ coef).reshape(T, a.shape[0], a.shape[2]).transpose(1, 0, 2)
    return a - fit


def _ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance stationary AR(1) series of length ``n``."""
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0]
    s = np.sqrt(1 - phi ** 2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + s * e[t]
    return x


def _blob_specs(p: FMRISimParams, mask: np.ndarray, coords: np.ndarray, affine: np.ndarray,
                rng: np.random.Generator) -> list[list[tuple[np.ndarray, float, float]]]:
    """For each component, a list of blobs ``(centre_mm, sigma_mm, amplitude)``.

    Main blob centres lie at least 2 voxels inside the mask and are spread out (greedy
    rejection with a decreasing minimum distance). Half of the components get a mirror
    blob in the other hemisphere, about 40 % a negative lobe."""
    depth = ndimage.distance_transform_edt(mask)
    inner = np.argwhere(depth >= 2.5)
    inner_mm = nib.affines.apply_affine(affine, inner)
    mid_x = affine[0, 3] + affine[0, 0] * (mask.shape[0] - 1) / 2
    fwhm_to_sigma = 1 / (2 * np.sqrt(2 * np.log(2)))
    centres: list[np.ndarray] = []
    min_dist = 0.45 * (np.prod(np.ptp(coords, axis=0)) / p.n_components) ** (1 / 3)
    for _ in range(p.n_components):
        for attempt in range(200):
            c = inner_mm[rng.integers(len(inner_mm))]
            d = min((np.linalg.norm(c - o) for o in centres), default=np.inf)
            if d >= min_dist * (0.97 ** attempt):
                centres.append(c)
                break
        else:  # pragma: no cover - tiny masks only
            centres.append(c)
    specs = []
    for c in centres:
        sigma = rng.uniform(*p.blob_fwhm) * fwhm_to_sigma
        blobs = [(c, sigma, 1.0)]
        if rng.random() < 0.5 and abs(c[0] - mid_x) > 1.5 * p.voxel_size:
            mirror = c.copy()
            mirror[0] = 2 * mid_x - c[0]
            blobs.append((mirror, sigma * rng.uniform(0.8, 1.1), rng.uniform(0.6, 1.0)))
        if rng.random() < 0.4:
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            neg = c + direction * rng.uniform(2.0, 3.0) * sigma
            # keep the lobe inside the brain: pull it towards the nearest inner voxel
            neg = inner_mm[np.argmin(np.linalg.norm(inner_mm - neg, axis=1))]
            blobs.append((neg, sigma * rng.uniform(0.7, 1.0), -rng.uniform(0.3, 0.6)))
        specs.append(blobs)
    return specs


def _render(blobs: list[tuple[np.ndarray, float, float]], coords: np.ndarray) -> np.ndarray:
    m = np.zeros(len(coords))
    for c, sigma, amp in blobs:
        m += amp * np.exp(-np.sum((coords - c) ** 2, axis=1) / (2 * sigma ** 2))
    return m / np.abs(m).max()


def _leaky_tanh(y: np.ndarray, slope: float) -> np.ndarray:
    return np.tanh(y) + slope * y


def _mixing_matrices(k: int, n_layers: int, rng: np.random.Generator) -> list[np.ndarray]:
    from .synthetic import well_conditioned_matrix
    return [well_conditioned_matrix(k, k, rng, n_draws_for_threshold=1000) for _ in range(n_layers)]


def _mix(S: np.ndarray, mats: list[np.ndarray], slope: float) -> tuple[np.ndarray, np.ndarray]:
    """Apply the MLP to ``S`` (n, k); return ``(H, J)`` with ``J[t, j, m] = dH_m / dS_j``."""
    n, k = S.shape
    X = S
    J = np.broadcast_to(np.eye(k), (n, k, k)).copy()
    for layer, A in enumerate(mats):
        pre = X @ A
        J = J @ A
        if layer < len(mats) - 1:
            X = _leaky_tanh(pre, slope)
            J = J * (1 - np.tanh(pre) ** 2 + slope)[:, None, :]
        else:
            X = pre
    return X, J


# ----------------------------------------------------------------------------- simulate
def simulate_fmri(params: FMRISimParams | None = None, **overrides: Any) -> FMRISimulation:
    """Simulate a multi-subject fMRI dataset with known sources and maps.

    Parameters
    ----------
    params : FMRISimParams, optional
        Parameters (defaults when None).
    **overrides
        Fields of :class:`FMRISimParams` overriding ``params``, e.g.
        ``simulate_fmri(n_subjects=2, seed=3)``.

    Returns
    -------
    FMRISimulation
        Voxel data, events, participants and the :class:`SimulationTruth`.
    """
    p = FMRISimParams() if params is None else params
    if overrides:
        p = FMRISimParams.from_dict({**p.to_dict(), **overrides})
    p.validate()
    rng = np.random.default_rng(p.seed)
    S, K, T = p.n_subjects, p.n_components, p.n_volumes
    shape = tuple(int(s) for s in p.shape)

    # geometry
    affine = mni_like_affine(shape, p.voxel_size)
    mask = brain_mask(shape, rng)
    vox = np.argwhere(mask)
    coords = nib.affines.apply_affine(affine, vox)
    V = len(coords)
    base_field = 1.0 + 0.15 * np.clip(_smooth_field(shape, 3.0, rng)[mask], -2, 2) / 2
    baseline = p.baseline * base_field

    # spatial maps: group template, then per-subject shifted / rescaled copies
    specs = _blob_specs(p, mask, coords, affine, rng)
    maps = np.stack([_render(b, coords) for b in specs])
    amps = np.exp(p.amplitude_sd * rng.standard_normal((S, K)))
    subject_maps = np.empty((S, K, V))
    for s in range(S):
        for k, blobs in enumerate(specs):
            moved = [(c + p.map_shift * rng.standard_normal(3), sig * np.exp(0.05 * rng.standard_normal()), a)
                     for c, sig, a in blobs]
            subject_maps[s, k] = amps[s, k] * _render(moved, coords)

    # time courses
    conditions = list(_CONDITION_NAMES[:p.n_task])
    names = [f"task-{c}" for c in conditions] + [f"rest-{i + 1:02d}" for i in range(K - p.n_task)]
    kinds = ["task"] * p.n_task + ["rest"] * (K - p.n_task)
    n_seg = int(np.ceil(T / p.segment_length))
    segments = np.tile(np.arange(T) // p.segment_length, (S, 1))
    seg_means = np.full((S, n_seg, K), np.nan)
    seg_stds = np.full((S, n_seg, K), np.nan)
    lo, hi = np.log(p.segment_std_range)
    shared_mean = rng.uniform(-p.segment_mean_range, p.segment_mean_range, (n_seg, K))
    shared_std = np.exp(rng.uniform(lo, hi, (n_seg, K)))
    events, regressors = [], np.zeros((S, T, p.n_task))
    sources = np.zeros((S, T, K))
    for s in range(S):
        ev = _make_events(p, conditions, rng)
        events.append(ev)
        if p.n_task:
            reg = _task_regressors(ev, conditions, p, rng)
            regressors[s] = reg
            sd = reg.std(axis=0, keepdims=True) + 1e-12
            sources[s, :, :p.n_task] = reg / sd + p.task_noise * np.stack(
                [_ar1(T, p.rest_ar, rng) for _ in range(p.n_task)], axis=1)
        for k in range(p.n_task, K):
            if p.shared_segments:
                mu, sd = shared_mean[:, k], shared_std[:, k]
            else:
                mu = rng.uniform(-p.segment_mean_range, p.segment_mean_range, n_seg)
                sd = np.exp(rng.uniform(lo, hi, n_seg))
            seg_means[s, :, k], seg_stds[s, :, k] = mu, sd
            seg = segments[s]
            sources[s, :, k] = mu[seg] + sd[seg] * _ar1(T, p.rest_ar, rng)
    if p.detrend_sources:
        sources = _detrend_linear(sources)
    flat = sources.reshape(S * T, K)
    sources = ((sources - flat.mean(0)) / flat.std(0)).astype(np.float64)

    # optional nonlinear mixing of the sources
    mats = _mixing_matrices(K, p.mixing_layers, rng) if p.mixing_layers else []
    if mats:
        H, J = _mix(sources.reshape(S * T, K), mats, p.mixing_slope)
        h_mean, h_std = H.mean(0), H.std(0)
        mixed = ((H - h_mean) / h_std).reshape(S, T, K)
        J = (J / h_std[None, None, :]).reshape(S, T, K, K)
    else:
        mixed, J = sources, None

    # voxel signals
    ramp = np.linspace(-0.5, 0.5, T)                        # linear drift, removed by detrending
    curve = np.cos(2 * np.pi * (np.arange(T) + 0.5) / T)   # one slow cycle, orthogonal to the ramp
    data, effect_sum = [], np.zeros((K, V))
    for s in range(S):
        AM = p.signal_scale * subject_maps[s]  # (K, V), amplitude included
        lin = mixed[s] @ AM  # (T, V)
        if p.nonlinear:
            th = np.tanh(lin / p.saturation)
            y, dy = p.saturation * th, 1 - th ** 2
        else:
            y, dy = lin, np.ones_like(lin)
        if J is None:
            effect_sum += AM * dy.mean(0)[None, :]
        else:
            for j in range(K):
                effect_sum[j] += np.mean(dy * (J[s, :, j, :] @ AM), axis=0)
        w_lin, w_curve = ((_smooth_field(shape, 4.0, rng)[mask] + rng.standard_normal()) / np.sqrt(2)
                          for _ in range(2))
        drift = p.drift_amplitude * (np.outer(ramp, w_lin) + p.drift_curvature * np.outer(curve, w_curve))
        sigma = y.std() / p.snr
        noise = sigma * rng.standard_normal((T, V))
        data.append((baseline * (1 + (y + drift + noise) / 100)).astype(np.float32))

    subjects = [f"{i + 1:02d}" for i in range(S)]
    participants = pd.DataFrame({
        "participant_id": [f"sub-{s}" for s in subjects],
        "group": ["control" if i % 2 == 0 else "patient" for i in range(S)],
        "site": ["A" if i < (S + 1) // 2 else "B" for i in range(S)],
    })
    truth = SimulationTruth(
        maps=maps.astype(np.float32),
        subject_maps=subject_maps.astype(np.float32),
        effect_maps=(effect_sum / S).astype(np.float32),
        timecourses=sources.astype(np.float32),
        mixed=np.asarray(mixed, dtype=np.float32),
        segments=segments.astype(np.int64),
        segment_means=seg_means,
        segment_stds=seg_stds,
        task_regressors=regressors.astype(np.float32),
        mask=mask,
        affine=affine,
        tr=float(p.tr),
        component_names=names,
        component_kinds=kinds,
        conditions=conditions,
        subjects=subjects,
        params=p.to_dict(),
    )
    return FMRISimulation(params=p, data=data, events=events, participants=participants, truth=truth)


# ----------------------------------------------------------------------------- writing
def _unmask(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, n_voxels) -> (x, y, z, n) float32; (n_voxels,) -> (x, y, z)."""
    values = np.asarray(values)
    if values.ndim == 1:
        out = np.zeros(mask.shape, np.float32)
        out[mask] = values
        return out
    out = np.zeros(mask.shape + (values.shape[0],), np.float32)
    out[mask] = values.T
    return out


def _nifti(data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=4)
    img.header.set_sform(affine, code=4)
    if tr is not None and data.ndim == 4:
        img.header.set_zooms(tuple(np.sqrt((affine[:3, :3] ** 2).sum(0))) + (float(tr),))
        img.header.set_xyzt_units("mm", "sec")
    else:
        img.header.set_xyzt_units("mm")
    return img


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_bids(sim: FMRISimulation, out_dir: str | os.PathLike, *, dtype: str = "float32",
               force: bool = False) -> Path:
    """Write ``sim`` as a BIDS dataset, with its truth under ``derivatives/truth/``.

    Layout::

        OUT/dataset_description.json, participants.tsv, participants.json, README,
            task-sim_bold.json
        OUT/sub-XX/func/sub-XX_task-sim_bold.nii.gz  (+ _bold.json, _events.tsv)
        OUT/derivatives/truth/dataset_description.json, truth.npz, params.json,
            truth_maps.nii.gz, truth_effects.nii.gz, truth_mask.nii.gz

    The dataset is written in a temporary folder next to ``out_dir`` and moved into place
    at the end, so a failure leaves nothing behind.

    Parameters
    ----------
    sim : FMRISimulation
    out_dir : path
        Dataset root; must not exist unless ``force``.
    dtype : {"float32", "int16"}
        Data type of the BOLD images (``int16``: rounded intensities, smaller files).
    force : bool
        Replace an existing ``out_dir`` that holds only files this function wrote
        (:func:`trends_ivae.io.export.atomic_output_dir`; others raise
        :class:`~trends_ivae.io.export.ForeignFilesError`, nothing is deleted).

    Returns
    -------
    Path
        ``out_dir``.
    """
    from ..io.export import atomic_output_dir   # numpy, nibabel, pandas: no torch

    out = Path(out_dir)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True to overwrite")
    if dtype not in ("float32", "int16"):
        raise ValueError(f"dtype must be 'float32' or 'int16', got {dtype!r}")
    with atomic_output_dir(out, force=force) as tmp:   # force: never over files it did not write
        _write_bids_tree(sim, tmp, dtype)
    return out


def _write_bids_tree(sim: FMRISimulation, root: Path, dtype: str) -> None:
    p, truth = sim.params, sim.truth
    _write_json(root / "dataset_description.json", {
        "Name": "trends_ivae simulated fMRI",
        "BIDSVersion": "1.8.0",
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [{"Name": "trends_ivae", "Version": __version__,
                         "Description": "trends_ivae.simulate.simulate_fmri"}],
    })
    (root / "README").write_text(
        "Simulated fMRI (trends_ivae.simulate.fmri). Ground truth in derivatives/truth/.\n"
        f"Parameters: {json.dumps(p.to_dict())}\n")
    sim.participants.to_csv(root / "participants.tsv", sep="\t", index=False)
    _write_json(root / "participants.json", {
        "group": {"Description": "simulated group label"},
        "site": {"Description": "simulated acquisition site"}})
    bold_meta = {"RepetitionTime": float(p.tr), "TaskName": TASK_NAME}
    _write_json(root / f"task-{TASK_NAME}_bold.json", bold_meta)
    for i, sub in enumerate(sim.subjects):
        func = root / f"sub-{sub}" / "func"
        func.mkdir(parents=True)
        stem = f"sub-{sub}_task-{TASK_NAME}"
        sim.img(i, dtype=dtype).to_filename(func / f"{stem}_bold.nii.gz")
        _write_json(func / f"{stem}_bold.json", bold_meta)
        sim.events[i].to_csv(func / f"{stem}_events.tsv", sep="\t", index=False, float_format="%.3f")
    tdir = root / "derivatives" / "truth"
    tdir.mkdir(parents=True)
    _write_json(tdir / "dataset_description.json", {
        "Name": "ground truth of the simulation", "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "trends_ivae", "Version": __version__}]})
    _write_json(tdir / "params.json", p.to_dict())
    _save_truth_npz(truth, tdir / "truth.npz")
    truth.maps_img("maps").to_filename(tdir / "truth_maps.nii.gz")
    truth.maps_img("effect_maps").to_filename(tdir / "truth_effects.nii.gz")
    truth.mask_img().to_filename(tdir / "truth_mask.nii.gz")


_ARRAYS = ("maps", "subject_maps", "effect_maps", "timecourses", "mixed", "segments",
           "segment_means", "segment_stds", "task_regressors", "mask", "affine")
_META = ("tr", "component_names", "component_kinds", "conditions", "subjects", "params")


def _save_truth_npz(truth: SimulationTruth, path: Path) -> None:
    arrays = {k: getattr(truth, k) for k in _ARRAYS}
    meta = json.dumps({k: getattr(truth, k) for k in _META})
    np.savez_compressed(path, meta=np.array(meta), **arrays)


def load_truth(path: str | os.PathLike) -> SimulationTruth:
    """Read the truth written by :func:`write_bids`.

    Parameters
    ----------
    path : path
        The BIDS root, its ``derivatives/truth`` folder, or the ``truth.npz`` file.

    Returns
    -------
    SimulationTruth
    """
    path = Path(path)
    for candidate in (path, path / "truth.npz", path / "derivatives" / "truth" / "truth.npz"):
        if candidate.is_file():
            break
    else:
        raise FileNotFoundError(f"no truth.npz at {path} (nor under derivatives/truth/)")
    with np.load(candidate, allow_pickle=False) as z:
        arrays = {k: z[k] for k in _ARRAYS}
        meta = json.loads(str(z["meta"]))
    arrays["mask"] = arrays["mask"].astype(bool)
    meta["tr"] = float(meta["tr"])
    return SimulationTruth(**arrays, **meta)
