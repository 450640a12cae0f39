"""Strategies as plug-ins (Stage I selection, Stage II pairs) on REAL toy generations: the first
80 train_2 questions of the seed-0 demo run (weak answers, in-context answers, M_plus's 10
samples, the base strong model's 4 in-context samples), written by
`bench/strategies_table.py --fixture tests/data/toy_generations`. Gold is read only to check."""

from __future__ import annotations

from pathlib import Path

import pytest

from w2s import steps
from w2s.io import read_jsonl
from w2s.method import metrics
from w2s.method.registry import PAIRS, SELECTION, describe, register
from w2s.method.selection import first_generation
from w2s.method.voting import majority_vote, usable_answer
from w2s.records import group_by_id
from w2s.tasks import get_task

DATA = Path(__file__).parent / "data" / "toy_generations"
TOY = get_task("toy")


@pytest.fixture(scope="module")
def world() -> dict:
    return {name: read_jsonl(DATA / f"{name}.jsonl")
            for name in ("unlabeled", "hidden_gold", "d_weak", "d_icl", "samples", "icl_samples")}


def select(world, strategy, **context):
    return SELECTION.get(strategy)(TOY, world["unlabeled"], world["d_weak"], world["d_icl"], **context)


def pairs(world, strategy, **settings):
    return PAIRS.get(strategy)(TOY, world["unlabeled"], world["d_weak"], world["samples"], seed=0, **settings)


def test_builtins_are_registered_and_documented():
    assert set(SELECTION.names()) >= {"consistency", "confidence", "random", "relabel"}
    assert set(PAIRS.names()) >= {"paper", "weak_rejected_only", "self", "agreement", "scpo", "gold"}
    for doc in (*describe(SELECTION).values(), *describe(PAIRS).values()):
        assert len(doc) > 80 and "\n\n" not in doc  # one paragraph: what it is, where it comes from


def test_fixture_is_real_and_big_enough(world):
    ids = [q["id"] for q in world["unlabeled"]]
    assert len(ids) == 80 and {r["id"] for r in world["d_icl"]} == set(ids)
    assert {v.n for v in majority_vote(TOY, world["samples"]).values()} == {10}


def test_consistency_ids_are_exactly_the_agreeing_questions(world):
    sel = select(world, "consistency")
    weak, icl = first_generation(world["d_weak"]), first_generation(world["d_icl"])
    agree = [q["id"] for q in world["unlabeled"]
             if (a := usable_answer(TOY, weak[q["id"]])) and (b := usable_answer(TOY, icl[q["id"]]))
             and TOY.equivalent(a, b)]
    assert sel.ids == agree and len(agree) >= 10
    assert [r["id"] for r in sel.weak] == [r["id"] for r in sel.icl] == agree
    for r in sel.weak + sel.icl:  # every record teaches the agreed answer
        assert TOY.equivalent(TOY.extract_answer(r["completion"]), sel.answers[r["id"]])


def test_random_is_a_seeded_draw_of_the_consistency_size(world):
    consistent = select(world, "consistency")
    a, b, c = select(world, "random", seed=0), select(world, "random", seed=0), select(world, "random", seed=1)
    assert len(a.ids) == len(c.ids) == len(consistent.ids)
    assert a.ids == b.ids and a.hybrid == b.hybrid            # deterministic under a seed
    assert set(a.ids) != set(consistent.ids) and set(a.ids) != set(c.ids)
    weak, icl = first_generation(world["d_weak"]), first_generation(world["d_icl"])
    assert [r["completion"] for r in a.weak] == [TOY.completion(weak[i]["response"]) for i in a.ids]
    assert [r["completion"] for r in a.icl] == [TOY.completion(icl[i]["response"]) for i in a.ids]
    disagree = [i for i in a.ids if not TOY.equivalent(usable_answer(TOY, weak[i]), usable_answer(TOY, icl[i]))]
    assert disagree  # a control: the drawn questions' solutions are kept whatever their answers
    assert a.skipped["not_drawn"] + len(a.ids) + a.skipped["missing"] + a.skipped["empty"] == len(world["unlabeled"])


