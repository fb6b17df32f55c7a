"""A Nipype interface for the group iVAE fit (optional extra ``trends-ivae[nipype]``).

Use it as a node in a Nipype workflow::

    from nipype import Node
    from trends_ivae.interfaces.nipype import GroupIVAEFit

    fit = Node(GroupIVAEFit(bids_dir="ds/", task="rest", aux="window", window=30,
                            n_components=20, layout="melodic"), name="ivae")
    # or connect 'func' (a list of 4-D runs) from an upstream node
    res = fit.run()
    res.outputs.out_dir, res.outputs.group_maps, res.outputs.mix

The interface turns its inputs into ``trends-ivae fit`` options
(:class:`trends_ivae.workflow.FitOptions`), checked as the command checks them (see
``docs/cli.md``), and runs :func:`trends_ivae.workflow.fit_to_folder` in-process into ``out_dir`` (default ``ivae`` in the node's working folder, or
``ivae.ica`` for the MELODIC layout). Importing this module needs ``nipype``.

In a Workflow, Nipype deletes the files of a node's working folder that no connected
output refers to (``execution.remove_unnecessary_outputs``): connect ``out_dir``
downstream, or give an ``out_dir`` outside the working folder, to keep the whole fit
(model, report, time courses), not just the connected ``group_maps``.
"""
from __future__ import annotations

import os
from pathlib import Path

from nipype.interfaces.base import (BaseInterface, BaseInterfaceInputSpec, Directory, File,
                                    TraitedSpec, isdefined, traits)

__all__ = ["GroupIVAEFit"]


class GroupIVAEFitInputSpec(BaseInterfaceInputSpec):
    # resolve=True: relative paths are made absolute when set, since Nipype runs the node in
    # its own working folder
    bids_dir = Directory(exists=True, resolve=True, xor=["func"],
                         desc="BIDS dataset (or fMRIPrep derivatives)")
    task = traits.Str(desc="BIDS task to keep")
    participant_label = traits.List(traits.Str, desc="subjects to keep")
    func = traits.List(File(exists=True, resolve=True), xor=["bids_dir"], desc="4-D runs")
    events = traits.List(File(exists=True, resolve=True), desc="events TSV, one per func")
    mask = File(exists=True, resolve=True, desc="brain mask")
    aux = traits.Str("task+window", usedefault=True, desc="u: factors joined with '+'")
    window = traits.Int(20, usedefault=True, desc="sliding-window length (volumes)")
    n_dims = traits.Int(desc="shared basis dimension (default: n_components)")
    n_components = traits.Int(10, usedefault=True, desc="number of components")
    n_init = traits.Int(3, usedefault=True, desc="restarts")
    seed = traits.Int(0, usedefault=True, desc="random seed")
    max_epochs = traits.Int(desc="maximum epochs per restart")
    batch_size = traits.Int(desc="mini-batch size")
    device = traits.Str("auto", usedefault=True, desc="auto, cpu, cuda")
    layout = traits.Enum("bids", "melodic", "gift", usedefault=True, desc="output layout")
    out_dir = Directory(resolve=True, desc="output folder (default: ivae or ivae.ica in the working folder)")
    args = traits.List(traits.Str, desc="further trends-ivae fit arguments")


class GroupIVAEFitOutputSpec(TraitedSpec):
    out_dir = Directory(exists=True, desc="the fit output folder")
    group_maps = File(exists=True, desc="4-D group z-maps")
    mix = File(desc="MELODIC layout: melodic_mix")
    model = File(exists=True, desc="the model file, model/estimator.pt")
    prepared = File(desc="prepared.h5")


class GroupIVAEFit(BaseInterface):
    """Fit a group iVAE (``trends-ivae fit``) as a Nipype node."""

    input_spec = GroupIVAEFitInputSpec
    output_spec = GroupIVAEFitOutputSpec

    def _out_dir(self) -> Path:
        if isdefined(self.inputs.out_dir):
            return Path(self.inputs.out_dir).absolute()
        return Path(os.getcwd()) / ("ivae.ica" if self.inputs.layout == "melodic" else "ivae")

    def _options(self):
        """The :class:`~trends_ivae.workflow.FitOptions` of the inputs (``args`` last, as on a
        command line)."""
        from ..workflow import FitOptions

        i = self.inputs
        values = {"bids": i.bids_dir, "func": i.func, "events": i.events, "task": i.task,
                  "participant_label": i.participant_label or None, "mask": i.mask}
        values = {k: ([str(f) for f in v] if isinstance(v, list) else str(v)) for k, v in values.items()
                  if isdefined(v) and v is not None}
        values["force"] = True
        for name in ("aux", "window", "n_dims", "n_components", "n_init", "seed", "max_epochs", "batch_size",
                     "device", "layout"):
            if isdefined(getattr(i, name)):
                values[name] = getattr(i, name)
        if isdefined(i.args) and i.args:
            from ..cli.fit import options_given

            values.update(options_given(i.args))
        return FitOptions.from_values(out=str(self._out_dir()), **values)

    def _run_interface(self, runtime):
        from ..cli.options import notifier
        from ..data.errors import PrepareError
        from .. import workflow

        try:
            options = self._options()
            if options.distributed:
                raise workflow.WorkflowError("--distributed runs under torchrun, not in a Nipype node")
            job = options.job(options.check())
            workflow.fit_to_folder(job.data, job.out, fit=job.fit, output=job.output,
                                   checkpoint_dir=job.checkpoint_dir, stream_rows=job.stream_rows,
                                   notify=notifier("trends-ivae fit"), arguments=job.arguments, source=job.source)
        except (PrepareError, workflow.WorkflowError) as exc:
            raise RuntimeError(f"trends-ivae fit: {exc}") from exc
        return runtime

    def _list_outputs(self) -> dict:
        from ..export.naming import model_file

        out = self._out_dir()
        group = {"bids": out / "group" / "desc-ivae_components.nii.gz", "melodic": out / "melodic_IC.nii.gz",
                 "gift": out / "trends_ivae_agg__component_ica_.nii"}[self.inputs.layout]
        outputs = self._outputs().get()
        outputs.update(out_dir=str(out), group_maps=str(group), model=str(model_file(out)))
        if (out / "melodic_mix").is_file():
            outputs["mix"] = str(out / "melodic_mix")
        if (out / "prepared.h5").is_file():
            outputs["prepared"] = str(out / "prepared.h5")
        return outputs
