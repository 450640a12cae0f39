"""The toy world: generator, splits, independent evaluator, corpus, tokenizer, task."""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter

import pytest

from w2s.tasks import get_task
from w2s.toy.corpus import BANNED, NOVEL_WORDS, CorpusRecipe, build_corpus
from w2s.toy.world import (WorldConfig, check_solution, evaluate_steps, make_splits, sample_problem,
                           split_signatures, steps_key)

SIZES = {"train_1": 300, "train_2": 300, "test": 200}


@pytest.fixture(scope="module")
def splits():
    return make_splits(0, SIZES)


# --------------------------------------------------------------------------- generator

def test_deterministic_per_seed(splits):
    assert make_splits(0, SIZES) == splits
    other = make_splits(1, SIZES)
    assert [r["question"] for r in other["test"]] != [r["question"] for r in splits["test"]]


def test_test_split_fixed_for_a_seed_whatever_the_train_sizes(splits):
    bigger = make_splits(0, {"train_1": 50, "train_2": 700, "test": 200})
    assert bigger["test"] == splits["test"]
    # and a longer test split extends the shorter one
    assert make_splits(0, {"train_1": 0, "train_2": 0, "test": 250})["test"][:200] == splits["test"]


def test_splits_disjoint_and_ids_unique(splits):
    qs = {name: {r["question"] for r in rows} for name, rows in splits.items()}
    keys = {name: {steps_key(r["steps"]) for r in rows} for name, rows in splits.items()}
    for a, b in [("train_1", "train_2"), ("train_1", "test"), ("train_2", "test")]:
        assert not qs[a] & qs[b]
        assert not keys[a] & keys[b]
    for name, rows in splits.items():
        assert len(qs[name]) == len(rows) == SIZES[name]
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(set(ids)) == len(ids)


def test_independent_evaluator_agrees(splits):
    for rows in splits.values():
        for r in rows:
            ans = evaluate_steps(r["steps"])
            assert str(ans) == r["answer"]
            assert check_solution(r["solution"]) == ans
            assert r["solution"].endswith(f"\n#### {ans}")


def test_solution_restates_every_sentence_in_order(splits):
    for r in splits["test"][:100]:
        sentences = re.findall(r"[^.?]+[.?]", r["question"])[:-1]   # without the final question
        body = r["solution"].split("\n####")[0]
        pos = 0
        for s in sentences:
            s = s.strip()
            at = body.find(s[:-1], pos)
            assert at >= pos, (s, body)
            pos = at + len(s) - 1
        assert body.count(": skip.") == len(sentences) - r["n_steps"] - 1


def test_difficulty_knobs():
    cfg = WorldConfig(min_steps=3, max_steps=3, max_operand=9, max_distractors=0, max_value=99)
    rng = random.Random(0)
    for _ in range(200):
        p = sample_problem(rng, cfg)
        assert len(p.steps) == 4
        assert all(0 <= v <= 99 for v in p.values)
        assert all(s[1] <= 9 for s in p.steps[1:] if len(s) > 1)
        assert all(i is not None for _, i in p.sentences)
        assert evaluate_steps(p.steps) == p.answer


def test_values_in_tokenizer_range_and_distractors_present(splits):
    from w2s.toy.tokenizer import MAX_INT

    rows = [r for rs in splits.values() for r in rs]
    n_distractor_q = 0
    for r in rows:
        assert 2 <= r["n_steps"] <= 6
        nums = [int(t) for t in __import__("re").findall(r"\d+", r["question"] + r["solution"])]
        assert max(nums) <= MAX_INT
        n_distractor_q += len(__import__("re").findall(r"\d+", r["question"])) > r["n_steps"] + 1 - sum(
            1 for s in r["steps"][1:] if len(s) == 1)
    assert n_distractor_q > len(rows) / 3


def test_evaluator_rejects_bad_lists_and_solutions():
    with pytest.raises(ValueError):
        evaluate_steps([["add", 3]])
    with pytest.raises(ValueError):
        evaluate_steps([["start", 3], ["half"]])
    assert check_solution("Mia starts with 3 apples. 3 + 4 = 7.\n#### 7") == 7
    assert check_solution("3 + 4 = 8.\n#### 8") is None        # false equation
    assert check_solution("3 + 4 = 7. 6 * 2 = 12.\n#### 12") is None  # does not chain
    assert check_solution("3 + 4 = 7.\n#### 9") is None        # wrong final line


# --------------------------------------------------------------------------- corpus

