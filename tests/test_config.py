from pathlib import Path

import pytest

from compression.core.config import DataConfig, Recipe, load_recipe
from compression.core.typed import from_dict

ROOT = Path(__file__).resolve().parent.parent


def test_minimal_recipe_gets_defaults():
    recipe = from_dict(Recipe, {"name": "r1"})
    assert recipe.data.source == "embedded:rotten-tomatoes"
    assert recipe.teacher.model == "embedded:minilm-l6"
    assert recipe.to_dict()["teacher"]["max_length"] == 128


@pytest.mark.parametrize("data, message", [
    ({"name": "r", "colour": 1}, "recipe: unknown key 'colour' (allowed: name, data, teacher, students, prune, quantize, augment, bench, seed, "
     "description)"),
    ({"name": "r", "teacher": {"modle": "x"}}, "teacher: unknown key 'modle' (allowed: model, name, max_length, train)"),
    ({"name": "r", "teacher": {"max_length": 4}}, "teacher.max_length: invalid value 4 (allowed: 8..512)"),
    ({"name": "r", "teacher": {"max_length": "long"}}, "teacher.max_length: invalid value 'long' (allowed: an integer)"),
    ({"name": "r", "data": {"max_train_samples": 0}}, "data.max_train_samples: invalid value 0"),
    ({"name": "r", "data": {"label_names": ["a"]}}, "data.label_names: invalid value ['a']"),
    ({"name": "../etc"}, "name: invalid value '../etc'"),
    ({"name": "r", "teacher": {"name": "a/b"}}, "teacher.name: invalid value 'a/b'"),
    ({"name": "r", "seed": True}, "seed: invalid value True (allowed: an integer)"),
    ({"name": "r", "teacher": {"train": {"epochs": 0}}}, "teacher.train.epochs: invalid value 0.0 (allowed: a number > 0)"),
    ({"name": "r", "teacher": {"train": {"bf16": "maybe"}}}, "teacher.train.bf16: invalid value 'maybe' (allowed: 'auto' | 'on' | 'off')"),
    ({"name": "r", "students": [{"name": "s", "model": "m", "distill": {"temperature": 0}}]},
     "students[0].distill.temperature: invalid value 0.0 (allowed: a number > 0)"),
    ({"name": "r", "students": [{"name": "s", "model": "m", "distill": {"alpha": 1.5}}]},
     "students[0].distill.alpha: invalid value 1.5 (allowed: 0 <= alpha <= 1)"),
    ({"name": "r", "students": [{"name": "s"}]}, "students[0].model: invalid value None (allowed: a model reference)"),
    ({"name": "r", "students": [{"name": "s", "init": "teacher-layers", "model": "m"}]},
     "students[0].model: invalid value 'm' (allowed: null (teacher-layers copies the teacher))"),
    ({"name": "r", "students": [{"name": "s", "model": "m", "layers": [1]}]}, "students[0].layers: invalid value [1]"),
    ({"name": "r", "students": [{"name": "s", "init": "distil"}]}, "students[0].init: invalid value 'distil'"),
    ({"name": "r", "students": [{"name": "teacher", "model": "m"}]}, "name: invalid value 'teacher' (allowed: variant names unique"),
    ({"name": "r", "data": ["x"]}, "data: expected a mapping"),
    ({}, "missing required key 'name'"),
    ({"name": "r", "prune": [{"name": "p", "source": "ghost", "sparsity": 0.5}]},
     "prune[0].source: invalid value 'ghost' (allowed: an earlier variant: teacher)"),
    ({"name": "r", "prune": [{"name": "p", "source": "teacher", "sparsity": -0.1}]},
     "prune[0].sparsity: invalid value -0.1 (allowed: 0 < sparsity < 1)"),
    ({"name": "r", "prune": [{"name": "p", "source": "teacher"}]},
     "prune[0].sparsity: invalid value None (allowed: exactly one of sparsity or threshold"),
    ({"name": "r", "prune": [{"name": "p", "source": "teacher", "method": "structured"}]},
     "prune[0].heads: invalid value 0.0 (allowed: something to remove"),
    ({"name": "r", "prune": [{"name": "p", "source": "teacher", "sparsity": 0.5, "targets": ["(["]}]},
     "prune[0].targets[0]: invalid value '(['"),
    ({"name": "r", "quantize": [{"name": "q", "source": "teacher", "method": "int4"}]},
     "quantize[0].method: invalid value 'int4'"),
    ({"name": "r", "quantize": [{"name": "q", "source": "teacher"}, {"name": "q2", "source": "q"}]},
     "quantize.source: invalid value 'q' (allowed: an fp32 variant"),
])
def test_validation_names_field_value_and_allowed(data, message):
    with pytest.raises(ValueError) as err:
        from_dict(Recipe, data)
    assert message in str(err.value)


def test_optional_fields_accept_null_and_values():
    cfg = from_dict(DataConfig, {"text_column": None, "label_names": ["neg", "pos"], "max_test_samples": 5})
    assert cfg.label_names == ["neg", "pos"] and cfg.max_test_samples == 5 and cfg.text_column is None


def test_load_recipe_file_and_errors(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("data:\n  source: some/folder\n")
    assert load_recipe(good).name == "mine"  # name defaults to the file name
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(FileNotFoundError):
        load_recipe(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    import yaml

    recipe = load_recipe(path)
    raw = yaml.safe_load(path.read_text())
    assert recipe.name == raw.get("name", path.stem)
    # every step the file names is there, in order, with its method: nothing was dropped or defaulted away
    assert [s.name for s in recipe.students] == [s["name"] for s in raw.get("students", [])]
    for section in ("prune", "quantize"):
        got, wanted = getattr(recipe, section), raw.get(section, [])
        assert [(s.name, s.source) for s in got] == [(w["name"], w["source"]) for w in wanted], section
        assert all(s.method == w["method"] for s, w in zip(got, wanted) if "method" in w), section
    assert recipe.teacher.model == raw.get("teacher", {}).get("model", recipe.teacher.model)
    assert recipe.data.source == raw.get("data", {}).get("source", recipe.data.source)
