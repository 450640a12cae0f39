"""A researcher's own strategies, from a module outside w2s, run by the pipeline with no edit to
w2s: a selection rule and a pair rule named as "module:object" in the config."""

from __future__ import annotations

import json

import pytest

from w2s.demo import DEMO_WORLD, demo_config
from w2s.method.selection import first_generation
from w2s.method.voting import usable_answer
from w2s.pipeline import run_pipeline
from w2s.pipeline.config import ConfigError, config_from_dict, deep_merge
from w2s.pipeline.parts import build
from w2s.tasks import make_task
from w2s.toy.data import write_splits
from w2s.toy.world import WorldConfig

SELECTION_RULE = "w2s_plugins_example:first_half"
PAIR_RULE = "w2s_plugins_example:icl_over_weak"


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def toy_data(tmp_path):
    data = tmp_path / "toy_data"
    write_splits(data, 0, {"train_1": 200, "train_2": 40, "test": 20, "dev": 20}, WorldConfig(**DEMO_WORLD))
    return data


def plugin_config(data) -> dict:
    return deep_merge(demo_config(data, quick=True), {
        "weak": {"train": {"max_steps": 20}}, "strong": {"train": {"max_steps": 4}},
        "stage1": {"iterations": 1, "variants": ["icl"], "selection": SELECTION_RULE},
        "stage2": {"method": "dpo", "pairs": PAIR_RULE, "train": {"max_steps": 2}},
        "baselines": [], "eval": {"n": 0}})


def test_plugins_by_module_and_object_run_in_the_pipeline(toy_data, tmp_path):
    run = tmp_path / "run"
    run_pipeline(config_from_dict(plugin_config(toy_data)), run, quiet=True)
    task = make_task("toy")
    questions = read(run / "data/questions/unlabeled.jsonl")
    weak, icl = first_generation(read(run / "data/d_weak.jsonl")), first_generation(read(run / "data/d_icl.jsonl"))
    # the selection rule's output: consistency on the first half of the questions only
    first_half = {q["id"] for q in questions[: len(questions) // 2]}
    agree = [q["id"] for q in questions if q["id"] in first_half
             and (a := usable_answer(task, weak[q["id"]])) and (b := usable_answer(task, icl[q["id"]]))
             and task.equivalent(a, b)]
    summary = json.loads((run / "data/iter1/summary.json").read_text())
    assert [r["id"] for r in read(run / "data/iter1/icl.jsonl")] == agree
    assert summary["n_questions"] == len(questions) and summary["n_selected"] == len(agree)
    # the pair rule's output: in-context answer chosen over a different weak answer, on D_icl it was given
    pairs = read(run / "data/pairs.jsonl")
    assert pairs, "the toy models disagree on some questions"
    for p in pairs:
        assert p["chosen"] == task.completion(icl[p["id"]]["response"])
        assert p["rejected"] == task.completion(weak[p["id"]]["response"])
    manifest = json.loads((run / "manifest.json").read_text())["stages"]
    assert "icl_answers" in manifest["pairs"]["deps"]       # the declared need became a dependency
    assert manifest["m_pro_dpo"]["status"] == "done"
    assert "m_pro_dpo" in json.loads((run / "metrics.json").read_text())["models"]


def test_a_plugin_that_cannot_be_imported_is_a_config_error(toy_data):
    raw = deep_merge(plugin_config(toy_data), {"stage2": {"pairs": "no_such_module_x:rule"}})
    with pytest.raises(ConfigError, match="stage2.pairs: cannot import 'no_such_module_x'"):
        config_from_dict(raw)
    raw = deep_merge(plugin_config(toy_data), {"stage1": {"selection": "w2s_plugins_example:nope"}})
    with pytest.raises(ConfigError, match="stage1.selection: module 'w2s_plugins_example' has no 'nope'"):
        config_from_dict(raw)


def test_stage3_from_m_plus_with_a_dev_split_scores_the_start_policy(toy_data, tmp_path):
    """Stage II off, a dev split, Stage III on: m_rl reads M_plus's dev score. A reused name once
    made it depend on a stage that did not exist (`dev_sft_iter2_icl`), and the run failed."""
    raw = deep_merge(demo_config(toy_data, quick=True, stage3=True), {"stage2": {"enabled": False}})
    stages, models = build(config_from_dict(raw), tmp_path / "run")
    names = {s.name for s in stages}
    assert all(d in names for s in stages for d in s.deps)
    m_rl = next(s for s in stages if s.name == "m_rl")
    assert f"dev_{models['m_plus'].eval_name}" in m_rl.deps
    assert models["m_plus"].eval_name == "stage1_iter2_icl"  # the demo's M_plus: 2 iterations, icl
    assert next(s for s in stages if s.name == "stage3_samples_r1").deps[0] == "sft_iter2_icl"


def test_the_oracle_controls_run_in_the_pipeline_and_are_titled_controls(toy_data, tmp_path):
    """stage2.pairs: gold and stage3.reward: gold read the hidden gold through their declared
    `hidden_gold` input (a dependency on load_data); the report calls them CONTROLS."""
    raw = deep_merge(plugin_config(toy_data), {
        "stage1": {"selection": "consistency"}, "stage2": {"pairs": "gold"},
        "stage3": {"enabled": True, "reward": "gold", "rounds": 1, "samples": 4, "min_support": 2,
                   "max_questions": 8, "train": {"max_steps": 2, "num_generations": 4, "batch_size": 4,
                                                 "max_completion_length": 32}}})
    run = tmp_path / "run"
    run_pipeline(config_from_dict(raw), run, quiet=True)
    hidden = {r["id"]: r["answer"] for r in read(run / "data/questions/hidden_gold.jsonl")}
    task = make_task("toy")
    pairs = read(run / "data/pairs.jsonl")
    assert pairs and all(task.equivalent(p["chosen_answer"], hidden[p["id"]]) for p in pairs)
    labels = read(run / "data/stage3/round1/train.jsonl")
    assert labels and all(r["pseudo_label"] == hidden[r["id"]] for r in labels)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selection"]["pairs"]["control"] == "gold" and metrics["stage3"]["control"] == "gold"
    report = (run / "report.md").read_text()
    assert "## Stage III CONTROL (gold reward; not label-free)" in report
    assert "Stage II preference pairs (CONTROL: gold labels, not label-free)" in report


def test_relabel_runs_two_iterations_in_the_pipeline(toy_data, tmp_path):
    """stage1.selection: relabel gets its iteration and iteration 1's columns (declared inputs):
    iteration 2 keeps iteration 1's selection as it was and adds what the fine-tuned models agree on."""
    raw = deep_merge(plugin_config(toy_data), {"stage1": {"selection": "relabel", "iterations": 2, "variants": ["icl"]},
                                               "stage2": {"enabled": False}})
    run = tmp_path / "run"
    run_pipeline(config_from_dict(raw), run, quiet=True)
    first, second = (json.loads((run / f"data/iter{i}/summary.json").read_text()) for i in (1, 2))
    assert first["n_relabelled"] == 0 and second["n_kept"] == first["n_selected"]
    assert second["n_selected"] == second["n_kept"] + second["n_relabelled"]
    kept = {r["id"]: r for r in read(run / "data/iter1/icl.jsonl")}
    again = [r for r in read(run / "data/iter2/icl.jsonl") if r["id"] in kept]
    assert again == list(kept.values())              # set A: never relabelled
    manifest = json.loads((run / "manifest.json").read_text())["stages"]
    assert {"weak_answers", "icl_answers", "regen_iter2_weak"} <= set(manifest["select_iter2"]["deps"])