@pytest.mark.parametrize("threshold", [0.5, 0.75, 1.0])
def test_confidence_respects_its_threshold(world, threshold):
    sel = select(world, "confidence", icl_samples=world["icl_samples"], confidence_threshold=threshold)
    icl, groups = first_generation(world["d_icl"]), group_by_id(world["icl_samples"])
    weak = first_generation(world["d_weak"])
    for q in world["unlabeled"]:
        qid = q["id"]
        answer = usable_answer(TOY, icl[qid])
        share = sum(TOY.equivalent(usable_answer(TOY, g), answer) for g in groups[qid]) / len(groups[qid])
        assert (qid in sel.ids) == bool(answer and share >= threshold), (qid, share)
    assert sel.ids and all(sel.answers[i] == usable_answer(TOY, icl[i]) for i in sel.ids)
    for r in sel.weak:  # only the weak solutions that reach the selected answer
        assert TOY.equivalent(usable_answer(TOY, weak[r["id"]]), sel.answers[r["id"]])
    looser = select(world, "confidence", icl_samples=world["icl_samples"], confidence_threshold=threshold - 0.25)
    assert set(sel.ids) <= set(looser.ids)


def test_confidence_without_samples_says_what_it_needs(world):
    with pytest.raises(ValueError, match="in-context samples"):
        select(world, "confidence")


def test_weak_rejected_only_is_the_papers_weak_mistakes(world):
    paper, rejected = pairs(world, "paper"), pairs(world, "weak_rejected_only")
    assert rejected and all(p in paper for p in rejected)
    assert rejected == [p for p in paper if p["weak_side"] == "rejected"]
    assert len(rejected) < len(paper)  # the paper's rule also keeps pairs confirming the weak answer
    weak = first_generation(world["d_weak"])
    assert all(p["rejected"] == TOY.completion(weak[p["id"]]["response"]) for p in rejected)


def test_self_pairs_have_no_weak_side(world):
    built = pairs(world, "self", max_pairs=3)
    votes = majority_vote(TOY, world["samples"])
    weak = {i: TOY.completion(g["response"]) for i, g in first_generation(world["d_weak"]).items()}
    assert built and len({p["id"] for p in built}) >= 5
    assert set(built[0]) == set(pairs(world, "paper")[0])  # the same record format
    for p in built:
        assert p["weak_side"] == "none" and weak[p["id"]] not in (p["chosen"], p["rejected"])
        assert p["confidence"] == votes[p["id"]].confidence >= 0.6
        assert TOY.equivalent(p["chosen_answer"], votes[p["id"]].answer)
        assert not (p["rejected_answer"] and TOY.equivalent(p["rejected_answer"], p["chosen_answer"]))
    assert built == pairs(world, "self", max_pairs=3)
    assert max(sum(p["id"] == i for p in built) for i in {p["id"] for p in built}) > 1  # max_pairs counts


def test_agreement_pairs_follow_the_supported_weak_or_icl_answer(world):
    from w2s.method.pseudo_labels import agreement_labels

    built = pairs(world, "agreement", icl_gens=world["d_icl"], min_support=3, prefer="icl")
    labels = agreement_labels(TOY, world["unlabeled"], world["samples"], world["d_weak"], world["d_icl"],
                              min_support=3, prefer="icl")
    votes = majority_vote(TOY, world["samples"])
    weak = {i: g for i, g in first_generation(world["d_weak"]).items()}
    assert built and {p["id"] for p in built} <= set(labels)
    # it reaches questions where M_plus's own majority is unsure (the paper's rule never does)
    assert any(votes[p["id"]].confidence < 0.6 for p in built)
    samples_by_id = group_by_id(world["samples"])
    for p in built:
        label = labels[p["id"]]
        assert TOY.equivalent(p["chosen_answer"], label)
        assert not (p["rejected_answer"] and TOY.equivalent(p["rejected_answer"], label))
        assert p["chosen"] in {TOY.completion(g["response"]) for g in samples_by_id[p["id"]]}  # on-policy chosen
        is_weak = p["rejected"] == TOY.completion(weak[p["id"]]["response"])
        assert p["weak_side"] == ("rejected" if is_weak else "none")
    assert any(p["weak_side"] == "rejected" for p in built)
    # more support demanded -> a subset of the labelled questions
    strict = pairs(world, "agreement", icl_gens=world["d_icl"], min_support=6, prefer="icl")
    assert {p["id"] for p in strict} < {p["id"] for p in built}
    # without an in-context column only the weak answer can be the label
    weak_only = pairs(world, "agreement", icl_gens=[], min_support=3)
    for p in weak_only:
        assert TOY.equivalent(p["chosen_answer"], usable_answer(TOY, weak[p["id"]]))