def test_corpus_holds_out_task_format_and_splits(splits):
    exclude = split_signatures(splits)
    docs = build_corpus(CorpusRecipe(n_docs=300), seed=0, exclude=exclude)
    assert docs == build_corpus(CorpusRecipe(n_docs=300), seed=0, exclude=exclude)
    text = "\n".join(docs)
    for banned in BANNED:
        assert banned not in text
    for r in splits["test"]:
        assert r["question"] not in text
    # several surface formats, one per document
    assert sum(d.startswith(("Problem:", "Q:", "Task:", "Puzzle:", "Exercise:", "Story:")) for d in docs) > 50
    assert any("+" in d and "=" in d for d in docs) and any(" plus " in d for d in docs)
    # solutions that restate the question's sentences, and documents keyed by nonsense words
    assert sum(" more " in d.split("\n", 1)[-1].split("?")[-1] for d in docs) > 50
    from w2s.toy.corpus import NOVEL_WORDS
    assert sum(d.startswith(tuple(NOVEL_WORDS)) for d in docs) > 20


# --------------------------------------------------------------------------- tokenizer

@pytest.fixture(scope="module")
def tokenizer():
    from w2s.toy.tokenizer import toy_tokenizer

    return toy_tokenizer()


def test_every_integer_is_one_token(tokenizer):
    from w2s.toy.tokenizer import MAX_INT

    unk = tokenizer.unk_token_id
    for n in range(MAX_INT + 1):
        ids = tokenizer(str(n), add_special_tokens=False).input_ids
        spaced = tokenizer(f" {n}", add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] != unk, n
        assert len(spaced) == 1 and spaced[0] not in (unk, ids[0]), n
        assert tokenizer.decode(ids) == str(n) and tokenizer.decode(spaced) == f" {n}"
        # the same token whatever the context: "12*12=." / "has 12 apples: more + 12 ="
        assert tokenizer(f"{n}*{n}=.", add_special_tokens=False).input_ids.count(ids[0]) == 2
        assert tokenizer(f"has {n} apples: more + {n} =", add_special_tokens=False).input_ids.count(spaced[0]) == 2


def test_numbers_follow_their_context_word(tokenizer):
    # "has 12" must be [" has", " 12"]: the token before a number identifies it (induction copying)
    toks = tokenizer.convert_ids_to_tokens(tokenizer("Mia has 12 apples. She buys 5 more: 12 + 5 = 17.",
                                                     add_special_tokens=False).input_ids)
    assert toks == ["Mia", " has", " 12", " apples", ".", " She", " buys", " 5", " more", ":", " 12", " +", " 5",
                    " =", " 17", "."]


def test_answer_marker_is_made_of_known_tokens(tokenizer):
    # `####` is four `#` (the corpus knows `#` from its `## N` markers), not a word no model has seen
    toks = tokenizer.convert_ids_to_tokens(tokenizer("= 72.\n#### 72", add_special_tokens=False).input_ids)
    assert toks[-6:] == ["\n", "#", "#", "#", "#", " 72"]


def test_tokenizer_round_trips_world_and_corpus(tokenizer, splits):
    from transformers import PreTrainedTokenizerFast

    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    task = get_task("toy")
    texts = [task.fewshot_prompt([(r["question"], r["solution"])], r["question"]) for r in splits["test"][:50]]
    texts += build_corpus(CorpusRecipe(n_docs=100), seed=3)
    for t in texts:
        ids = tokenizer(t).input_ids
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == t
    assert len(tokenizer) < 1100


