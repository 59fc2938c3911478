from pathlib import Path

import pytest

from lmforge.config import apply_overrides, load_config, parse_value
from lmforge.errors import ConfigError
from lmforge.recipe import Recipe, load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def test_parse_value_types():
    assert parse_value("50") == 50
    assert parse_value("3e-4") == pytest.approx(3e-4)
    assert parse_value("true") is True
    assert parse_value("[a, b]") == ["a", "b"]
    assert parse_value("hello") == "hello"


def test_overrides_nested_and_copy_on_write():
    base = {"a": {"b": 1}, "c": 2}
    out = apply_overrides(base, ["a.b=5", "a.d.e=x", "c=3.5"])
    assert out == {"a": {"b": 5, "d": {"e": "x"}}, "c": 3.5}
    assert base == {"a": {"b": 1}, "c": 2}


def test_override_into_value_is_error():
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["pretrain.max_steps"])


def test_quickstart_recipe_loads_and_overrides():
    cfg = load_recipe(RECIPE, ["pretrain.train.max_steps=7", "finetune.task.pooling=last"])
    assert cfg.pretrain.train.max_steps == 7
    assert cfg.finetune.task.pooling == "last"
    assert cfg.tokenizer.kind == "byte_bpe"


def test_unknown_top_level_key_suggests():
    with pytest.raises(ConfigError) as e:
        load_recipe(RECIPE, ["pretrian.train.max_steps=1"])
    assert "unknown config key 'pretrian'" in e.value.message
    assert "did you mean 'pretrain'" in e.value.hint


def test_unknown_nested_key_suggests():
    with pytest.raises(ConfigError) as e:
        load_recipe(RECIPE, ["pretrain.train.max_step=1"])
    assert "pretrain.train.max_step" in e.value.message
    assert "pretrain.train.max_steps" in e.value.hint


def test_unknown_key_without_close_match_lists_options():
    with pytest.raises(ConfigError) as e:
        load_recipe(RECIPE, ["nosuch.key=1"])
    assert "nosuch" in e.value.message
    assert "pretrain" in e.value.hint


def test_bad_value_names_key():
    with pytest.raises(ConfigError) as e:
        load_recipe(RECIPE, ["pretrain.train.max_steps=many"])
    assert "pretrain.train.max_steps" in e.value.message


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="divisible"):
        load_recipe(RECIPE, ["pretrain.train.batch_size=10", "pretrain.train.grad_accum=3"])


def test_invalid_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\npretrain:\n  model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(Recipe, p)


def test_missing_recipe(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(Recipe, tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted((RECIPE.parent).rglob("*.yaml")), ids=lambda p: str(p.relative_to(RECIPE.parent)))
def test_every_shipped_recipe_loads(path):
    """Every recipe in recipes/ parses and validates (a comment edit once broke one's YAML)."""
    recipe = load_recipe(path)
    assert recipe.name
