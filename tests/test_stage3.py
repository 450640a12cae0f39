"""Stage III: pseudo-label rules, rewards, GRPO on the toy model, and the pipeline with stage3."""

import inspect
import json
from pathlib import Path

import pytest

from w2s.method import pseudo_labels as pl
from w2s.method import rewards
from w2s.method.registry import LABEL_RULES, REWARDS
from w2s.tasks import make_task

TASK = make_task("toy")


def gen(qid, answer, i=0, finish="stop"):
    text = f" some steps.\n#### {answer}" if answer is not None else " no answer here"
    return {"id": qid, "prompt": "p", "response": text, "sample_index": i, "finish_reason": finish}


def samples(qid, answers, truncated=()):
    return [gen(qid, a, i, "length" if i in truncated else "stop") for i, a in enumerate(answers)]


QUESTIONS = [{"id": q, "question": f"question {q}"} for q in ("a", "b", "c", "d")]
SAMPLES = (samples("a", [5, 5, 5, 7, 7, 7, 7, 9])      # weak 5 has 3 votes, icl 7 has 4
           + samples("b", [5, 5, 5, 5, 2, None, None, None], truncated={0, 1})  # 5: only 2 usable
           + samples("c", [1, 1, 1, 1, 1, 1, 3, 3])     # neither weak (4) nor icl (6) is supported
           + samples("d", [8, 8, 8, 8, 8, 2, 2, 2]))
WEAK = [gen("a", 5), gen("b", 5), gen("c", 4), gen("d", 8)]
ICL = [gen("a", 7), gen("b", 5), gen("c", 6), gen("d", 9, finish="length")]


# ---- (d) the rules on hand-made records ------------------------------------------------------
def test_agreement_rule_threshold_prefer_truncation_and_left_out():
    labels = pl.agreement_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_support=3, prefer="weak")
    # b: weak/icl 5 has 4 votes but 2 are truncated -> 2 < 3; c: neither answer sampled >= 3 times
    assert labels == {"a": "5", "d": "8"}
    assert pl.agreement_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, prefer="icl")["a"] == "7"
    assert pl.agreement_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, prefer="most_votes")["a"] == "7"
    assert pl.agreement_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_support=2)["b"] == "5"
    assert pl.agreement_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_support=4) == {"a": "7", "d": "8"}
    with pytest.raises(ValueError, match="prefer"):
        pl.agreement_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, prefer="gold")


def test_majority_rule_confidence_floor_counts_every_sample():
    labels = pl.majority_labels(TASK, QUESTIONS, SAMPLES, min_confidence=0.6)
    assert labels == {"c": "1", "d": "8"}                    # a: 4/8 = 0.5; b: 2/8 usable fives
    assert pl.majority_labels(TASK, QUESTIONS, SAMPLES, min_confidence=0.5) == {"a": "7", "c": "1", "d": "8"}
    assert pl.pseudo_labels("majority", TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_confidence=0.6,
                            min_support=3, prefer="weak") == labels


def test_diagnostics_score_labels_against_gold():
    labels = {"a": "5", "d": "8"}
    gold = [{"id": "a", "answer": "7"}, {"id": "d", "answer": "8"}, {"id": "c", "answer": "1"}]
    d = pl.diagnostics(TASK, QUESTIONS, SAMPLES, labels, gold=gold)
    assert d["coverage"] == 0.5 and d["precision"] == 0.5 and d["n_graded"] == 2
    assert d["majority_share"] == pytest.approx((4 + 2 + 6 + 5) / 8 / 4)
    assert d["majority_accuracy"] == 1.0                     # a: 7, c: 1, d: 8 are all right
    one = pl.diagnostics(TASK, QUESTIONS[:1], samples("a", [3] * 8), {})
    assert one["answer_entropy"] == 0.0 and "precision" not in one
    assert pl.diagnostics(TASK, QUESTIONS[:1], samples("a", [1, 2]), {})["answer_entropy"] == pytest.approx(0.6931, 1e-3)


# ---- (b) pseudo-labels never read gold --------------------------------------------------------
def test_pseudo_labels_never_read_gold():
    for fn in (pl.agreement_labels, pl.majority_labels, pl.pseudo_labels):
        assert not any("gold" in p or "answer" == p for p in inspect.signature(fn).parameters)

    def with_gold(records, value):
        return [{**r, "gold": value, "answer": value, "solution": f"#### {value}"} for r in records]

    for rule in LABEL_RULES:
        if "hidden_gold" in LABEL_RULES.get(rule).needs:
            continue  # a control (w2s.method.controls): it reads gold by its declared input, and says so
        plain = pl.pseudo_labels(rule, TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_support=3, min_confidence=0.5)
        for value in ("0", "8"):
            leaked = pl.pseudo_labels(rule, TASK, with_gold(QUESTIONS, value), with_gold(SAMPLES, value),
                                      with_gold(WEAK, value), with_gold(ICL, value), min_support=3,
                                      min_confidence=0.5)
            assert leaked == plain, rule


