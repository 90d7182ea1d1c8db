from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genbench.engine import resolve_runs
from genbench.errors import ExitCode, SpecError, UnknownNameError
from genbench.schemas import ComponentRef, CorruptionSpec, ExperimentSpec, RunSpec, TrainConfig, parse_spec


def make_run(**changes) -> RunSpec:
    fields = dict(
        dataset=ComponentRef(name="digits"),
        model=ComponentRef(name="mlp", options={"hidden": [512]}),
        corruption=CorruptionSpec(name="labels", level=0.4, seed=3),
        train=TrainConfig(),
        seed=3,
    )
    fields.update(changes)
    return RunSpec(**fields)


def test_run_id_is_stable_and_content_addressed():
    assert make_run().run_id == make_run().run_id
    assert len(make_run().run_id) == 16
    assert make_run().run_id != make_run(seed=4).run_id
    assert make_run().run_id != make_run(train=TrainConfig(lr=0.02)).run_id
    same_options_other_order = make_run(model=ComponentRef(name="mlp", options={"hidden": [512]}))
    assert same_options_other_order.run_id == make_run().run_id


def test_run_id_survives_a_json_round_trip():
    run = make_run()
    assert RunSpec.model_validate_json(run.canonical()).run_id == run.run_id


@settings(max_examples=50, deadline=None)
@given(level=st.floats(allow_nan=False, allow_infinity=False))
def test_levels_outside_unit_interval_are_rejected(level):
    if 0.0 <= level <= 1.0:
        assert CorruptionSpec(level=level).level == level
    else:
        with pytest.raises(SpecError, match=r"p_c must be in \[0, 1\]"):
            parse_spec(ExperimentSpec, {"levels": [level]}, source="spec")


def test_unknown_field_is_named():
    with pytest.raises(SpecError, match="lerning_rate: unknown field"):
        parse_spec(ExperimentSpec, {"train": {"lerning_rate": 0.1}}, source="spec")


def test_errors_are_one_line_with_their_exit_code():
    with pytest.raises(SpecError) as caught:
        parse_spec(ExperimentSpec, {"levels": [2.0], "seeds": ["x"]}, source="spec")
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == ExitCode.INVALID_SPEC


def test_malformed_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("levels = [0.0, 0.5\nname = 'x'\n")
    with pytest.raises(SpecError, match="malformed TOML"):
        ExperimentSpec.from_toml(path)