def test_tokenizer_saves_and_loads(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Question: Mia has 12 apples.\nAnswer: 12 + 5 = 17.\n#### 17"
    assert again(text).input_ids == tokenizer(text).input_ids
    assert again.padding_side == "left"
    batch = again(["1 + 2", "Mia has 3 apples."], padding=True).input_ids
    assert batch[0][0] == again.pad_token_id


# --------------------------------------------------------------------------- task

@pytest.fixture(scope="module")
def task():
    return get_task("toy")


def test_task_format(task, splits):
    r = splits["train_1"][0]
    assert task.prompt(r["question"]) == f"Question: {r['question']}\nAnswer:"
    assert task.extract_answer(" " + r["solution"]) == r["answer"]
    assert task.is_correct(" " + r["solution"] + "\n\nQuestion: next", r["answer"])
    assert task.completion(" " + r["solution"] + "\n\nQuestion: more") == " " + r["solution"]


def test_load_questions(task, splits, tmp_path):
    from w2s.io import write_jsonl

    write_jsonl(tmp_path / "t.jsonl", splits["train_1"][:5])
    qs = task.load_questions(str(tmp_path / "t.jsonl"))
    assert [q["id"] for q in qs] == [r["id"] for r in splits["train_1"][:5]]
    assert all(q["answer"] == r["answer"] and q["solution"] == r["solution"]
               for q, r in zip(qs, splits["train_1"]))


@pytest.mark.parametrize("response,answer", [
    (" 3 + 4 = 7.\n#### 7", "7"),
    (" 3 + 4 = 7.\n#### 7\n#### 9", "7"),
    (" 3 + 4 = 7.\n####7", "7"),
    (" 3+4=7. 7*2=14.\nResult: 14\n\nProblem: Mia has 3 apples.", "14"),
    (" Add 4 to 3 to get 7. So the result is 7.", "7"),
    (" 3 plus 4 is 7. => 7", "7"),
    (" Step 1: 3 + 4 = 7. Final: 7", "7"),
    (" 3 + 4 = 7. Total: 7", "7"),
    (" 3 + 4 = 7. Mia ends with 7 apples.", "7"),
    (" 3 + 4 = 7. 7 * 2 = 14", "14"),               # last number
    (" nothing here", ""),
    ("", ""),
])
def test_lenient_extraction(task, response, answer):
    assert task.extract_answer(response) == answer


def test_strict_mode_only_reads_hashes():
    strict = get_task("toy", lenient=False)
    assert strict.extract_answer(" 3 + 4 = 7.\n#### 7") == "7"
    assert strict.extract_answer(" 3 + 4 = 7. Result: 7") == ""


@pytest.mark.parametrize("response,completion", [
    (" 3+4=7. 7*2=14.\nResult: 14\n\nProblem: x", " 3+4=7. 7*2=14.\n#### 14"),
    (" Mia starts with 3 apples. 3 + 4 = 7. So the result is 7.", " Mia starts with 3 apples. 3 + 4 = 7.\n#### 7"),
    (" 3 + 4 = 7. => 7", " 3 + 4 = 7.\n#### 7"),
    (" 3 + 4 = 7", " 3 + 4 = 7\n#### 7"),
    (" 3 + 4 = 7.\n#### 7\n\nQuestion: x", " 3 + 4 = 7.\n#### 7"),
    (" no answer", " no answer"),
])
def test_completion_normalised_to_task_format(task, response, completion):
    out = task.completion(response)
    assert out == completion
    if "####" in out:
        assert task.extract_answer(out) == task.extract_answer(response)


def test_equivalence(task):
    assert task.equivalent("27", "27")
    assert task.equivalent("27", "27.0") and task.equivalent("27.0", "27")
    assert task.equivalent("1,234", "1234")
    assert not task.equivalent("27", "28")
    assert not task.equivalent("", "")
    assert not task.equivalent("", "0") and not task.equivalent("0", "")
    assert not task.equivalent("x", "x")
    assert task.gold_answer({"answer": "steps\n#### 42"}) == "42"
    assert task.gold_answer({"answer": 42}) == "42"


# --------------------------------------------------------------------------- CLI

def test_splits_decontaminated_against_a_corpus():
    world = WorldConfig(max_steps=2, max_distractors=1)   # small space: collisions are common
    used: set = set()
    build_corpus(CorpusRecipe(n_docs=400, world=world), seed=0, used=used)
    dirty = make_splits(0, {"train_1": 300, "train_2": 100, "test": 200}, world)
    assert sum(steps_key(r["steps"]) in used for rows in dirty.values() for r in rows) > 0
    clean = make_splits(0, {"train_1": 300, "train_2": 100, "test": 200}, world, exclude=used)
    for rows in clean.values():
        assert not any(steps_key(r["steps"]) in used or r["question"] in used for r in rows)
    assert clean == make_splits(0, {"train_1": 300, "train_2": 100, "test": 200}, world, exclude=used)


def test_cli_toy_data(tmp_path, splits):
    import json

    import typer
    from typer.testing import CliRunner

    from w2s.cli import toy as toy_cli
    from w2s.io import read_jsonl

    app = typer.Typer()
    toy_cli.register(app)
    app.command("noop")(lambda: None)  # keep `toy` a sub-command group
    out = tmp_path / "data"
    res = CliRunner().invoke(app, ["toy", "data", "--out", str(out), "--n-train-1", "30", "--n-train-2", "30",
                                   "--n-test", "200", "--no-decontaminate", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["test"] == 200
    assert read_jsonl(out / "test.jsonl") == splits["test"]
    assert len(read_jsonl(out / "train_1.jsonl")) == 30
    # default: decontaminated against the shipped models' pretraining corpus
    res = CliRunner().invoke(app, ["toy", "data", "--out", str(tmp_path / "clean"), "--n-train-1", "30",
                                   "--n-train-2", "30", "--n-test", "200", "--max-steps", "3"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "clean" / "world.json").read_text())["decontaminated_against_corpus_seed"] == 0
    bad = CliRunner().invoke(app, ["toy", "data", "--out", str(out), "--min-steps", "5", "--max-steps", "2"])
    assert bad.exit_code == 2 and "min_steps" in bad.output
    res = CliRunner().invoke(app, ["toy", "data", "--out", str(tmp_path / "v11"), "--n-train-1", "5", "--n-train-2",
                                   "5", "--n-test", "200", "--no-decontaminate", "--world", "v11"])
    assert res.exit_code == 0, res.output
    v11 = read_jsonl(tmp_path / "v11" / "test.jsonl")
    assert [r["question"] for r in v11] == [r["question"] for r in splits["test"]]
    assert json.loads((tmp_path / "v11" / "world.json").read_text())["config"]["version"] == "v11"
    bad = CliRunner().invoke(app, ["toy", "data", "--out", str(tmp_path / "v9"), "--world", "v9"])
    assert bad.exit_code == 2 and "unknown toy world version 'v9'" in bad.output and not (tmp_path / "v9").exists()
    bad = CliRunner().invoke(app, ["toy", "pretrain", "--out", str(tmp_path / "p"), "--world", "v9"])
    assert bad.exit_code == 2 and "--world must be one of v10, v11, v12" in bad.output
    bad = CliRunner().invoke(app, ["toy", "pretrain", "--out", str(tmp_path / "p"), "--world", "v23"])
    assert bad.exit_code == 2 and "v19's weak and v22's strong" in bad.output and not (tmp_path / "p").exists()
    bad = CliRunner().invoke(app, ["toy", "pretrain", "--out", str(tmp_path / "p"), "--world", "v24", "--only", "strong"])
    assert bad.exit_code == 2 and "uses v22's strong" in bad.output and not (tmp_path / "p").exists()


def test_dev_split_is_drawn_last_and_changes_nothing_else():
    from w2s.toy.world import make_splits

    sizes = {"train_1": 30, "train_2": 30, "test": 30}
    base = make_splits(5, sizes)
    with_dev = make_splits(5, {**sizes, "dev": 25})
    assert "dev" not in base and len(with_dev["dev"]) == 25
    assert all(with_dev[k] == base[k] for k in base)
    others = {r["question"] for k in base for r in base[k]}
    assert not others & {r["question"] for r in with_dev["dev"]}


# --------------------------------------------------------------------------- world v11

def test_v11_same_questions_as_v10_with_varied_equation_forms(splits):
    v11 = make_splits(0, SIZES, WorldConfig(version="v11"))
    for name, rows in splits.items():   # the questions, steps and answers are v10's
        assert [(r["question"], r["steps"], r["answer"]) for r in v11[name]] == \
               [(r["question"], r["steps"], r["answer"]) for r in rows]
    assert all(check_solution(r["solution"]) == int(r["answer"]) for rows in v11.values() for r in rows)
    # each form occurs, and a v11 solution restates the same sentences as v10's
    text = "\n".join(r["solution"] for rows in v11.values() for r in rows)
    assert re.search(r" 2 \* \d+ = ", text) and re.search(r" 3 \* \d+ = ", text)
    assert re.search(r"\b(\d+) \+ \1 = ", text)
    old = {r["id"]: r["solution"] for rows in splits.values() for r in rows}
    changed = sum(r["solution"] != old[r["id"]] for rows in v11.values() for r in rows)
    assert changed > 0.5 * len(old)
    strip = lambda s: re.sub(r"\d+ [-+*/] \d+ = \d+", "EQ", s)   # noqa: E731
    assert all(strip(r["solution"]) == strip(old[r["id"]]) for rows in v11.values() for r in rows)


def test_world_version_is_recorded_only_from_v11():
    assert "version" not in WorldConfig().to_dict()      # v10's world.json as before versions
    assert WorldConfig(version="v11").to_dict()["version"] == "v11"
    with pytest.raises(ValueError, match="unknown toy world version 'v9'"):
        WorldConfig(version="v9")


def test_check_solution_accepts_commuted_forms_only_where_they_are_valid():
    assert check_solution("Mia has 3 apples. 4 + 3 = 7. 2 * 7 = 14. 14 + 14 = 28.\n#### 28") == 28
    assert check_solution("9 - 4 = 5. 10 - 5 = 5.\n#### 5") is None     # `-` chains on its left side only


def test_v11_corpus_writes_forms_and_symbol_runs_never_the_task_format():
    docs = build_corpus(CorpusRecipe(n_docs=600, share_novel_keys=0.4, world=WorldConfig(version="v11")), seed=0)
    text = "\n".join(docs)
    assert not any(b in text for b in BANNED)
    assert re.search(r"\n([@%&~$*+=><!:|])\1\1\1? \d+", text)   # runs of 3-4 symbols before a final number
    assert re.search(r"\b(\d+) ?\+ ?\1 ?= ?", text) and re.search(r"\b2 ?\* ?\d+ ?= ?", text)
    assert build_corpus(CorpusRecipe(n_docs=600, share_novel_keys=0.4, world=WorldConfig(version="v11")),
                        seed=0) == docs


def test_task_keeps_responses_as_written_without_marker_rewriting():
    keep = get_task("toy", rewrite_markers=False)
    assert keep.completion("Mia has 3 apples: 3 + 4 = 7. Result: 7") == " Mia has 3 apples: 3 + 4 = 7. Result: 7"
    assert keep.strict().rewrite_markers is False
    assert get_task("toy").completion("3 + 4 = 7. Result: 7") == " 3 + 4 = 7.\n#### 7"


def test_v12_corpus_ends_familiar_key_documents_with_their_own_markers():
    familiar = re.compile(r"^(Problem|Q|Task|Puzzle|Exercise|Story):")
    novel_end = re.compile(r"(\n| )(([@%&~$*+=><!:|#])\3+ \d+|[A-Z][a-z]+: \d+|\d+ [a-z]+)$")
    common_end = re.compile(r"(Result|Final|Total): \d+$|=> \d+$|result is \d+\.$|ends with \d+ \w+\.$")

    def share(version):
        docs = build_corpus(CorpusRecipe(n_docs=800, share_novel_keys=0.4, world=WorldConfig(version=version)), seed=0)
        keyed = [d for d in docs if familiar.match(d)]
        return sum(bool(novel_end.search(d) and not common_end.search(d)) for d in keyed) / len(keyed)

    assert share("v11") < 0.02 and 0.35 < share("v12") < 0.65      # NOVEL_FINALS_SHARE = 0.5


def test_v13_corpus_holds_repeat_documents_in_known_pieces_and_v12_is_unchanged():
    from w2s.toy.pretrain import RECIPES
    from w2s.toy.tokenizer import toy_tokenizer

    small = dataclasses.replace(RECIPES["v13"], n_docs=500)
    docs = build_corpus(small, seed=0)
    starts_repeated = re.compile(r"^(\d+ [^\n.]*)(\n|\. )\1(\n|\.|$)")   # a list, then the same list again
    repeats = [d for d in docs if starts_repeated.match(d)]
    assert 0.12 < len(repeats) / len(docs) < 0.28
    tok = toy_tokenizer()
    for doc in repeats:
        assert tok.unk_token_id not in tok(doc, add_special_tokens=False).input_ids
        for block in doc.split("\n\n"):   # each block is one list written 2-8 times
            lines = block.split("\n") if "\n" in block else [x + "." for x in block.split(". ")]
            assert len(lines) >= 2 and len(set(x.rstrip(".") for x in lines)) == 1
    assert not any(b in "\n".join(docs) for b in BANNED)
    v12 = dataclasses.replace(RECIPES["v12"], n_docs=300)
    assert "share_repeat" not in v12.to_dict() and "share_repeat" in small.to_dict()
    assert not any(starts_repeated.match(d) for d in build_corpus(v12, seed=0))


def test_v14_world_has_small_operands_step_like_distractors_and_a_corpus_without_hash_runs():
    from w2s.toy.pretrain import RECIPES

    cfg = WorldConfig(max_steps=3, max_distractors=1, version="v14")
    assert cfg.max_operand == 20 and WorldConfig(version="v13").max_operand == 99
    assert WorldConfig(max_operand=7, version="v14").max_operand == 7          # a config's own value wins
    records = make_splits(0, {"train_1": 300, "train_2": 0, "test": 0}, cfg)["train_1"]
    operands = [s[1] for r in records for s in r["steps"][1:] if len(s) > 1]
    assert operands and max(operands) <= 20
    step_like = re.compile(r"(\w+) (buys \d+ more|gives away \d+) (\w+)\.")
    traps = 0
    for r in records:
        name = r["question"].split()[0]
        for m in step_like.finditer(r["question"]):
            if m.group(1) not in (name, "He", "She"):   # another person doing a step: restated, skipped
                traps += 1
                assert f"{m.group(0)[:-1]}: skip." in r["solution"]
        assert check_solution(r["solution"]) == int(r["answer"]) == evaluate_steps(r["steps"])
    assert traps > 20
    docs = build_corpus(dataclasses.replace(RECIPES["v14"], n_docs=600), seed=0)
    text = "\n".join(docs)
    assert "#" not in text and re.search(r"([@%&~$*+=><!:|])\1\1\1 \d+", text)   # runs, none of `#`
    v13 = "\n".join(build_corpus(dataclasses.replace(RECIPES["v13"], n_docs=600), seed=0))
    assert re.search(r"(^|[^#])### \d+", v13)                                      # v13 as it was


def test_v15_corpus_writes_hash_singly_and_drill_documents_and_v16_writes_short_hash_runs():
    from w2s.toy.pretrain import RECIPES
    from w2s.toy.tokenizer import toy_tokenizer

    assert make_splits(0, {"train_1": 50, "train_2": 0, "test": 0}, WorldConfig(version="v15"))["train_1"] == \
        make_splits(0, {"train_1": 50, "train_2": 0, "test": 0}, WorldConfig(version="v14"))["train_1"]
    docs = build_corpus(dataclasses.replace(RECIPES["v15"], n_docs=800), seed=0)
    text = "\n".join(docs)
    assert "##" not in text and re.search(r" #[A-Z][a-z]+", text) and re.search(r"(^|\n)#1 ", text)
    assert not re.search(r"#+ \d+", text)                       # `#` is never a final marker in v15
    # drill documents: 8-16 one-step problems, one nonsense format, each ending with the same marker
    drills = [d for d in docs if 8 <= d.count("\n\n") + 1 <= 16 and len(d.split("\n\n")[0]) < 220]
    drills = [d for d in drills if len({p.split(":")[0] for p in d.split("\n\n")}) == 1]
    assert len(drills) > 30
    tok = toy_tokenizer()
    for d in drills[:20]:
        assert tok.unk_token_id not in tok(d, add_special_tokens=False).input_ids
        problems = d.split("\n\n")
        assert problems[0].split(":")[0] in NOVEL_WORDS
        assert len({tuple(re.sub(r"-?\d+", "N", p).split()[-2:]) for p in problems}) == 1   # the same marker
    v16 = "\n".join(build_corpus(dataclasses.replace(RECIPES["v16"], n_docs=800), seed=0))
    assert re.search(r"(^|[^#])### \d+", v16) and "####" not in v16 and not re.search(r" #[A-Z]", v16)
    wide = dataclasses.replace(RECIPES["v16"], n_docs=800, longest_run=8)
    assert re.search(r"([@%&~$*+=><!:|])\1{6} \d+", "\n".join(build_corpus(wide, seed=0)))
    assert "longest_run" in wide.to_dict() and "longest_run" not in RECIPES["v16"].to_dict()
    v17 = "\n".join(build_corpus(dataclasses.replace(RECIPES["v17"], n_docs=800), seed=0))
    pairs = re.findall(r"(?:^|\n| )(([@%&~$*+=><!:|#])\2+(?!\2)([@%&~$*+=><!:|#])\3+) \d+", v17)
    assert len({p[0] for p in pairs}) > 20 and all(p[1] != p[2] for p in pairs)   # two runs: `##@@ 12`
    assert any("#" in p[0] for p in pairs) and "####" not in v17
    assert not re.search(r"(?:^|\n| )([@%&~$*+=><!:|#])\1+(?!\1)([@%&~$*+=><!:|#])\2+ \d+", v16)  # v16: one run


def test_v19_corpus_solves_no_distractor_and_stories_keep_theirs():
    from w2s.toy.corpus import RESTATE_SEPS, SKIP_MARKS
    from w2s.toy.pretrain import RECIPES

    skips = [f"{sep}{mark}" for sep in RESTATE_SEPS for mark in SKIP_MARKS]
    v18 = "\n".join(build_corpus(dataclasses.replace(RECIPES["v18"], n_docs=600), seed=0))
    v19 = "\n".join(build_corpus(dataclasses.replace(RECIPES["v19"], n_docs=600), seed=0))
    assert sum(v18.count(s) for s in skips) > 50                  # v18 solves distractors: `Zoe ...: skip`
    assert not any(s in v19 for s in skips)                       # v19 never does
    assert "years old" in v19 and "years old" in v18              # stories still tell distractors
    assert "solved_distractors" in RECIPES["v19"].to_dict() and "solved_distractors" not in RECIPES["v18"].to_dict()


def test_v20_same_questions_and_forms_as_v19_each_distractor_skipped_or_left_out():
    from w2s.toy import checkpoint_path
    from w2s.toy.pretrain import RECIPES
    from w2s.toy.world import base_corpora, n_distractors

    v19 = make_splits(0, SIZES, WorldConfig(version="v19"))
    v20 = make_splits(0, SIZES, WorldConfig(version="v20"))
    kept = left_out = 0
    for name, rows in v19.items():
        for old, new in zip(rows, v20[name], strict=True):
            assert (new["question"], new["steps"], new["answer"]) == (old["question"], old["steps"], old["answer"])
            assert check_solution(new["solution"]) == int(new["answer"])
            assert n_distractors(old) == old["solution"].count(": skip.")     # v19 restates every one
            (old_body, tail), (new_body, new_tail) = old["solution"].split("\n"), new["solution"].split("\n")
            old_s, new_s = re.split(r"(?<=\.) ", old_body), re.split(r"(?<=\.) ", new_body)
            j = 0
            for sentence in old_s:                                            # v20's sentences are v19's, in order,
                if j < len(new_s) and new_s[j] == sentence:
                    j += 1
                else:                                                         # less some `...: skip.`
                    assert sentence.endswith(": skip."), sentence
            assert j == len(new_s) and tail == new_tail
            kept += new["solution"].count(": skip.")
            left_out += n_distractors(old) - new["solution"].count(": skip.")
    assert kept > 100 and left_out > 100 and abs(kept - left_out) < 0.2 * (kept + left_out)
    assert base_corpora("v20") == ("v19",) and "v20" not in RECIPES           # the same corpus ...
    assert checkpoint_path("strong", verify=False, world="v20") == checkpoint_path("strong", verify=False, world="v19")


def test_n_distractors_counts_the_sentences_beyond_the_step_list(splits):
    from w2s.toy.world import n_distractors

    counts = [n_distractors(r) for rows in splits.values() for r in rows]
    assert set(counts) == {0, 1, 2}                                           # v10: 0-2 a question
    assert all(n_distractors(r) == r["solution"].count(": skip.") for rows in splits.values() for r in rows)
    stepless = [{k: v for k, v in r.items() if k != "steps"} for rows in splits.values() for r in rows]
    assert [n_distractors(r) for r in stepless] == counts                    # a run's question files: no steps


def test_v21_each_gold_follows_one_of_three_plans_with_v19s_questions_and_equations():
    from w2s.toy.world import n_distractors

    v19 = make_splits(0, SIZES, WorldConfig(version="v19"))
    v21 = make_splits(0, SIZES, WorldConfig(version="v21"))
    plans = {"restate": 0, "equations": 0, "story": 0}
    equations = re.compile(r"\d+ [-+*/] \d+ = \d+")
    for name, rows in v19.items():
        for old, new in zip(rows, v21[name], strict=True):
            assert (new["question"], new["steps"], new["answer"]) == (old["question"], old["steps"], old["answer"])
            assert check_solution(new["solution"]) == int(new["answer"])
            assert equations.findall(new["solution"]) == equations.findall(old["solution"])   # v19's forms
            if new["solution"].startswith("Start: "):
                plans["equations"] += 1
                assert re.fullmatch(r"Start: \d+\.( \d+ [-+*/] \d+ = \d+\.)+\n#### \d+", new["solution"])
            elif ", so now " in new["solution"]:
                plans["story"] += 1
                told = [s for s in re.split(r"(?<=\.) ", new["question"]) if s in new["solution"] and "=" not in s]
                assert len(told) == n_distractors(old) + 1 and ": skip." not in new["solution"]   # start + distractors as written
            else:
                plans["restate"] += 1
                assert new["solution"] == old["solution"]
    assert all(n > 0.25 * sum(plans.values()) for n in plans.values()), plans


def test_a_world_with_bases_from_two_versions_is_kept_apart_from_both_corpora(monkeypatch):
    from w2s.toy import checkpoint_path
    from w2s.toy import pretrain
    from w2s.toy.world import base_corpora

    assert checkpoint_path("weak", world="v23") == checkpoint_path("weak", world="v19")
    assert checkpoint_path("strong", world="v23") == checkpoint_path("strong", world="v22")
    assert checkpoint_path("strong", world="v21") == checkpoint_path("strong", world="v19")
    assert (base_corpora("v23"), base_corpora("v21"), base_corpora("v12")) == (("v19", "v22"), ("v19",), ("v12",))
    assert "v23" not in pretrain.RECIPES and pretrain.RECIPES["v24"] == pretrain.RECIPES["v22"]
    assert checkpoint_path("strong", world="v24") == checkpoint_path("strong", world="v22")
    small = {w: dataclasses.replace(pretrain.RECIPES[w], n_docs=300) for w in ("v19", "v22")}
    monkeypatch.setattr(pretrain, "RECIPES", {**pretrain.RECIPES, **small})
    v19, v22 = (pretrain.corpus_signatures(world=w) for w in ("v19", "v22"))
    both = pretrain.corpus_signatures(world="v23")
    assert both == v19 | v22 and len(both) > max(len(v19), len(v22))    # neither corpus holds the other
    assert pretrain.corpus_signatures(world="v21") == v19                # one base version: its corpus alone


#: the first 150 documents of each version's corpus (seed 0): the shipped models were pretrained on
#: these corpora, so a change to the corpus code must leave them byte-identical (a new behaviour
#: goes behind a new recipe field, as `mixed_plans`)
CORPUS_SHA256 = {"v10": "3d3dc6846d8a6040", "v11": "74721f187b43ef6b", "v12": "3f078a7804d9830f",
                 "v13": "be17e1b21b6f4d6f", "v14": "179144b65dea6edc", "v15": "e2c0b58f7cae567a",
                 "v16": "ab97ff2f5294836a", "v17": "770b4f9002ebfa00", "v18": "bb8f47aad86fcfb8",
                 "v19": "7ee4d16e31212142", "v22": "13d33330fc42db42", "v25": "083ee8084b8d902a",
                 "v27": "445164edd1cbd879", "v29": "3c62a7947bd71b81"}


@pytest.mark.parametrize("version", sorted(CORPUS_SHA256))
def test_each_versions_corpus_is_unchanged(version):
    import hashlib

    from w2s.toy.pretrain import RECIPES

    docs = build_corpus(dataclasses.replace(RECIPES[version], n_docs=150), seed=0)
    assert hashlib.sha256("\n".join(docs).encode()).hexdigest()[:16] == CORPUS_SHA256[version]


def test_v25_corpus_solves_stories_with_distractors_and_no_other_plan():
    from w2s.toy.pretrain import RECIPES
    from w2s.toy.world import NAMES

    def solved(recipe):
        docs = build_corpus(dataclasses.replace(recipe, n_docs=600), seed=0)
        return [b for d in docs for b in d.split("\n\n") if "How many" in b and ("=" in b or " is " in b)]

    def distracted(problem: str) -> bool:
        question = problem.split("How many")[0]
        return "years old" in question or sum(f"{name} " in question for name, _ in NAMES) > 1

    story = re.compile(r", so now (he|she) has ")
    v25 = [(distracted(b), bool(story.search(b))) for b in solved(RECIPES["v25"])]
    assert sum(d for d, _ in v25) > 100 and all(s for d, s in v25 if d)      # a distractor: always a story
    assert sum(s and not d for d, s in v25) > 20                              # stories without one too
    assert not any(distracted(b) for b in solved(RECIPES["v22"]))             # v22: no solved distractor
    assert RECIPES["v25"].to_dict()["story_distractors"] and "story_distractors" not in RECIPES["v22"].to_dict()
    with pytest.raises(ValueError, match="needs mixed_plans"):
        build_corpus(dataclasses.replace(RECIPES["v19"], n_docs=5, story_distractors=True))


def test_v27_corpus_solves_distractors_in_a_quarter_of_documents_in_every_plan():
    from w2s.toy.pretrain import RECIPES
    from w2s.toy.world import NAMES

    def problems(doc: str) -> list[str]:
        return [b for b in doc.split("\n\n") if "How many" in b]

    def distracted(problem: str) -> bool:
        question = problem.split("How many")[0]
        return "years old" in question or sum(f"{name} " in question for name, _ in NAMES) > 1

    docs = [d for d in build_corpus(dataclasses.replace(RECIPES["v27"], n_docs=800), seed=0) if problems(d)]
    with_distractors = [d for d in docs if any(distracted(p) for p in problems(d))]
    assert 0.18 < len(with_distractors) / len(docs) < 0.32                       # a quarter of the documents
    solved = [p for d in with_distractors for p in problems(d) if distracted(p)]
    story = re.compile(r", so now (he|she) has ")
    stories = sum(bool(story.search(p)) for p in solved)
    assert 0.2 < stories / len(solved) < 0.5                                     # a distractor does not name the plan
    restated = [p for p in solved if not story.search(p) and p.split("How many")[0].split(". ")[1][:12] in
                p.split("How many")[1]]                                            # the question's sentences restated
    assert restated and len(restated) < len(solved) - stories                     # chains beside them
    assert RECIPES["v27"].to_dict()["distractor_docs"] == 0.25 and "distractor_docs" not in RECIPES["v22"].to_dict()
    with pytest.raises(ValueError, match="distractor_docs chooses"):
        build_corpus(dataclasses.replace(RECIPES["v18"], n_docs=5, distractor_docs=0.5))


def test_v29_corpus_solves_each_document_in_one_plan():
    from w2s.toy import corpus
    from w2s.toy.pretrain import RECIPES
    from w2s.toy.solutions import PLANS

    plans_of_docs: list[list[str]] = []   # the plan of each problem, per problem or drill document
    render_all, render = corpus._render_all, corpus.render_problem

    def each_document(*args, **kwargs):
        plans_of_docs.append([])
        return render_all(*args, **kwargs)

    def each_problem(p, fmt, forms=None, plan=None):
        plans_of_docs[-1].append(plan)
        return render(p, fmt, forms, plan)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpus, "_render_all", each_document)
        mp.setattr(corpus, "render_problem", each_problem)
        build_corpus(dataclasses.replace(RECIPES["v29"], n_docs=400), seed=0)
    assert len(plans_of_docs) > 120 and all(len(plans) >= 1 for plans in plans_of_docs)
    assert all(len(set(plans)) == 1 for plans in plans_of_docs)                 # one plan a document
    shares = Counter(plans[0] for plans in plans_of_docs)
    assert set(shares) == set(PLANS) and min(shares.values()) > len(plans_of_docs) / 5  # drawn per document
    assert RECIPES["v29"].to_dict()["document_plans"] and "document_plans" not in RECIPES["v27"].to_dict()
    with pytest.raises(ValueError, match="document_plans draws one plan"):
        build_corpus(dataclasses.replace(RECIPES["v22"], n_docs=5, document_plans=True))


def test_v22_corpus_mixes_the_three_plans_within_a_document():
    from w2s.toy.pretrain import RECIPES

    docs = build_corpus(dataclasses.replace(RECIPES["v22"], n_docs=400), seed=0)
    solved = [d for d in docs if re.search(r"\d ?[-+*/] ?\d+ ?= ?\d", d) and "\n\n" in d and "How many" in d]
    story = re.compile(r", so now (he|she) has (\d+ ?[-+*/]|\d+ (plus|minus|times|divided)|add |take |double |triple |halve )")
    restated = re.compile(r"(more|away|his|her) \w+(: |, so |; | -> | gives )(add |take |double |triple |halve |\d)")
    mixed = [d for d in solved if story.search(d) and restated.search(d)]
    assert len(mixed) > 20                                         # story and restated problems in one document
    v19 = "\n".join(build_corpus(dataclasses.replace(RECIPES["v19"], n_docs=400), seed=0))
    assert not story.search(v19) and ", so now she has " in v19    # v19's stories state totals, never equations
    assert RECIPES["v22"].to_dict()["mixed_plans"] and "mixed_plans" not in RECIPES["v19"].to_dict()
