"""The workflow layer: typed functions between the library and the command line.

Each workflow does one user-level job from settings objects to files on disk, and is
what every front end calls: ``trends-ivae prepare|fit|demo|sample|report|simulate``, ``trends-ivae-bids``,
``pipelines/*.py`` and the Nipype node (:mod:`trends_ivae.interfaces.nipype`).

:func:`prepare_to_file`
    runs -> ``OUT/prepared.h5`` and ``OUT/prepare_config.json``.
:func:`fit_to_folder`
    prepared data, a prepared file or runs -> a fitted GroupIVAE -> an output folder
    (BIDS derivatives, MELODIC or GIFT layout), the report, a :class:`FitResult`.
:func:`fit_distributed`
    the same as one rank of a torchrun job.
:func:`participant_stage`, :func:`group_stage`
    the BIDS App's two levels.
:func:`dual_regression_to_folder`
    a fitted model applied to new runs (time courses and subject maps), no refit.
:func:`demo_to_folder`
    the sample data fitted and scored against their simulated truth (``trends-ivae demo``).
:func:`sample_to_file`
    a fitted model -> a synthetic run, its events and sidecar (``trends-ivae sample``).
:func:`report_for_folder`
    a fit folder -> its HTML report (``trends-ivae report``).
:func:`simulate_to_folder`
    simulator parameters -> a BIDS dataset with its truth (``trends-ivae simulate``).

:class:`FitOptions`
    every option of ``trends-ivae fit`` as typed values, checked before any work
    (:class:`OptionError`) and turned into a :class:`FitJob`: the fit's settings and
    the arguments of :func:`fit_to_folder`. The command line, ``pipelines/group_ivae.py``
    and the Nipype node describe a fit with it.

The settings travel whole: :class:`trends_ivae.data.settings.PrepareSettings` (cleaning, u,
reduction, compute) inside a :class:`PrepareRequest` with the runs, mask and TR;
:class:`FitSettings` (the model); :class:`OutputSettings` (layout, report, force). A
problem the user can fix raises :class:`WorkflowError` (one line, naming the option or
file); the command line prints it and exits 1. Choices made for the user (u for
resting data, ``n_components="auto"``) are announced through ``notify`` and recorded.

Importing this package is cheap: torch, nilearn and matplotlib load inside the
functions that need them, so only the workflows that train import torch.
"""
from __future__ import annotations

from .bids_app import BidsSelection, ParticipantResult, group_stage, participant_stage
from .checks import OptionError
from .choices import Notify, auto_components, resting_aux
from .demo import DemoResult, DemoSettings, demo_to_folder
from .dual_regression import DualRegressionResult, dual_regression_to_folder
from .fit import (FitResult, FitSettings, OutputSettings, WorkflowError, fit_distributed, fit_to_folder,
                  summary_line, write_report)
from .fit_options import FitJob, FitOptions, RunSelection
from .prepare import PrepareRequest, PrepareResult, prepare_data, prepare_to_file
from .report import ReportResult, ReportSettings, report_for_folder
from .sample import SampleResult, SampleSettings, sample_to_file
from .simulate import SimulateResult, simulate_to_folder

__all__ = [
    "PrepareRequest", "PrepareResult", "prepare_data", "prepare_to_file",
    "FitSettings", "OutputSettings", "FitResult", "WorkflowError", "fit_to_folder", "fit_distributed",
    "summary_line", "write_report",
    "FitOptions", "FitJob", "RunSelection", "OptionError",
    "BidsSelection", "ParticipantResult", "participant_stage", "group_stage",
    "DualRegressionResult", "dual_regression_to_folder",
    "SampleSettings", "SampleResult", "sample_to_file",
    "ReportSettings", "ReportResult", "report_for_folder",
    "SimulateResult", "simulate_to_folder",
    "DemoSettings", "DemoResult", "demo_to_folder",
    "Notify", "auto_components", "resting_aux",
]
