"""``GroupIVAE``: fMRI images in, component maps and time courses out.

The image-level estimator in the nilearn / scikit-learn style. ``fit`` runs the prepare
stage (:func:`trends_ivae.reduction.prepare`: mask, clean, one group spatial basis, u),
fits the array-level estimator on the reduced data and maps the result back to the
brain. Temporal mode (default): time courses are the posterior means z(t); group maps
the subjects' regression maps on them, averaged and z-scored; effect maps the decoder's
mean Jacobian through the basis (:mod:`.backprojection`). Spatial mode: the maps are the
sources and the time courses come from back-reconstruction (:mod:`.spatial`). Either
way each map's strongest peak is positive and the components are sorted by explained
variance, in the same order in maps, time courses and ``estimator_``.

Elsewhere: the estimator's construction (:mod:`.training`), subject maps on demand
(:class:`~.backprojection.SubjectMaps`), inputs and new runs (:mod:`.new_runs`), the
prepare options' names (``FLAT_OPTIONS`` in :mod:`trends_ivae.data.settings`), fit
folders (:mod:`.fit_folder`), synthetic runs (:mod:`.sampling`), the held-out test
(:mod:`.nonlinearity`). What stays here is the estimator: its flat parameters and the
methods that tie the parts together.
"""
from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .backprojection import SubjectMaps, back_project
from ..estimators.ivae import IVAE
from ..estimators.flow import IFlow
from ..aux_variable import AuxVariable
from ..docstrings import fill_doc
from ..export.derivatives import unmask
from ..reduction.order import check_subject_volumes
from ..reduction.prepare import prepare
from ..data.settings import FLAT_OPTIONS, PrepareSettings
from ..data.auxiliary import without_task
from ..data.images import load_4d
from ..data.store import PreparedData
from ..estimators.nn.comm import SINGLE_PROCESS, Comm
from .fit_folder import load_group_ivae
from .training import (ESTIMATORS, FLOW_MIN_STEPS, GROUP_IVAE_DEFAULTS, MIN_STEPS,  # noqa: F401
                       default_restarts, make_estimator)
from .new_runs import reduce_new_runs, run_specs
from .nonlinearity import NonlinearityTest, group_test
from .sampling import SampledRun, sample_run
from .spatial import check_mode, fit_spatial, resolve_ica, needs_run_u, reduced_timecourses, spatial_reconstruction, subject_totals

logger = logging.getLogger(__name__)

__all__ = ["GroupIVAE"]