# ---- rewards -----------------------------------------------------------------------------------
def test_rewards_registered_with_their_rule_and_documented():
    assert {"agreement", "majority"} <= set(REWARDS)
    for entry in REWARDS.entries():
        name, fn = entry.name, entry.obj
        assert fn.pseudo_label_rule in LABEL_RULES
        assert len((fn.__doc__ or "").split("\n\n")[0]) > 100, name
    with pytest.raises(ValueError, match="stage3.reward"):
        rewards.bind("nope", TASK)


def test_reward_grades_finished_completions_against_their_own_label():
    fn = rewards.bind("agreement", TASK, eos_token_ids=[2])
    completions = [" 3 + 4 = 7.\n#### 7", " 7\n#### 7", " #### 7\nQuestion: next", " 3 + 4 = 7", " #### 8"]
    ids = [[5, 2], [5, 6], [5, 6], [5, 2], [5, 2]]   # the second one was cut by the length limit
    r = fn(prompts=["p"] * 5, completions=completions, pseudo_label=["7"] * 5, completion_ids=ids)
    # strict format: " 3 + 4 = 7" has no `#### N`; a stop string ends a completion like EOS does
    assert r == [1.0, 0.0, 1.0, 0.0, 0.0]


# ---- (c) a group's rewards do not depend on how it is split across processes -------------------
def test_rewards_identical_whole_or_split():
    completions = [f" steps\n#### {a}" for a in (7, 7, 8, 7, 9, 7, 8, 8)] + [" #### 5"] * 4 + [" #### 6"] * 4
    labels = ["7"] * 8 + ["5"] * 8
    ids = [[1, 2]] * 16
    for name in REWARDS:
        fn = rewards.bind(name, TASK, eos_token_ids=[2])
        whole = fn(prompts=["p"] * 16, completions=completions, pseudo_label=labels, completion_ids=ids)
        for size in (1, 3, 4, 5):   # slices as TRL hands them to each of several processes
            parts = []
            for s in range(0, 16, size):
                parts += fn(prompts=["p"] * len(completions[s:s + size]), completions=completions[s:s + size],
                            pseudo_label=labels[s:s + size], completion_ids=ids[s:s + size])
            assert parts == whole, (name, size)
        if name != "random":  # the coin-flip control rewards regardless of the label
            assert sum(whole) == 8.0, name


# ---- (a) GRPO on the CPU raises the reward ----------------------------------------------------
@pytest.fixture(scope="module")
def toy_policy(tmp_path_factory):
    """The shipped strong toy model after a short SFT on gold toy solutions: it answers in the
    task's format and ends with EOS, as every Stage III starting model (M_plus, M_pro) does."""
    import torch

    from w2s.steps import sft_records
    from w2s.toy import checkpoint_path
    from w2s.toy.world import WorldConfig, make_splits
    from w2s.training import SFTSettings, train_sft

    torch.set_num_threads(1)  # small models: more threads only contend
    splits = make_splits(seed=3, sizes={"train_1": 256, "train_2": 64, "test": 1}, config=WorldConfig(max_steps=3, max_distractors=1))
    out = tmp_path_factory.mktemp("stage3") / "sft"
    train_sft(str(checkpoint_path("strong")), sft_records(TASK, splits["train_1"]), out,
              SFTSettings(learning_rate=3e-4, batch_size=16, max_steps=40, max_length=256, save_steps=1000, seed=0))
    return out, splits["train_2"]


