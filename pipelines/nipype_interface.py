#!/usr/bin/env python
"""Example: the group iVAE fit as a node of a Nipype workflow (needs ``trends-ivae[nipype]``).

The interface itself is :class:`trends_ivae.interfaces.nipype.GroupIVAEFit`; this script builds a
one-node workflow around it::

    python pipelines/nipype_interface.py sample_data/bids work/ --n-components 8
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_workflow(bids_dir: str, base_dir: str, **inputs):
    """A Nipype workflow with one ``GroupIVAEFit`` node named ``ivae``."""
    from nipype import Node, Workflow

    from trends_ivae.interfaces.nipype import GroupIVAEFit

    wf = Workflow(name="trends_ivae", base_dir=base_dir)
    wf.add_nodes([Node(GroupIVAEFit(bids_dir=bids_dir, **inputs), name="ivae")])
    return wf


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nipype_interface.py",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Run the group iVAE fit as a Nipype workflow.")
    p.add_argument("bids_dir")
    p.add_argument("work_dir", help="Nipype working folder (the fit output lands in work_dir/trends_ivae/ivae/)")
    p.add_argument("--n-components", type=int, default=8)
    p.add_argument("--n-dims", type=int, default=8)
    p.add_argument("--layout", choices=["bids", "melodic", "gift"], default="bids")
    args = p.parse_args(argv)
    wf = build_workflow(args.bids_dir, args.work_dir, n_components=args.n_components, n_dims=args.n_dims,
                        layout=args.layout)
    wf.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