def test_scpo_pairs_most_against_least_voted_weighted_by_margin(world):
    built = pairs(world, "scpo", max_pairs=2, min_margin=0.0)
    votes = majority_vote(TOY, world["samples"])
    assert built and len({p["id"] for p in built}) >= 5
    for p in built:
        v = votes[p["id"]]
        assert p["weak_side"] == "none" and len(v.groups) >= 2
        assert TOY.equivalent(p["chosen_answer"], v.groups[0][0])
        assert TOY.equivalent(p["rejected_answer"], v.groups[-1][0])
        assert p["weight"] == round((v.groups[0][1] - v.groups[-1][1]) / v.n, 4) > 0
    margin = sorted({p["weight"] for p in built})[len({p["weight"] for p in built}) // 2]
    kept = pairs(world, "scpo", max_pairs=2, min_margin=margin)
    assert kept and all(p["weight"] >= margin for p in kept) and len(kept) < len(built)
    assert kept == [p for p in built if p["weight"] >= margin]


def test_gold_pairs_are_a_control_that_reads_the_hidden_gold(world):
    """The oracle pair rule: chosen right and rejected wrong by the hidden gold, on M_plus's own
    samples; its entry declares `hidden_gold`, the summary marks it a control."""
    from w2s.method.metrics import golds_of
    from w2s.method.registry import PAIRS

    assert PAIRS.get("gold").needs == ("hidden_gold",)
    built = pairs(world, "gold", max_pairs=1, hidden_gold=world["hidden_gold"])
    golds = golds_of(world["hidden_gold"])
    assert built
    for p in built:
        assert TOY.equivalent(p["chosen_answer"], golds[p["id"]])
        assert not (p["rejected_answer"] and TOY.equivalent(p["rejected_answer"], golds[p["id"]]))
    built2, summary = steps.preference_pairs(TOY, world["unlabeled"], world["d_weak"], world["samples"], seed=0,
                                             gold=world["hidden_gold"], strategy="gold",
                                             hidden_gold=world["hidden_gold"])
    assert summary["control"] == "gold" and summary["chosen_accuracy"] == 1.0 and summary["rejected_accuracy"] == 0.0
    _, label_free = steps.preference_pairs(TOY, world["unlabeled"], world["d_weak"], world["samples"], seed=0,
                                           strategy="self")
    assert "control" not in label_free


def test_the_gold_and_random_rewards_are_controls():
    from w2s.method import rewards
    from w2s.method.pseudo_labels import pseudo_labels

    qs = [{"id": "a", "question": "q"}, {"id": "b", "question": "r"}]
    labels = pseudo_labels("gold", TOY, qs, [], [], [], hidden_gold=[{"id": "a", "answer": "7"}])
    assert labels == {"a": "7"}
    coin = rewards.bind("random", TOY, eos_token_ids=[2])
    texts = [f" step {i}\n#### {i}" for i in range(200)]
    r = coin(prompts=["p"] * 200, completions=texts, pseudo_label=["0"] * 200, completion_ids=[[5, 2]] * 200)
    assert set(r) == {0.0, 1.0} and 70 < sum(r) < 130          # a fair coin, not the answer's correctness
    assert r == coin(prompts=["p"] * 200, completions=texts, pseudo_label=["1"] * 200, completion_ids=[[5, 2]] * 200)
    assert coin(prompts=["p"], completions=[texts[1]], pseudo_label=["1"], completion_ids=[[5, 5]]) == [0.0]
    # the run's seed keys the coin: the same seed, the same coins; another seed, other coins at the same rate
    seeded = [rewards.bind("random", TOY, eos_token_ids=[2], seed=s) for s in (0, 0, 1)]
    flips = [fn(prompts=["p"] * 200, completions=texts, pseudo_label=["0"] * 200, completion_ids=[[5, 2]] * 200)
             for fn in seeded]
    assert flips[0] == flips[1] != flips[2] and all(70 < sum(f) < 130 for f in flips)


def finetuned_columns(world) -> tuple[list[dict], list[dict]]:
    """Stand-ins for iteration 2's columns: two of M_plus's samples per question (M_plus is a
    fine-tuned strong model, as sft_iter1_weak / sft_iter1_icl are)."""
    column = lambda i: [{**g, "sample_index": 0} for g in world["samples"] if g["sample_index"] == i]
    return column(0), column(1)


def test_relabel_is_consistency_at_iteration_1(world):
    plain = select(world, "consistency")
    first = select(world, "relabel", iteration=1, d_weak=world["d_weak"], d_icl=world["d_icl"])
    assert (first.ids, first.hybrid, first.answers) == (plain.ids, plain.hybrid, plain.answers)
    assert first.counts == {"n_kept": len(plain.ids), "n_relabelled": 0}


def test_relabel_keeps_the_weak_supervised_set_and_relabels_what_it_discarded(world):
    weak2, icl2 = finetuned_columns(world)
    kept = select(world, "consistency")
    sel = SELECTION.get("relabel")(TOY, world["unlabeled"], weak2, icl2, iteration=2,
                                   d_weak=world["d_weak"], d_icl=world["d_icl"])
    agree2 = set(SELECTION.get("consistency")(TOY, world["unlabeled"], weak2, icl2).ids)
    relabelled = [q["id"] for q in world["unlabeled"] if q["id"] not in kept.ids and q["id"] in agree2]
    assert relabelled and sel.counts == {"n_kept": len(kept.ids), "n_relabelled": len(relabelled)}
    assert sel.ids == [q["id"] for q in world["unlabeled"] if q["id"] in set(kept.ids) | set(relabelled)]
    # set A: the original solutions, never relabelled (even where the fine-tuned models disagree)
    assert set(kept.ids) - agree2, "some weak-supervised questions the fine-tuned models disagree on"
    original = {r["id"]: r for r in kept.weak}
    columns = {"weak": first_generation(weak2), "icl": first_generation(icl2)}
    for r in sel.weak:
        if r["id"] in original:
            assert r == original[r["id"]]
        else:  # set B: the fine-tuned models' solutions, teaching the answer they agree on
            assert r["completion"] == TOY.completion(columns["weak"][r["id"]]["response"])
            assert TOY.equivalent(TOY.extract_answer(r["completion"]), sel.answers[r["id"]])
    assert [r["id"] for r in sel.icl] == sel.ids and len(sel.hybrid) == 2 * len(sel.ids)
    assert sel.skipped["disagree"] + sel.skipped["empty"] + sel.skipped["missing"] == \
        len(world["unlabeled"]) - len(sel.ids)
    _, summary = steps.select(TOY, world["unlabeled"], weak2, icl2, gold=world["hidden_gold"], strategy="relabel",
                              iteration=2, d_weak=world["d_weak"], d_icl=world["d_icl"], seed=0)
    assert summary["n_relabelled"] == len(relabelled) and summary["n_selected"] == len(sel.ids)
    assert "control" not in summary  # label-free: it never reads gold
    with pytest.raises(ValueError, match="needs iteration"):
        steps.select(TOY, world["unlabeled"], weak2, icl2, strategy="relabel", d_weak=[], d_icl=[])


def test_only_an_entry_that_declares_hidden_gold_receives_it(world):
    """The hidden gold reaches an entry only through its declared `hidden_gold` input; the
    diagnostics' `gold` is never passed on, and a declaring entry's summary is marked a control."""
    seen = {}

    def spy(name):
        def rule(task, questions, weak_gens, icl_gens, **inputs):
            """A test rule that records what it was given."""
            seen[name] = set(inputs)
            return SELECTION.get("consistency")(task, questions, weak_gens, icl_gens)
        return rule

    register(SELECTION, "_test_reads_gold", needs=("hidden_gold",))(spy("reads"))
    register(SELECTION, "_test_plain")(spy("plain"))
    try:
        everything = {"gold": world["hidden_gold"], "hidden_gold": world["hidden_gold"], "seed": 0}
        _, reads = steps.select(TOY, world["unlabeled"], world["d_weak"], world["d_icl"],
                                strategy="_test_reads_gold", **everything)
        _, plain = steps.select(TOY, world["unlabeled"], world["d_weak"], world["d_icl"],
                                strategy="_test_plain", **everything)
    finally:
        SELECTION.remove("_test_reads_gold")
        SELECTION.remove("_test_plain")
    assert seen == {"reads": {"hidden_gold"}, "plain": set()}
    assert reads["control"] == "gold" and "control" not in plain
    assert reads["precision"] == plain["precision"]  # the diagnostics read gold either way


def test_strategies_score_against_gold(world):
    """Not a target, a sanity check that the table's numbers come out of the summaries."""
    sel, summary = steps.select(TOY, world["unlabeled"], world["d_weak"], world["d_icl"], gold=world["hidden_gold"],
                                strategy="random", seed=0)
    assert summary["n_selected"] == len(sel.ids) and 0 <= summary["precision"] <= 1
    assert summary["skipped_not_drawn"] > 0
    built, s = steps.preference_pairs(TOY, world["unlabeled"], world["d_weak"], world["samples"], seed=0,
                                      gold=world["hidden_gold"], strategy="self")
    assert s["n_pairs"] == len(built) and s["weak_chosen"] == s["weak_rejected"] == 0
    assert s["chosen_accuracy"] == metrics.pair_diagnostics(TOY, built, world["hidden_gold"])["chosen_accuracy"]


def test_registering_a_taken_name_fails():
    before = SELECTION.get("consistency")
    with pytest.raises(ValueError, match="'consistency' is already registered"):
        register(SELECTION, "consistency")(lambda *a, **k: None)
    assert SELECTION.get("consistency") is before
    with pytest.raises(ValueError, match=r"stage2\.pairs: unknown pair rule 'nope' \(known: agreement, gold, paper, scpo, self, weak_rejected_only"):
        PAIRS.get("nope")


def test_a_new_strategy_is_one_function(world):
    """What docs/architecture.md promises: a function and a decorator, then the config key works."""
    @register(SELECTION, "_test_weak_only_answered")
    def weak_only(task, questions, weak_gens, icl_gens, **context):
        """Every question with a usable weak answer (a test strategy)."""
        return SELECTION.get("random")(task, questions, weak_gens, icl_gens, seed=0)

    try:
        sel, summary = steps.select(TOY, world["unlabeled"], world["d_weak"], world["d_icl"],
                                    strategy="_test_weak_only_answered", seed=0)
        assert summary["n_selected"] == len(sel.ids) > 0
    finally:
        SELECTION.remove("_test_weak_only_answered")


@pytest.fixture
def config_files(tmp_path):
    for name in ("gold", "unl", "test"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "q", "answer": "1", "solution": "#### 1"}\n')
    return {"task": "toy", "data": {k: str(tmp_path / f"{f}.jsonl") for k, f in
                                    (("gold", "gold"), ("unlabeled", "unl"), ("test", "test"))},
            "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}}


@pytest.mark.parametrize("section, key, known", [("stage1", "selection", "selection rule 'nope' \\(known: confidence, consistency, random, relabel"),
                                                 ("stage2", "pairs", "pair rule 'nope' \\(known: agreement, gold, paper, scpo, self, weak_rejected_only")])
def test_an_unknown_strategy_in_a_config_names_the_key(config_files, section, key, known):
    from w2s.pipeline.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=rf"{section}\.{key}: unknown {known}"):
        config_from_dict({**config_files, section: {key: "nope"}})


def test_the_pipeline_passes_the_strategy_and_keys_its_cache_on_it(config_files, tmp_path):
    from w2s.pipeline.config import config_from_dict
    from w2s.pipeline.parts import build as build_stages

    def stages(**sections):
        built, _ = build_stages(config_from_dict({**config_files, **sections}), tmp_path / "run")
        return {s.name: s for s in built}

    default = stages()
    assert "icl_samples" not in default and default["select_iter1"].params["selection"] == "consistency"
    assert default["pairs"].params["pairs"] == "paper"
    conf = stages(stage1={"selection": "confidence", "confidence_samples": 6, "iterations": 2})
    assert conf["icl_samples"].kind == "generate" and conf["icl_samples"].params["k"] == 6
    assert all("icl_samples" in conf[f"select_iter{i}"].deps for i in (1, 2))
    assert conf["select_iter1"].params != default["select_iter1"].params
    assert stages(stage2={"pairs": "self"})["pairs"].params != default["pairs"].params
    # `iteration` is a named input: only an entry that declares it gets it, in its stage's key too
    assert "iteration" not in default["select_iter1"].params
    relabel = stages(stage1={"selection": "relabel", "iterations": 2})
    assert [relabel[f"select_iter{i}"].params["iteration"] for i in (1, 2)] == [1, 2]
    assert {"regen_iter2_weak", "regen_iter2_icl", "weak_answers", "icl_answers"} <= set(relabel["select_iter2"].deps)


def test_cli_options_call_the_same_strategies(world, tmp_path):
    import typer
    from typer.testing import CliRunner

    from w2s.cli import data
    from w2s.io import write_jsonl

    app = typer.Typer()
    data.register(app)
    files = {}
    for name, rows in world.items():
        files[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(files[name], rows)

    def run(*args, code=0):
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == code, res.output
        return res

    run("select", "--task", "toy", "--weak", files["d_weak"], "--icl", files["d_icl"], "--questions",
        files["unlabeled"], "--strategy", "confidence", "--icl-samples", files["icl_samples"], "--threshold", "1",
        "--out", tmp_path / "sel")
    expected = select(world, "confidence", icl_samples=world["icl_samples"], confidence_threshold=1.0)
    assert [r["id"] for r in read_jsonl(tmp_path / "sel" / "icl.jsonl")] == expected.ids
    run("pairs", "--task", "toy", "--weak", files["d_weak"], "--samples", files["samples"], "--questions",
        files["unlabeled"], "--strategy", "weak_rejected_only", "--seed", "0", "--out", tmp_path / "p.jsonl")
    assert read_jsonl(tmp_path / "p.jsonl") == pairs(world, "weak_rejected_only")
    bad = run("pairs", "--task", "toy", "--weak", files["d_weak"], "--samples", files["samples"],
              "--strategy", "nope", "--out", tmp_path / "q.jsonl", code=2)
    assert "--strategy: unknown pair rule 'nope' (known: agreement, gold, paper, scpo, self, weak_rejected_only" in bad.output
    assert not (tmp_path / "q.jsonl").exists()
    bad = run("select", "--task", "toy", "--weak", files["d_weak"], "--icl", files["d_icl"], "--strategy",
              "confidence", "--out", tmp_path / "sel2", code=2)
    assert "needs --icl-samples" in bad.output
    weak2, icl2 = finetuned_columns(world)
    write_jsonl(tmp_path / "weak2.jsonl", weak2)
    write_jsonl(tmp_path / "icl2.jsonl", icl2)
    run("select", "--task", "toy", "--weak", tmp_path / "weak2.jsonl", "--icl", tmp_path / "icl2.jsonl",
        "--questions", files["unlabeled"], "--strategy", "relabel", "--iteration", "2", "--d-weak", files["d_weak"],
        "--d-icl", files["d_icl"], "--out", tmp_path / "relabel")
    expected = SELECTION.get("relabel")(TOY, world["unlabeled"], weak2, icl2, iteration=2, d_weak=world["d_weak"],
                                        d_icl=world["d_icl"])
    assert read_jsonl(tmp_path / "relabel" / "hybrid.jsonl") == expected.hybrid
    bad = run("select", "--task", "toy", "--weak", files["d_weak"], "--icl", files["d_icl"], "--strategy",
              "relabel", "--iteration", "2", "--out", tmp_path / "sel3", code=2)
    assert "needs --d-weak" in bad.output


def test_the_report_names_the_strategies():
    from w2s.report import render_markdown

    metrics = {"run": {"stage1_selection": "random", "stage2_pairs": "self"}, "models": {}, "comparisons": [],
               "selection": {"iterations": [{"iteration": 1, "n_selected": 1, "n_questions": 2, "coverage": 0.5}],
                             "pairs": {"n_pairs": 1, "n_questions": 2}}}
    md = render_markdown(metrics)
    assert "## Stage I selection (strategy random)" in md and "## Stage II preference pairs (strategy self)" in md
    metrics["run"] = {}  # a run from before the strategies: the paper's
    md = render_markdown(metrics)
    assert "(final answer consistency)" in md and "(the paper's rule)" in md
    metrics["selection"]["iterations"][0]["control"] = "gold"  # a selection plug-in that reads gold
    md = render_markdown(metrics)
    assert "## Stage I selection (CONTROL: gold labels, not label-free)" in md and "(the paper's rule)" in md
