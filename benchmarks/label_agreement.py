#!/usr/bin/env python3
"""Where a finished run's fusion masks and pseudo-masks agree, and which is right where they do not.

usage: python benchmarks/label_agreement.py RUN_DIR [--out AGREEMENT.tsv]

RUN_DIR is a working directory in which the workflow ran with K >= 1 and labelled
training cases (research mode). Inside the boxes of every training case with a fusion
mask, each voxel is one of: both masks say lesion, both say background, the fusion mask
alone says lesion, the pseudo-mask alone says lesion. Per kind: the voxels, the share of
them that the reference calls lesion, and (for the agreed kinds) the share the two got
right. A diagnostic against the training cases' reference masks, as the label-quality
table is; it is how ``box_losses.disagreement_weight`` was motivated (docs/method.md).

Example:
    python benchmarks/label_agreement.py /path/to/run --out agreement.tsv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boxseg import layout
from boxseg.io import read_array

KINDS = ("both lesion", "both background", "fusion mask alone", "pseudo-mask alone")


def agreement(fusion: np.ndarray, pseudo: np.ndarray, reference: np.ndarray, inside: np.ndarray) -> dict[str, tuple[int, int]]:
    """Per kind of voxel in ``inside`` (``KINDS``): (voxels, of them lesion in ``reference``)."""
    fusion, pseudo, reference = (np.asarray(a) > 0 for a in (fusion, pseudo, reference))
    inside = np.asarray(inside, bool)
    kinds = {"both lesion": fusion & pseudo, "both background": ~fusion & ~pseudo,
             "fusion mask alone": fusion & ~pseudo, "pseudo-mask alone": ~fusion & pseudo}
    return {k: (int((m & inside).sum()), int((m & inside & reference).sum())) for k, m in kinds.items()}


def table(run: Path) -> pd.DataFrame:
    cases = sorted(p.parent.name for p in layout.path(layout.FUSION_MASK, run, case="x").parent.parent.glob("*/fusion.nii.gz"))
    if not cases:
        sys.exit(f"{run}: no fusion masks (a run with groups.k >= 1 and its fusion done)")
    totals = dict.fromkeys(KINDS, (0, 0))
    for case in cases:
        arrays = [read_array(layout.path(template, run, case=case), case, np.uint8)[0]
                  for template in (layout.FUSION_MASK, layout.PSEUDO_MASK, layout.ROI_LABEL, layout.ROI_BOX_MAP)]
        for kind, (n, lesion) in agreement(*arrays).items():
            totals[kind] = (totals[kind][0] + n, totals[kind][1] + lesion)
    boxed = sum(n for n, _ in totals.values())
    rows = []
    for kind, (n, lesion) in totals.items():
        right = {"both lesion": lesion, "both background": n - lesion}.get(kind)
        rows.append({"kind": kind, "cases": len(cases), "voxels": n, "share_of_box_voxels": n / max(boxed, 1),
                     "lesion_share": lesion / max(n, 1), "right_share": np.nan if right is None else right / max(n, 1)})
    return pd.DataFrame(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    out = table(args.run)
    print(out.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        out.to_csv(args.out, sep="\t", index=False, float_format="%.4f")


if __name__ == "__main__":
    main()
