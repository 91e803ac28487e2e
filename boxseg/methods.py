"""The method catalogue: what each final model trains on and how, as data.

A method is what ``methods:`` in the config names: the box-supervised method (``weak``)
and its ablations, the fully supervised reference and the baselines. For each the
catalogue gives the per-case files its final model trains on (``inputs``, named by
``layout.TRAINING_FILES``), the loss (``losses.LOSSES``), the training settings it
takes from elsewhere in the config, the network's dimensions, the recursive rounds
(SDI), and what it needs of the run (groups, labels of the training cases). The rules
(training inputs, settings, checks), the training step and the tables read it here.

Every method's prediction is post-processed alike (``final.postprocess``; evaluation
reports both with and without the component filter), as the paper treats its baselines.

Adding a final-model loss: the loss in ``losses``, a method here, and its name in the
config schema's ``methods`` enum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boxseg.losses import LOSS_INPUTS, LOSSES


@dataclass(frozen=True)
class Method:
    """One final model's recipe.

    Args:
        name: as in ``methods:``.
        summary: one line for the docs and the report.
        inputs: training-set column -> per-case file (``layout.TRAINING_FILES``); ``target``
            always, and the loss's other arrays (``losses.LOSS_INPUTS``) or SDI's 2D ``box``es.
        loss: a name in ``losses.LOSSES``.
        settings_from: training setting -> dotted config path it is read from.
        fixed_settings: training settings the method fixes (e.g. a 2D network).
        rounds_from: dotted config path of the number of recursive training rounds (SDI);
            None: one ordinary training run.
        needs_groups: trains on stage 2's fusion masks (groups.k > 0).
        needs_labels: trains on what the training cases' reference labels give (full,
            the baselines), so every training case needs a label.
        from_boxes: the box-supervised method or one of its ablations (the label-quality
            table and the group models' loss curves go with it).
    """

    name: str
    summary: str
    inputs: dict[str, str]
    loss: str
    settings_from: dict[str, str] = field(default_factory=dict)
    fixed_settings: dict[str, Any] = field(default_factory=dict)
    rounds_from: str | None = None
    needs_groups: bool = False
    needs_labels: bool = False
    from_boxes: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"method {self.name}: unknown loss {self.loss!r}")
        arrays = set(self.inputs) - {"target", "box"}
        if "target" not in self.inputs or arrays != set(LOSS_INPUTS.get(self.loss, ())):
            raise ValueError(f"method {self.name}: inputs {sorted(self.inputs)} do not match loss {self.loss!r}")


# The box losses' terms (config.yaml ``box_losses``) -> training settings.
BOX_LOSS_SETTINGS = {"empty_weight": "box_losses.empty_weight", "tightness_weight": "box_losses.tightness_weight",
                     "tightness_alpha": "box_losses.tightness_alpha", "tightness_core": "box_losses.tightness_core",
                     "box_size_weight": "box_losses.size_weight",
                     "box_size_band": "box_losses.size_band"}

# weak_box's terms, each as the setting that weighs it and the value that turns it off: the
# ablation's methods weak_box_{term} keep one term (as configured) and turn the others off.
BOX_TERMS = {"empty": ("empty_weight", 0.0), "tight": ("tightness_weight", 0.0), "size": ("box_size_weight", 0.0),
             "disagree": ("disagreement_weight", 1.0)}
_WEAK_BOX_INPUTS = {"target": "fusion_mask", "weight": "fusion_weight", "box_map": "box_map", "pseudo_mask": "pseudo_mask"}
_WEAK_BOX_SETTINGS = {**BOX_LOSS_SETTINGS, "disagreement_weight": "box_losses.disagreement_weight"}


def _box_term_alone(term: str) -> Method:
    """weak_box with only ``term`` of ``BOX_TERMS`` on: the paper's method plus that one term."""
    return Method(f"weak_box_{term}", f"weak_box's ablation: fusion masks and weight maps with only its {term} term",
                  _WEAK_BOX_INPUTS, "box_vwce", needs_groups=True, from_boxes=True, settings_from=_WEAK_BOX_SETTINGS,
                  fixed_settings={setting: off for other, (setting, off) in BOX_TERMS.items() if other != term})


CATALOGUE: dict[str, Method] = {
    m.name: m
    for m in (
        Method("weak_pm_wce", "pseudo-masks with WCE (the paper's K = 0)", {"target": "pseudo_mask"}, "wce", from_boxes=True),
        Method("weak_fm_wce", "fusion masks with WCE", {"target": "fusion_mask"}, "wce", needs_groups=True, from_boxes=True),
        Method("weak_fm_vwce", "fusion masks and weight maps with VWCE (the paper's method)",
               {"target": "fusion_mask", "weight": "fusion_weight"}, "vwce", needs_groups=True, from_boxes=True),
        Method("weak_box", "fusion masks, weight maps and the boxes' own constraints (emptiness, tightness, size), "
               "voxels where fusion mask and pseudo-mask disagree down-weighted",
               _WEAK_BOX_INPUTS, "box_vwce", needs_groups=True, from_boxes=True, settings_from=_WEAK_BOX_SETTINGS),
        *(_box_term_alone(term) for term in BOX_TERMS),
        Method("weak_pm_box", "pseudo-masks and the boxes' own constraints (K = 0)", {"target": "pseudo_mask", "box_map": "box_map"},
               "box_wce", from_boxes=True, settings_from=BOX_LOSS_SETTINGS),
        Method("full", "the true masks with WCE: the fully supervised reference", {"target": "label"}, "wce", needs_labels=True),
        Method("full_dice_ce", "the true masks with Dice + CE (MONAI DiceCELoss)", {"target": "label"}, "dice_ce",
               needs_labels=True),
        Method("ccnn", "Constrained-CNN baseline: scribbles (partial CE) and the true lesion volume (size loss)",
               {"target": "scribbles", "size": "label"}, "ccnn", needs_labels=True,
               settings_from={"size_loss_weight": "baselines.ccnn.size_loss_weight",
                              "size_tolerance": "baselines.ccnn.size_tolerance"}),
        Method("sdi", "SDI baseline: labels from 2D slice boxes, a 2D UNet trained in recursive rounds",
               {"target": "sdi_labels", "box": "sdi_boxes"}, "wce", needs_labels=True,
               settings_from={"patch_size": "baselines.sdi.patch_size"}, fixed_settings={"spatial_dims": 2},
               rounds_from="baselines.sdi.rounds"),
    )
}
# Group models of stage 2: one per disjoint subset, on its pseudo-masks, with WCE.
GROUP = Method("group", "a stage-2 group model: pseudo-masks with WCE", {"target": "pseudo_mask"}, "wce", from_boxes=True)
WEAK = "weak"  # the box-supervised method as configured (``resolve``)
# final.loss -> what ``weak`` stands for with groups (K > 0) and without (K = 0).
WEAK_RECIPES = {"vwce": ("weak_fm_vwce", "weak_pm_wce"), "wce": ("weak_fm_wce", "weak_pm_wce"),
                "box_vwce": ("weak_box", "weak_pm_box")}
METHOD_NAMES = (WEAK, *CATALOGUE)


def resolve(name: str, k: int, final_loss: str, full_loss: str = "wce") -> Method:
    """The recipe a configured method name stands for.

    ``weak`` is the box-supervised method as the config sets it: with groups (``groups.k`` > 0)
    the fusion masks with VWCE or WCE (``final.loss``), the paper's method, or with VWCE and
    the boxes' own constraints (``box_vwce``: ``weak_box``); without (K = 0) there are no
    fusion masks, so it trains on the pseudo-masks with WCE, as the paper's K = 0 row (with
    ``box_vwce``: WCE and the constraints, ``weak_pm_box``). ``full``
    is the fully supervised reference with ``final.full_loss``: WCE (``full``) or Dice + CE
    (``full_dice_ce``); its results stay under ``full``, the name the comparison reads.
    """
    if name == WEAK:
        name = WEAK_RECIPES[final_loss][k == 0]
    elif name == "full":
        name = {"wce": "full", "dice_ce": "full_dice_ce"}[full_loss]
    if name not in CATALOGUE:
        raise ValueError(f"unknown method {name!r}: one of {list(METHOD_NAMES)}")
    return CATALOGUE[name]


def _lookup(config: dict, dotted: str) -> Any:
    value = config
    for key in dotted.split("."):
        value = value[key]
    return value


def training_settings(method: Method, base: dict, config: dict) -> dict:
    """The method's final-model training settings: ``base`` (``final_training``), then the
    settings it reads from the config and those it fixes; keys sorted, so reruns follow
    values, not key order."""
    values = dict(base)
    values.update({key: _lookup(config, path) for key, path in method.settings_from.items()})
    values.update(method.fixed_settings)
    return dict(sorted(values.items()))


def rounds(method: Method, config: dict) -> int:
    """Recursive training rounds of the method (1: an ordinary training run)."""
    return int(_lookup(config, method.rounds_from)) if method.rounds_from else 1