def test_missing_toml_file(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        ExperimentSpec.from_toml(tmp_path / "nope.toml")


def test_toml_with_component_options(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        'name = "grid"\nmodels = ["cnn", { name = "mlp", hidden = [64, 64] }]\nlevels = [0.0, 1.0]\nseeds = [0]\n'
        "[train]\nlr = 0.1\nbatch_size = 64\n"
    )
    spec = ExperimentSpec.from_toml(path)
    assert spec.models[1] == ComponentRef(name="mlp", options={"hidden": [64, 64]})
    runs = spec.expand()
    assert len(runs) == 2 * 2
    assert {r.train.batch_size for r in runs} == {64}


def test_expand_is_the_cartesian_grid_and_corruption_seed_follows_the_seed():
    spec = ExperimentSpec(levels=[0.0, 0.5, 1.0], seeds=[0, 1, 2])
    runs = spec.expand()
    assert len(runs) == 1 * 2 * 1 * 3 * 3
    assert all(r.corruption.seed == r.seed for r in runs)
    assert len({r.run_id for r in runs}) == len(runs)


def test_resolve_fills_default_options_so_ids_do_not_depend_on_spelling():
    bare = resolve_runs(ExperimentSpec(models=[ComponentRef(name="mlp")], levels=[0.0], seeds=[0]))
    spelled = resolve_runs(
        ExperimentSpec(models=[ComponentRef(name="mlp", options={"hidden": [512]})], levels=[0.0], seeds=[0])
    )
    assert bare[0].run_id == spelled[0].run_id
    assert bare[0].model.options == {"hidden": [512]}


def test_resolve_rejects_unknown_names_and_options():
    with pytest.raises(UnknownNameError, match="did you mean 'digits'"):
        resolve_runs(ExperimentSpec(datasets=[ComponentRef(name="digit")]))
    with pytest.raises(SpecError, match="invalid options for model 'mlp': width: unknown field"):
        resolve_runs(ExperimentSpec(models=[ComponentRef(name="mlp", options={"width": 3})]))


def test_a_corruption_entry_may_carry_its_own_levels():
    spec = ExperimentSpec(
        corruptions=[ComponentRef(name="labels", options={"levels": [0.0, 0.5]}), ComponentRef(name="labels")],
        levels=[1.0],
        seeds=[0],
        models=[ComponentRef(name="mlp")],
    )
    runs = resolve_runs(spec)
    assert sorted(r.corruption.level for r in runs) == [0.0, 0.5, 1.0]
    assert all("levels" not in r.corruption.options for r in runs)
    with pytest.raises(SpecError, match="p_c must be in"):
        ExperimentSpec(corruptions=[ComponentRef(name="labels", options={"levels": [2.0]})]).expand()


def test_a_model_entry_may_carry_its_own_recipe():
    spec = ExperimentSpec(
        models=[ComponentRef(name="mlp", options={"hidden": [32], "train": {"lr": 0.1}}), ComponentRef(name="cnn")],
        levels=[0.0],
        seeds=[0],
    )
    runs = {r.model.name: r for r in resolve_runs(spec)}
    assert runs["mlp"].train.lr == 0.1 and runs["mlp"].model.options == {"hidden": [32]}
    assert runs["cnn"].train.lr == spec.train.lr
    with pytest.raises(SpecError, match="lrr: unknown field"):
        ExperimentSpec(models=[ComponentRef(name="mlp", options={"train": {"lrr": 1}})]).expand()


@pytest.mark.parametrize("name", ["quick", "mnist1d", "zhang2017-cifar10"])
def test_example_files_resolve(name):
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / f"{name}.toml"
    runs = resolve_runs(ExperimentSpec.from_toml(path))
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_sub_grids_are_the_union_of_their_products_each_run_once():
    from genbench.engine import resolve_runs

    spec = ExperimentSpec.model_validate(
        {
            "datasets": ["digits"],
            "seeds": [0, 1],
            "train": {"lr": 0.05, "max_steps": 300},
            "grids": [
                {"models": ["mlp", "cnn"], "corruptions": ["labels"], "levels": [0.0, 0.5, 1.0]},
                # regularized models at p_c = 0 and 1 only; lr and max_steps come from the experiment
                {"models": ["mlp"], "levels": [0.0, 1.0], "train": {"weight_decay": 5e-4}},
                {"models": [{"name": "mlp", "dropout": 0.1}], "levels": [0.0, 1.0], "seeds": [0]},
                {"models": ["mlp"], "levels": [1.0]},  # already in the first sub-grid: trained once
            ],
        }
    )
    runs = resolve_runs(spec)
    assert len(runs) == 2 * 3 * 2 + 2 * 2 + 2 * 1
    assert len({run.run_id for run in runs}) == len(runs)
    decayed = [run for run in runs if run.train.weight_decay == 5e-4]
    assert len(decayed) == 4 and {run.train.lr for run in decayed} == {0.05}
    assert {run.train.max_steps for run in runs} == {300}
    dropped = [run for run in runs if run.model.options.get("dropout")]
    assert [(run.corruption.level, run.seed) for run in dropped] == [(0.0, 0), (1.0, 0)]
    plain = ExperimentSpec.model_validate({"models": ["mlp"], "levels": [0.0, 1.0], "train": {"lr": 0.05, "max_steps": 300}})
    assert {r.run_id for r in resolve_runs(plain)} <= {r.run_id for r in runs}


def test_a_sub_grid_with_an_unknown_field_is_one_spec_error():
    with pytest.raises(SpecError, match="sub-grid 0: unknown field 'measures'"):
        parse_spec(ExperimentSpec, {"grids": [{"measures": ["params"]}]}, source="experiment x")
    with pytest.raises(SpecError, match="grids"):
        parse_spec(ExperimentSpec, {"grids": []}, source="experiment x")
    with pytest.raises(SpecError, match="sub-grid 0 of experiment"):
        ExperimentSpec.model_validate({"grids": [{"levels": [2.0]}]}).subgrids()
