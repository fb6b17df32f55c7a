"""Parameters of the fMRI simulator (:func:`trends_ivae.simulate.fmri.simulate_fmri`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["FMRISimParams", "TASK_NAME", "CONDITION_NAMES"]

#: the BIDS task label of the simulated runs
TASK_NAME = "sim"
CONDITION_NAMES = ("visual", "motor", "auditory", "language", "memory", "attention",
                    "emotion", "reward")


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
    coupling_block : int, default 0
        Volumes per block of the two alternating coupling states (0: no coupling); see
        :mod:`trends_ivae.simulate.coupling`.
    coupling : tuple of (float, float), default ((0.5, -0.5), (0.4, 0.0))
        Per coupled pair of resting sources (``n_task + 2 i`` and ``n_task + 2 i + 1``),
        their correlation in state 1 and in state 2 (used when ``coupling_block > 0``).
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
    coupling_block: int = 0
    coupling: tuple = ((0.5, -0.5), (0.4, 0.0))
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid parameter."""
        if self.n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {self.n_subjects}")
        if self.n_volumes < 8:
            raise ValueError(f"n_volumes must be >= 8, got {self.n_volumes}")
        if self.n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components}")
        if not 0 <= self.n_task <= min(self.n_components, len(CONDITION_NAMES)):
            raise ValueError(f"n_task must be in [0, min(n_components, {len(CONDITION_NAMES)})],"
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
        if self.coupling_block < 0:
            raise ValueError(f"coupling_block must be >= 0, got {self.coupling_block}")
        if self.coupling_block:
            from .coupling import coupled_pairs

            coupled_pairs(self)
        lo, hi = self.segment_std_range
        if not 0 < lo <= hi:
            raise ValueError(f"segment_std_range must satisfy 0 < lo <= hi, got {self.segment_std_range}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary (tuples as lists)."""
        return {k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FMRISimParams":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
              for k, v in d.items() if k in names}
        return cls(**kw)
