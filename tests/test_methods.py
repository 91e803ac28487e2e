"""The method catalogue: one recipe per method, read by the rules, the training step and the schema."""

from pathlib import Path

import pytest
import yaml

from boxseg import layout
from boxseg.losses import LOSS_INPUTS, LOSSES
from boxseg.methods import CATALOGUE, GROUP, METHOD_NAMES, WEAK_RECIPES, Method, resolve, rounds, training_settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_schema_offers_exactly_the_catalogue():
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    assert schema["properties"]["methods"]["items"]["enum"] == list(METHOD_NAMES)


@pytest.mark.parametrize("k, loss, expected", [(0, "vwce", "weak_pm_wce"), (0, "wce", "weak_pm_wce"),
                                               (3, "vwce", "weak_fm_vwce"), (3, "wce", "weak_fm_wce"),
                                               (3, "box_vwce", "weak_box"), (0, "box_vwce", "weak_pm_box")])
def test_weak_is_the_method_as_configured(k, loss, expected):
    assert resolve("weak", k, loss).name == expected
    assert resolve(expected, k, loss) is CATALOGUE[expected]


def test_the_schema_offers_exactly_the_weak_recipes():
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    assert schema["properties"]["final"]["properties"]["loss"]["enum"] == list(WEAK_RECIPES)


def test_the_documented_configs_weak_is_weak_box():
    for name in ("kits19.yaml", "ibsi.yaml"):
        config = yaml.safe_load((ROOT / "configs" / name).read_text())
        assert resolve("weak", config["groups"]["k"], config["final"]["loss"]).name == "weak_box", name


def test_an_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        resolve("nope", 3, "vwce")


def test_every_recipe_names_a_loss_and_files_the_layout_has():
    for method in (*CATALOGUE.values(), GROUP):
        assert method.loss in LOSSES
        assert set(method.inputs.values()) <= set(layout.TRAINING_FILES)
        assert set(method.inputs) - {"target", "box"} == set(LOSS_INPUTS.get(method.loss, ()))


def test_a_recipe_whose_files_do_not_match_its_loss_is_refused():
    with pytest.raises(ValueError, match="do not match loss 'vwce'"):
        Method("x", "fusion masks without weights", {"target": "fusion_mask"}, "vwce")


def test_baselines_take_their_settings_from_the_config():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    base = config["final_training"]
    ccnn = training_settings(CATALOGUE["ccnn"], base, config)
    assert ccnn["size_loss_weight"] == config["baselines"]["ccnn"]["size_loss_weight"]
    sdi = training_settings(CATALOGUE["sdi"], base, config)
    assert sdi["spatial_dims"] == 2 and sdi["patch_size"] == config["baselines"]["sdi"]["patch_size"]
    assert rounds(CATALOGUE["sdi"], config) == config["baselines"]["sdi"]["rounds"] and rounds(CATALOGUE["full"], config) == 1
    assert training_settings(CATALOGUE["full"], base, config) == dict(sorted(base.items()))
    assert list(ccnn) == sorted(ccnn)  # sorted: reruns follow values, not key order


def test_the_papers_tables_name_catalogue_methods():
    from boxseg.tables import OURS, TABLE1, TABLE2

    assert {m for m, _, _ in TABLE1 + TABLE2} | {OURS[0]} <= set(CATALOGUE)


def test_full_takes_its_loss_from_the_config():
    assert resolve("full", 3, "vwce").name == "full" and resolve("full", 3, "vwce", "dice_ce").name == "full_dice_ce"
    assert resolve("weak", 3, "vwce", "dice_ce").name == "weak_fm_vwce"