def test_grpo_raises_the_mean_reward_on_cpu(toy_policy, tmp_path):
    from w2s.generation import SamplingConfig, generate
    from w2s.method.voting import majority_vote
    from w2s.training import read_lineage
    from w2s.training.grpo import train_grpo
    from w2s.training.settings import GRPOSettings

    model, questions = toy_policy
    prompts = [{"id": q["id"], "prompt": TASK.prompt(q["question"])} for q in questions]
    samples = generate(str(model), prompts, SamplingConfig(max_new_tokens=64, temperature=1.0, n=8,
                                                           stop=TASK.stop, seed=0), progress=False)
    # A pseudo-label from the policy's own samples (no gold), on the question whose label it gives
    # closest to half of the time: the most reward to gain, and a learning signal in every group.
    labels = pl.majority_labels(TASK, questions, samples, min_confidence=0.25)
    votes = majority_vote(TASK, samples)
    q = min((q for q in questions if q["id"] in labels), key=lambda q: abs(votes[q["id"]].confidence - 0.5))
    records = [{"prompt": TASK.prompt(q["question"]), "pseudo_label": labels[q["id"]]}] * 4
    settings = GRPOSettings(reward="majority", task="toy", learning_rate=3e-4, max_steps=16,
                            max_completion_length=64, save_steps=1000, seed=0)
    out = train_grpo(str(model), records, tmp_path / "rl", settings)
    log = read_lineage(out)["grpo_log"]
    assert [e["step"] for e in log] == list(range(1, 17))
    first, last = [e["reward"] for e in log[:5]], [e["reward"] for e in log[-5:]]
    assert sum(last) / 5 > sum(first) / 5 + 0.1, [e["reward"] for e in log]


# ---- (e) the pipeline with stage3 ----------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_with_stage3_end_to_end(tmp_path):
    from w2s.demo import DEMO_WORLD, demo_config
    from w2s.pipeline import run_pipeline
    from w2s.pipeline.config import config_from_dict, deep_merge
    from w2s.toy.data import write_splits
    from w2s.toy.world import WorldConfig

    data = tmp_path / "toy_data"
    write_splits(data, 0, {"train_1": 200, "train_2": 48, "test": 40, "dev": 20}, WorldConfig(**DEMO_WORLD))
    raw = deep_merge(demo_config(data, quick=True, stage3=True), {
        "weak": {"train": {"max_steps": 20}}, "strong": {"train": {"max_steps": 10}},
        "stage1": {"iterations": 1, "variants": ["hybrid"]}, "baselines": ["weak"],
        "stage2": {"method": "dpo", "train": {"max_steps": 2}}, "eval": {"n": 0},
        "stage3": {"reward": "agreement", "max_questions": 8, "train": {"max_steps": 2}}})
    run_pipeline(config_from_dict(raw), tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"m_plus", "m_pro_dpo", "m_rl"} <= set(metrics["models"])
    s3 = metrics["stage3"]
    for key in ("pseudo_label_precision", "coverage", "mean_reward", "answer_entropy", "majority_share",
                "dev_accuracy", "rounds", "chosen_round", "reward"):
        assert key in s3, key
    assert s3["reward"] == "agreement" and s3["start"] == "m_pro_dpo" and s3["chosen_by"] == "dev accuracy"
    assert [r["round"] for r in s3["rounds"]] == [1, 2]
    assert all(r["n_questions"] == 8 and 0 <= r["coverage"] <= 1 for r in s3["rounds"])
    # m_rl: the round with the best greedy dev accuracy (the earlier on a tie), read from eval_dev/
    devs = [json.loads((run / f"eval_dev/stage3_round{r}.json").read_text())["accuracy"] for r in (1, 2)]
    assert [r["dev_accuracy"] for r in s3["rounds"]] == devs
    start = json.loads((run / "eval_dev/m_pro_dpo.json").read_text())["accuracy"]
    assert s3["start_dev_accuracy"] == start
    # round 0 is the start policy kept: a round is chosen only when it beats it
    candidates = [start] + devs
    assert s3["chosen_round"] == max(range(3), key=lambda i: (candidates[i], -i))
    chosen = run / "models" / (f"stage3_round{s3['chosen_round']}" if s3["chosen_round"] else "m_pro_dpo")
    assert (run / "models" / "m_rl").resolve() == chosen.resolve()
    pairs = {(c["a"], c["b"]) for c in metrics["comparisons"]}
    assert {("m_rl", "m_plus"), ("m_rl", "m_pro_dpo")} <= pairs
    assert "Stage III" in (run / "report.md").read_text() and "stage III chart" in (run / "report.html").read_text()
    # the pseudo-labels never saw gold: the GRPO data holds questions' prompts and labels only
    rows = [json.loads(line) for line in (run / "data/stage3/round1/train.jsonl").read_text().splitlines()]
    assert all(set(r) == {"id", "prompt", "pseudo_label"} for r in rows)