@fill_doc
class GroupIVAE(BaseEstimator):
    """Group iVAE decomposition of fMRI (temporal or spatial sources, one group basis).

    Parameters
    ----------
    n_components : int, default=10
        Number of components (sources). At most ``n_dims``.
    %(aux)s
        Default ``"task+window"``.
    %(window)s
        Default 20.
    %(step)s
    %(hrf_delay)s
    %(min_event_duration)s
    %(aux_combine)s
    %(n_dims)s
        Default None: ``n_components``, as group ICA reduces to its number of
        components. More dimensions than components warn; in the temporal mode they
        are divided by one scale (``standardize="global"``), which keeps the extra noise
        dimensions quiet and costs no accuracy (``docs/benchmarks.md``, issue 24).
    %(mask)s
    %(tr)s
    %(confounds)s
    %(detrend)s
    %(standardize)s
    %(high_pass)s
    %(low_pass)s
    %(smoothing_fwhm)s
    %(whiten)s
    %(resample_to_first)s
    %(drop_initial)s
    prior : {"gauss", "laplace", "normal"}, default="gauss"
        Conditional prior of the iVAE ("normal" gives the vanilla VAE baseline).
    %(ica)s
    %(spatial_aux)s
    %(n_segments)s
    %(aux_atlas)s
    %(n_rbf)s
    n_init : int, optional
        Restarts, racing (``IVAE(init_epochs=...)``: all train an eighth of the schedule,
        the best held-out ELBO goes on). None: 3 in the temporal mode, 1 in the spatial one
        (random starts won on ELBO with worse maps) and 1 for ``estimator="flow"``.
    estimator : {"vae", "flow"}, default="vae"
        The array-level estimator: the iVAE (:class:`~trends_ivae.IVAE`, Gaussian
        observation noise) or the exact-likelihood flow (:class:`~trends_ivae.IFlow`,
        noiseless, started from linear ICA). Both see the same reduced data and u.
    estimator_params : dict, optional
        Further :class:`~trends_ivae.estimators.ivae.IVAE` (or :class:`~trends_ivae.IFlow`)
        parameters. Default for the VAE (``GROUP_IVAE_DEFAULTS``): ``encoder_uses_aux=False``
        (new subjects need no u), ``decoder_var=None`` (learned noise variance) and
        ``init="ica"`` (the first restart starts at linear ICA).
    device : str, default="auto"
    random_state : int or None
    %(n_jobs)s
    %(verbose)s
    ivae_params : dict, optional
        Deprecated alias of ``estimator_params`` (removed in the next release); giving
        both is a ``ValueError`` when fitting.

    Attributes
    ----------
    ica_ : {"temporal", "spatial"}
        The mode that ran.
    components_ : ndarray (n_components, n_voxels)
        Group z-maps in the mask (in the spatial mode: the sources).
    components_img_ : nibabel.Nifti1Image
        The same as a 4D image, one volume per component.
    effects_ : ndarray (n_components, n_voxels)
        Decoder-effect z-maps (:mod:`.backprojection`, :mod:`.spatial`).
    effects_img_ : nibabel.Nifti1Image
    masker_ : nilearn.maskers.NiftiMasker
        A fitted masker with the mask used.
    prepared_ : PreparedData
        The reduced data, u and mapping-back arrays.
    estimator_ : IVAE or IFlow
        The fitted array-level estimator, reordered like the maps (``ivae_`` is its
        deprecated alias).
    timecourses_ : list of ndarray (n_volumes, n_components)
        Time courses per run (in ``runs_`` order).
    subject_maps_ : SubjectMaps (sequence of ndarray (n_components, n_voxels))
        Subject z-maps, per subject (in ``prepared_.subjects`` order).
    explained_variance_ : ndarray (n_components,)
        Each component's share of the cleaned data's variance, a fraction in [0, 1]
        (relative weights, :func:`~trends_ivae.group.backprojection.explained_variance`); the
        shares add up to ``total_explained_variance_``.
    total_explained_variance_ : float
        Fraction of the cleaned data's variance that all components explain together (R^2
        of the regression of the data on all time courses; MELODIC's "% of total variance"
        summed over components).
    elbo_ : float
        Held-out ELBO per volume of the selected restart.
    stability_ : ndarray (n_components,)
        Per-component stability index across restarts (ICASSO-style; NaN with one
        restart), see :attr:`trends_ivae.IVAE.stability_`.
    restart_agreement_ : float
        Mean pairwise MCC between restarts (NaN with one restart).
    runs_ : list of dict
        The run table (entities, file, number of volumes, TR).
    """

    def __init__(self, n_components: int = 10, *, aux: str = "task+window", window: int | None = 20,
                 step: int | None = None, hrf_delay: float = 0.0,
                 min_event_duration: float | None = None, aux_combine: str = "concat",
                 n_dims: int | None = None, mask: Any = None, tr: float | None = None,
                 confounds: Sequence[str] | None = None, detrend: bool = True,
                 standardize: bool = False, high_pass: float | None = None,
                 low_pass: float | None = None, smoothing_fwhm: float | None = None,
                 whiten: bool = False, resample_to_first: bool = False, drop_initial: int = 0, prior: str = "gauss",
                 ica: str = "auto", spatial_aux: str = "segments", n_segments: Any = 100,
                 aux_atlas: Any = None, n_rbf: int = 32, n_init: int | None = None, estimator: str = "vae", estimator_params: dict | None = None,
                 device: str = "auto", random_state: Any = None, n_jobs: int = 1, verbose: int = 0,
                 ivae_params: dict | None = None) -> None:
        self.n_components = n_components
        self.aux = aux
        self.window = window
        self.step = step
        self.hrf_delay = hrf_delay
        self.min_event_duration = min_event_duration
        self.aux_combine = aux_combine
        self.n_dims = n_dims
        self.mask = mask
        self.tr = tr
        self.confounds = confounds
        self.detrend = detrend
        self.standardize = standardize
        self.high_pass = high_pass
        self.low_pass = low_pass
        self.smoothing_fwhm = smoothing_fwhm
        self.whiten = whiten
        self.resample_to_first = resample_to_first
        self.drop_initial = drop_initial
        self.prior = prior
        self.ica = ica
        self.spatial_aux = spatial_aux
        self.n_segments = n_segments
        self.aux_atlas = aux_atlas
        self.n_rbf = n_rbf
        self.n_init = n_init
        self.estimator = estimator
        self.estimator_params = estimator_params
        self.device = device
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.ivae_params = ivae_params

    # ------------------------------------------------------------------ inputs
    @classmethod
    def _prepare_options(cls) -> list[str]:
        """The parameters that are prepare options (named as in :data:`~trends_ivae.data.settings.FLAT_OPTIONS`)."""
        return [name for name in inspect.signature(cls.__init__).parameters if name in FLAT_OPTIONS]

    def prepare_settings(self, has_events: bool = True) -> PrepareSettings:
        """The prepare settings these (flat, scikit-learn) parameters stand for.

        ``n_dims=None`` is ``n_components`` (as many dimensions as components). Without
        events (``has_events=False``) and unless ``ica="temporal"``, u's task factor is
        dropped (:func:`~trends_ivae.data.auxiliary.without_task`).
        """
        options = {name: getattr(self, name) for name in self._prepare_options()}
        if options["n_dims"] is None:
            options["n_dims"] = self.n_components
        if not has_events and self.ica != "temporal":
            options["aux"] = without_task(options["aux"])
        return PrepareSettings.from_options(**options)

    def _estimator_params(self) -> dict | None:
        """``estimator_params``, or its deprecated alias ``ivae_params`` (warned)."""
        if self.ivae_params is None:
            return self.estimator_params
        if self.estimator_params is not None:
            raise ValueError("give estimator_params only: ivae_params is its deprecated alias")
        warnings.warn("GroupIVAE(ivae_params=...) is deprecated and will be removed in the next release: "
                      "use estimator_params", DeprecationWarning, stacklevel=4)
        return self.ivae_params

    def build_estimator(self, n_samples: int, defaults: dict | None = None,
                        n_features: int | None = None) -> IVAE | IFlow:
        """The unfitted array-level estimator for ``n_samples`` rows (of ``n_features``
        dimensions), as ``fit`` builds it: :func:`~trends_ivae.group.training.make_estimator`
        with this model's parameters (``estimator_params`` win over ``defaults`` and the sizes it chooses).
        """
        params = {**(defaults or {}), **(self._estimator_params() or {})}
        return make_estimator(self.estimator, self.n_components, n_samples, prior=self.prior,
                              n_init=self.n_init or default_restarts(self.estimator, getattr(self, "ica_", "")),
                              params=params, device=self.device,
                              random_state=self.random_state, verbose=self.verbose, n_features=n_features)

    # --------------------------------------------------------------------- fit
    def fit(self, imgs: Any, events: Any = None, confounds: Any = None, y: Any = None, *,
            subjects: Sequence[str] | None = None) -> "GroupIVAE":
        """Prepare, fit the iVAE and map back to the brain.

        Parameters
        ----------
        imgs : path, image, or list of them; or a list of RunSpec
            4D BOLD runs (``find_bids_runs`` gives RunSpecs with events and sidecars).
        events : path, DataFrame or list of them, optional
            BIDS events per run (needed for ``aux`` containing ``task``).
        confounds : path, DataFrame, array or list of them, optional
            Confounds per run.
        y : ignored
        subjects : list of str, optional
            Subject label of each run (default: from ``sub-`` in the file names, else
            one subject per run).

        Returns
        -------
        self
        """
        check_mode(self, "")
        runs = run_specs(imgs, events, confounds, subjects)
        check_subject_volumes(self.n_components, [(r.subject, load_4d(r.img).shape[3]) for r in runs])
        settings = self.prepare_settings(has_events=any(r.events is not None for r in runs))
        prepared = prepare(runs, settings, mask=self.mask, tr=self.tr, verbose=self.verbose)
        return self.fit_prepared(prepared)

    def fit_prepared(self, prepared: PreparedData, checkpoint_dir: Any = None,
                     rows: slice | None = None, stream_rows: int | None = None,
                     comm: Comm = SINGLE_PROCESS) -> "GroupIVAE":
        """Fit on the output of the prepare stage (e.g. ``read_prepared('prepared.h5')``).

        Parameters
        ----------
        prepared : PreparedData
        checkpoint_dir : path, optional
            Checkpoint every epoch there; resume from it when it holds checkpoints.
        rows : slice, optional
            Train on these rows only: in a distributed fit (``trends-ivae fit
            --distributed``) rank 0 trains on its share of the rows, the other ranks on
            theirs (:meth:`fit_rows`); the maps and time courses use every row.
        stream_rows : int, optional
            Train with x and u in host memory, moved to the device in chunks of about
            this many rows (:meth:`IVAE.fit`): for data larger than the device's memory;
            same result as the default for the same seed.
        comm : trends_ivae.estimators.nn.comm.Comm
            The process group of a distributed fit (with ``rows``, this rank's share),
            passed to :meth:`IVAE.fit`; default one process.
        """
        check_mode(self, "")
        if self.n_components > prepared.n_dims:
            raise ValueError(f"n_components ({self.n_components}) is larger than the reduced dimension "
                             f"of the prepared data (n_dims={prepared.n_dims}); lower n_components or "
                             "prepare with a larger --n-dims")
        check_subject_volumes(self.n_components, [(r["subject"], r["n_volumes"]) for r in prepared.runs or []])
        if prepared.n_dims > self.n_components:
            warnings.warn(f"the prepared data have {prepared.n_dims} dimensions for {self.n_components} "
                          "components: the extra dimensions are fitted as noise, which costs time (prepare "
                          f"with n_dims={self.n_components} for the default; see docs/benchmarks.md)",
                          UserWarning, stacklevel=2)
        self.prepared_ = prepared
        self.ica_ = resolve_ica(self.ica, prepared.aux)
        if self.ica_ == "spatial":
            if rows is not None or comm is not SINGLE_PROCESS:
                raise ValueError("the spatial mode (ica='spatial') does not run distributed: its samples are "
                                 "voxels, fit it in one process")
            est, fit = fit_spatial(self, prepared, checkpoint_dir=checkpoint_dir, stream_rows=stream_rows)
            self.timecourse_projection_ = fit.projection
            return self._store_fit(est, fit.backprojection, fit.timecourses, fit.maps, fit.effects)
        est = self.build_estimator(prepared.n_samples, n_features=prepared.n_dims)
        u = self.model_u(prepared)
        logger.info("fitting the iVAE on x %s, u %s (%s)", prepared.x.shape, u.shape, u.describe())
        train = slice(None) if rows is None else rows
        u_train = u[train]
        est.fit(prepared.x[train], u_train, checkpoint_dir=checkpoint_dir, stream_rows=stream_rows, comm=comm)
        z = est.transform(prepared.x, u)
        x_units = prepared.x * prepared.scale          # coordinates in the orthonormal basis
        bp = back_project(x_units, z, prepared.basis, subject=prepared.subject,
                          total_sum_of_squares=subject_totals(prepared))
        est.reorder(bp.order, bp.signs)
        z = est.transform(prepared.x, u)
        jac = est.decoder_jacobian(z, batch_size=1024) * prepared.scale[None, :]   # (k, d) per unit of basis coords
        return self._store_fit(est, bp, z, bp.maps, bp.effect_maps(jac, already_ordered=True))

    def _store_fit(self, est: IVAE | IFlow, bp: Any, z: np.ndarray, maps: np.ndarray,
                   effects: np.ndarray) -> "GroupIVAE":
        """Keep the fitted estimator and the maps, time courses and variances of either mode."""
        prepared = self.prepared_
        self.estimator_ = est
        self.components_ = np.asarray(maps, dtype=np.float32)
        self.effects_ = np.asarray(effects, dtype=np.float32)
        self.explained_variance_ = bp.explained_variance
        self.total_explained_variance_ = bp.total_explained_variance
        self.subject_maps_ = SubjectMaps(bp, prepared.n_subjects)
        self.subject_explained_variance_ = bp.subject_explained_variance
        self.runs_ = prepared.runs
        self.timecourses_ = [z[prepared.run == i] for i in range(len(prepared.runs))]
        self.elbo_ = est.elbo_
        self.stability_ = np.asarray(est.stability_, dtype=float)
        self.restart_agreement_ = float(est.restart_agreement_)
        self.mask_img_ = prepared.mask_img()
        self.components_img_ = unmask(self.components_, self.mask_img_)
        self.effects_img_ = unmask(self.effects_, self.mask_img_)
        self.n_components_ = self.n_components
        return self

    def test_nonlinearity(self, prepared: PreparedData | None = None, *, n_folds: int = 2,
                          confidence: float = 0.95, n_importance: int = 8,
                          negligible: float = 0.01) -> NonlinearityTest:
        """Do these data need the nonlinear model? Held-out subjects against linear ICA.

        The estimator this ``GroupIVAE`` fits (one restart) and its linear counterpart
        (the same model with an affine decoder, or a flow without splines: linear ICA
        with the same conditional prior) are fitted on the same reduction and u, with
        whole subjects held out (runs when there is one subject) over ``n_folds``
        folds, and compared by their held-out log-likelihood per volume
        (:func:`trends_ivae.group.nonlinearity.held_out_test`). Costs ``2 n_folds`` fits.

        Parameters
        ----------
        prepared : PreparedData, optional
            Default: the data of the last fit.
        n_folds, confidence, n_importance, negligible
            See :func:`~trends_ivae.group.nonlinearity.held_out_test`.

        Returns
        -------
        NonlinearityTest
            Also kept as ``nonlinearity_test_``; ``.summary()`` says it in words.
        """
        check_mode(self, "test_nonlinearity")
        if prepared is None:
            if not hasattr(self, "prepared_"):
                raise ValueError("test_nonlinearity needs prepared data: pass them or fit first")
            prepared = self.prepared_
        self.nonlinearity_test_ = group_test(self, prepared, n_folds=n_folds, confidence=confidence,
                                             n_importance=n_importance, negligible=negligible)
        return self.nonlinearity_test_

    def sample(self, events: Any = None, *, n_volumes: int | None = None, condition: str | None = None,
               subject: str | None = None, like_run: int = 0, noise: bool = True,
               random_state: Any = None) -> SampledRun:
        """Generate a synthetic run from the fitted model (:func:`trends_ivae.group.sampling.sample_run`).

        u comes from fitted run ``like_run``, with the task factor from ``events`` (or
        one ``condition``) and the subject factor from ``subject``; sources are drawn from
        p(z|u), decoded, and mapped through the basis to voxels with the model's noise.
        Returns a :class:`~trends_ivae.group.sampling.SampledRun` (``img``, ``events``, ``u``,
        ``sources``, ``sidecar``). Temporal mode only.
        """
        return sample_run(self, events=events, n_volumes=n_volumes, condition=condition, subject=subject,
                          like_run=like_run, noise=noise, random_state=random_state)

    @classmethod
    def prepare_params(cls, prepared: PreparedData) -> dict:
        """The prepare-stage parameters of ``GroupIVAE`` that made ``prepared``: what ran.

        The command line builds its ``GroupIVAE`` with these, so that ``get_params()``
        (``model/config.json``, the sidecars' ``Parameters``) records the u, window, TR
        override and cleaning that ran. ``mask`` and the compute options are left out.
        The inverse of :meth:`prepare_settings` (``PrepareSettings.from_record``), plus ``tr``.
        """
        ran = PrepareSettings.from_record(prepared.parameters, prepared.aux, n_dims=int(prepared.n_dims))
        names = [name for name in cls._prepare_options() if FLAT_OPTIONS[name][0] != "compute"]
        return {**ran.to_options(names), "tr": (prepared.parameters or {}).get("tr_override")}

    @staticmethod
    def model_u(prepared: PreparedData) -> AuxVariable:
        """The u that the iVAE is fitted with: ``prepared.u`` (concatenated factors as their
        codes, which the IVAE holds as (n, n_factors) indices and fits the same model as on
        the dense columns, in O(n x n_factors) memory)."""
        return prepared.u

    def fit_rows(self, x: np.ndarray, u: AuxVariable | np.ndarray | pd.DataFrame, n_samples: int,
                 checkpoint_dir: Any = None, stream_rows: int | None = None,
                 comm: Comm = SINGLE_PROCESS) -> "GroupIVAE":
        """Train the iVAE on a share of the rows only (no maps): the ranks other than 0 of a distributed fit.

        ``u`` is this share's rows of :meth:`model_u`. ``n_samples`` is the number of rows of the whole data set,
        so that every rank derives the same batch size and number of epochs
        (:meth:`build_estimator`). ``comm``: this rank's process group. Sets ``estimator_`` only.
        """
        est = self.build_estimator(int(n_samples), n_features=x.shape[1])
        self.estimator_ = est.fit(x, u, checkpoint_dir=checkpoint_dir, stream_rows=stream_rows, comm=comm)
        return self

    @classmethod
    def load(cls, out_dir: Any, device: str = "auto") -> "GroupIVAE":
        """Rebuild a fitted GroupIVAE from a ``trends-ivae fit`` output folder, for ``transform``.

        The folder ``trends-ivae fit`` wrote, with ``prepared.h5`` (fit without
        ``--no-keep-prepared``), in any ``--layout``
        (:func:`~trends_ivae.group.fit_folder.load_group_ivae`). The maps and time courses are
        not recomputed (``components_`` etc. are absent); ``transform``,
        ``inverse_transform``, ``score``, ``sample`` and ``test_nonlinearity`` work as
        after ``fit``. A missing file is a ``FileNotFoundError`` naming it.
        """
        return load_group_ivae(cls, out_dir, device=device)

    @property
    def masker_(self):
        """A fitted nilearn ``NiftiMasker`` holding the mask used (no cleaning)."""
        self._check_fitted()
        from nilearn.maskers import NiftiMasker

        return NiftiMasker(mask_img=self.mask_img_).fit()

    def _deprecated_ivae(self, *value: Any) -> Any:
        warnings.warn("GroupIVAE.ivae_ is deprecated and will be removed in the next release: use estimator_",
                      DeprecationWarning, stacklevel=3)
        if value:
            self.estimator_ = value[0]
        return self.estimator_

    ivae_ = property(_deprecated_ivae, _deprecated_ivae, doc="Deprecated alias of ``estimator_`` (removed in the next release).")

    def _check_fitted(self) -> None:
        check_is_fitted(self, "estimator_", msg="This %(name)s is not fitted yet: call fit(imgs, ...), "
                                                "fit_prepared(prepared) or GroupIVAE.load(out_dir) first.")

    # ------------------------------------------------------------- transforms
    def transform(self, imgs: Any, events: Any = None, confounds: Any = None) -> list[np.ndarray]:
        """Time courses (n_volumes, n_components) of each run, cleaned and reduced as in fit."""
        self._check_fitted()   # spatial mode: spatial regression on the maps (dual regression's first stage)
        return reduced_timecourses(self, *reduce_new_runs(self, imgs, events, confounds, with_u=needs_run_u(self)))

    def inverse_transform(self, timecourses: Sequence[np.ndarray] | np.ndarray) -> list[nib.Nifti1Image]:
        """4D images of the decoder's reconstruction f(z) for each array of time courses.

        The reconstruction lives in the cleaned-data space (the group mean added back). In
        the spatial mode: the time courses times the maps (linear back-reconstruction).
        """
        self._check_fitted()
        if isinstance(timecourses, np.ndarray):
            timecourses = [timecourses]
        p = self.prepared_
        out = []
        for z in timecourses:
            x = (spatial_reconstruction(self, z) if self.ica_ == "spatial"
                 else self.estimator_.inverse_transform(np.asarray(z, dtype=np.float32)))
            data = p.reconstruct(x)                         # (n_volumes, n_voxels)
            out.append(unmask(data, self.mask_img_))
        return out

    def score(self, imgs: Any, events: Any = None, confounds: Any = None) -> float:
        """Mean ELBO per volume of new runs (reduced as in fit); temporal mode only."""
        self._check_fitted()
        check_mode(self, "score")
        xs, us = reduce_new_runs(self, imgs, events, confounds)
        total = sum(self.estimator_.score(x, u) * len(x) for x, u in zip(xs, us))
        return total / sum(len(x) for x in xs)