def test_every_stage_comes_after_its_dependencies(tmp_path):
    """m_rl reads the start policy's dev score, whose stage is added later in the graph: the
    stage list must still run it first (a fresh run failed here; resumed runs hid it)."""
    from w2s.demo import demo_config
    from w2s.pipeline.config import config_from_dict
    from w2s.pipeline.graph import dependencies_first
    from w2s.pipeline.parts import build as build_stages
    from w2s.pipeline.dag import Stage

    data = tmp_path / "d"
    data.mkdir()
    for split in ("train_1", "train_2", "test", "dev"):
        (data / f"{split}.jsonl").write_text('{"id": "a", "question": "q", "answer": "1", "solution": "#### 1"}\n')
    stages, _ = build_stages(config_from_dict(demo_config(data, quick=True, stage3=True)), tmp_path / "run")
    pos = {s.name: i for i, s in enumerate(stages)}
    assert "dev_m_pro_dpo" in set(stages[pos["m_rl"]].deps)
    assert all(pos[d] < pos[s.name] for s in stages for d in s.deps)
    loop = [Stage("a", None, ["b"]), Stage("b", None, ["a"])]
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        dependencies_first(loop)


def test_grpo_from_an_adapter_keeps_it_and_its_kl_is_to_that_adapter(toy_policy, tmp_path):
    """Stage III from an M_plus kept as an adapter: the adapter trains on (one adapter over the
    original base), and with beta > 0 the KL is to a frozen copy of it, not to the bare base: at
    the first step, before any update, policy and reference are the same network (KL exactly 0)."""
    from w2s.training import LoraSettings, SFTSettings, read_lineage, train_sft
    from w2s.training.grpo import train_grpo
    from w2s.training.settings import GRPOSettings
    from w2s.toy import checkpoint_path

    _, questions = toy_policy
    from w2s.steps import sft_records

    base = str(checkpoint_path("strong"))
    lora = LoraSettings(r=4, alpha=8, dropout=0.0)
    adapter = train_sft(base, sft_records(TASK, questions[:32]), tmp_path / "m_plus",
                        SFTSettings(learning_rate=3e-2, batch_size=16, max_steps=4, max_length=256,
                                    save_steps=1000, lora=lora))
    records = [{"prompt": TASK.prompt(q["question"]), "pseudo_label": q["answer"]} for q in questions[:2]]
    out = train_grpo(str(adapter), records, tmp_path / "rl",
                     GRPOSettings(reward="majority", task="toy", beta=0.5, learning_rate=1e-3, max_steps=2,
                                  max_completion_length=32, save_steps=1000, seed=0, lora=lora))
    log = read_lineage(out)["grpo_log"]
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-6), log
    assert all(0.0 <= e["zero_std"] <= 1.0 for e in log)   # TRL's frac_reward_zero_std, kept
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(Path(base).resolve())
    assert not (out / "ref").exists() and not (out / "model.safetensors").exists()


def test_m_rl_is_the_start_policy_when_no_round_beats_it_on_dev():
    from w2s.steps import choose_round, stage3_summary

    rounds = [{"round": 1, "dev_accuracy": 0.50}, {"round": 2, "dev_accuracy": 0.55}]
    assert choose_round(rounds, start_dev_accuracy=0.60) == 0
    assert choose_round(rounds, start_dev_accuracy=0.55) == 0          # a tie keeps the start policy
    assert choose_round(rounds, start_dev_accuracy=0.52) == 2
    assert choose_round(rounds) == 2 and choose_round([{"round": 1, "dev_accuracy": None}], 0.9) == 1
    from w2s.steps import stage3_round_summary

    row = stage3_round_summary({}, [{"reward": 0.5, "zero_std": 0.25}, {"reward": 0.7, "zero_std": 0.75}], None)
    assert row["zero_std_share"] == 0.5 and row["mean_reward"] == pytest.approx(0.6)
    s = stage3_summary(rounds, "majority", "m_pro_dpo", 0.60)
    assert s["chosen_round"] == 0 and s["dev_accuracy"] == 0.60 and "control" not in s
    full = [{"round": 1, "dev_accuracy": 0.5, "coverage": 0.4, "mean_reward": 0.3}]
    assert {k: v for k, v in stage3_summary(full, "majority", "m_pro_dpo", 0.6).items() if k in full[0]} == \
        {"dev_accuracy": 0.6, "coverage": None, "mean_reward": None}   # round 0: the same keys, no labels
    assert stage3_summary(rounds, "gold", "m_pro_dpo", 0.5)["control"] == "gold"


def test_drop_zero_std_masks_completions_without_signal():
    import torch

    from w2s.training.trl_grpo import drop_zero_advantage

    batch = {"advantages": torch.tensor([0.0, 0.0, 0.7, -0.7]), "completion_mask": torch.ones(4, 3, dtype=torch.int),
             "num_items_in_batch": torch.tensor(12), "prompt_ids": torch.zeros(4, 2)}
    out = drop_zero_advantage(batch)
    assert out["completion_mask"].tolist() == [[0] * 3, [0] * 3, [1] * 3, [1] * 3]
    assert int(out["num_items_in_batch"]) == 6 and out["prompt_ids"] is batch["prompt_ids"]
    tools = drop_zero_advantage({**batch, "tool_mask": torch.tensor([[1, 1, 1]] * 3 + [[1, 0, 0]])})
    assert int(tools["num_items_in_batch"]) == 4             # the loss mask counts tool masking too
    assert int(drop_zero_advantage(batch, gather=lambda t: t.repeat(2))["num_items_in_batch"]) == 12


def test_grpo_with_drop_zero_std_runs_on_a_real_trainer(toy_policy, tmp_path, monkeypatch):
    """The hook reaches into TRL's generation batch: a TRL that renamed its keys fails here."""
    from w2s.training import read_lineage, trl_grpo
    from w2s.training.grpo import train_grpo
    from w2s.training.settings import GRPOSettings

    seen = []
    real = trl_grpo.drop_zero_advantage

    def spy(batch, gather=lambda t: t):
        out = real(batch, gather)
        seen.append((batch["advantages"].tolist(), out["completion_mask"].sum(dim=1).tolist()))
        return out

    monkeypatch.setattr(trl_grpo, "drop_zero_advantage", spy)
    model, questions = toy_policy
    # one question labelled right (a signal when its samples differ), one never reachable (none)
    records = [{"prompt": TASK.prompt(q["question"]), "pseudo_label": label}
               for q, label in ((questions[0], questions[0]["answer"]), (questions[1], "-123456"))]
    out = train_grpo(str(model), records, tmp_path / "rl",
                     GRPOSettings(reward="majority", task="toy", learning_rate=1e-4, max_steps=2, num_generations=4,
                                  per_device_train_batch_size=8, max_completion_length=32, save_steps=1000, seed=0,
                                  drop_zero_std=True))
    assert len(read_lineage(out)["grpo_log"]) == 2 and len(seen) == 2
    for advantages, kept_tokens in seen:
        assert all((a == 0) == (n == 0) for a, n in zip(advantages, kept_tokens))
    assert any(a == 0 for advantages, _ in seen for a in advantages)   # the unreachable label's group


def test_the_report_says_when_m_rl_is_round_0():
    from w2s.report import render_markdown
    from w2s.steps import stage3_summary

    rounds = [{"round": 1, "dev_accuracy": 0.50, "n_labelled": 3, "n_questions": 4}]
    metrics = {"models": {}, "comparisons": [], "selection": {},
               "stage3": stage3_summary(rounds, "majority", "m_pro_dpo", 0.60)}
    md = render_markdown(metrics)
    assert "m_rl = round 0 (the start policy" in md and "| 0 (start policy, m_rl) |" in md
    assert "| 1 |" in md and "## Stage III (label-free GRPO)" in md
    metrics["stage3"] = stage3_summary(rounds, "majority", "m_pro_dpo", 0.40)
    md = render_markdown(metrics)
    assert "start policy, m_rl" not in md and "| 1 (m_rl) |" in md


def test_relabel_rule_labels_only_what_stage1_discarded():
    # b: weak 5 == icl 5, kept by Stage I -> never relabelled; a, c, d: the answers disagree
    # (d's in-context answer is truncated: no usable answer, so d was discarded too)
    labels = pl.relabel_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_confidence=0.6)
    assert labels == {"c": "1", "d": "8"}                    # a: its majority 7 holds only 4/8
    assert pl.relabel_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_confidence=0.5) == {"a": "7", "c": "1", "d": "8"}
    assert pl.majority_labels(TASK, QUESTIONS, SAMPLES, min_confidence=0.25)["b"] == "5"
    assert "b" not in pl.relabel_labels(TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_confidence=0.25)
    agreeing = [gen("c", 1)]
    assert "c" not in pl.relabel_labels(TASK, QUESTIONS, SAMPLES, WEAK[:2] + agreeing + WEAK[3:],
                                        ICL[:2] + agreeing + ICL[3:], min_confidence=0.5)
    assert REWARDS.get("relabel").obj.pseudo_label_rule == "relabel"
    assert pl.pseudo_labels("relabel", TASK, QUESTIONS, SAMPLES, WEAK, ICL, min_confidence=0.6,
                            min_support=3, prefer="weak") == labels
