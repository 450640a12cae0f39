"""Generation contract on the hf backend with a tiny local model: order, determinism, stop
strings, finish_reason, resume, n-sampling, adapters, replay, CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from w2s.generation import SamplingConfig, cut_at_stop, derive_seed, generate
from w2s.generation import hf as hf_backend
from w2s.generation.hf import length_sorted_batches, load_model
from w2s.io import read_jsonl

QUESTIONS = [
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "A train travels 60 miles per hour for 3 hours. How far does it go?",
    "Sara reads 12 pages a day. How many pages does she read in a week?",
    "What is 7 times 8?",
    "A box holds 24 pencils. If 5 boxes are bought and 17 pencils are used, how many are left over after the week?",
    "Ben is 5 years older than Ann, who is 9. How old is Ben?",
    "There are 4 rows of 6 chairs. How many chairs?",
]


def prompts(k=len(QUESTIONS)):
    return [{"id": f"q{i}", "prompt": f"Question: {q}\nAnswer:"} for i, q in enumerate(QUESTIONS[:k])]


GREEDY = SamplingConfig(max_new_tokens=12)
SAMPLED = SamplingConfig(max_new_tokens=10, temperature=1.0, top_p=0.95, n=3, seed=7)


def run(model, ps=None, sampling=GREEDY, **kw):
    kw.setdefault("progress", False)
    return generate(str(model), prompts() if ps is None else ps, sampling, **kw)


# ---- pure pieces ----------------------------------------------------------------------

def test_sampling_config_validates():
    with pytest.raises(TypeError):
        SamplingConfig()  # max_new_tokens is always explicit
    for bad in ({"max_new_tokens": 0}, {"max_new_tokens": 5, "temperature": -1},
                {"max_new_tokens": 5, "top_p": 0}, {"max_new_tokens": 5, "n": 0},
                {"max_new_tokens": 5, "stop": ("",)}):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)
    assert SamplingConfig(max_new_tokens=3, stop="\n").stop == ("\n",)


def test_cut_at_stop_uses_earliest_stop():
    assert cut_at_stop("a b\nQuestion: c", ("\nQuestion:", " b")) == ("a", True)
    assert cut_at_stop("abc", ("x",)) == ("abc", False)


def test_seeds_depend_only_on_seed_id_and_index():
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    assert len({derive_seed(0, "a", 0), derive_seed(0, "a", 1), derive_seed(1, "a", 0),
                derive_seed(0, "b", 0)}) == 4


def test_length_sorted_batches_respect_size_and_budget():
    lengths = [5, 50, 10, 40, 20]
    assert length_sorted_batches(lengths, 2, None, 10) == [[1, 3], [4, 2], [0]]
    batches = length_sorted_batches(lengths, 10, 130, 10)
    assert sorted(i for b in batches for i in b) == list(range(5))
    for b in batches:
        assert len(b) == 1 or len(b) * (max(lengths[i] for i in b) + 10) <= 130


def test_bad_prompts_and_backend_are_clear_errors(tiny_model):
    with pytest.raises(ValueError, match="duplicate"):
        run(tiny_model, [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(ValueError, match="unknown generation backend"):
        run(tiny_model, backend="nope")


# ---- hf backend -------------------------------------------------------------------------

def test_records_in_input_order_with_contract_fields(tiny_model):
    ps = prompts()[::-1]  # lengths unsorted; the backend sorts internally
    out = run(tiny_model, ps, batch_size=3)
    assert [r["id"] for r in out] == [p["id"] for p in ps]
    for r, p in zip(out, ps):
        assert set(r) >= {"id", "prompt", "response", "sample_index", "finish_reason", "n_tokens", "model"}
        assert r["prompt"] == p["prompt"] and r["sample_index"] == 0 and r["model"] == str(tiny_model)
        assert r["finish_reason"] in ("stop", "length") and 1 <= r["n_tokens"] <= 12


def test_batched_greedy_equals_one_at_a_time(tiny_model):
    batched = run(tiny_model, batch_size=8)
    single = run(tiny_model, batch_size=1)
    assert [r["response"] for r in batched] == [r["response"] for r in single]
    assert [r["n_tokens"] for r in batched] == [r["n_tokens"] for r in single]


def test_stop_strings_cut_and_finish_reason(tiny_model):
    long = SamplingConfig(max_new_tokens=16, temperature=1.0, seed=3)
    free = run(tiny_model, sampling=long)
    assert all(r["finish_reason"] == "length" and r["n_tokens"] == 16 for r in free)
    # choose a stop string the model really emits mid-response in the first sample
    text = free[0]["response"]
    stop = text[len(text) // 2: len(text) // 2 + 2]
    stopped = run(tiny_model, sampling=dataclasses.replace(long, stop=(stop,)))
    for a, b in zip(free, stopped):
        if stop in a["response"]:
            assert b["response"] == a["response"][:a["response"].find(stop)]
            assert b["finish_reason"] == "stop" and b["n_tokens"] <= a["n_tokens"]
        else:
            assert b == {**a}
    assert stopped[0]["finish_reason"] == "stop" and stopped[0]["n_tokens"] < 16


def test_eos_stops_and_is_not_in_the_text(tiny_model):
    lm = load_model(str(tiny_model))
    encoded = hf_backend.encode_prompts(lm, [p["prompt"] for p in prompts(2)])
    free = hf_backend.decode_batch(lm, encoded, [0, 0], GREEDY)
    tokens = lm.tokenizer(free[0]["response"], add_special_tokens=False)["input_ids"]
    as_eos = dataclasses.replace(lm, eos_ids=frozenset({tokens[0]}))
    ended = hf_backend.decode_batch(as_eos, encoded, [0, 0], GREEDY)
    assert ended[0] == {"response": "", "finish_reason": "stop", "n_tokens": 1}


def test_sampling_is_deterministic_and_independent_of_batching(tiny_model):
    a = run(tiny_model, sampling=SAMPLED, batch_size=4)
    b = run(tiny_model, prompts()[::-1][:5], sampling=SAMPLED, batch_size=2)
    by_key = {(r["id"], r["sample_index"]): r["response"] for r in a}
    assert all(by_key[(r["id"], r["sample_index"])] == r["response"] for r in b)
    assert [(r["id"], r["sample_index"]) for r in a] == [(p["id"], i) for p in prompts() for i in range(3)]
    assert len({r["response"] for r in a if r["id"] == "q0"}) > 1  # samples differ from each other
    other = run(tiny_model, sampling=dataclasses.replace(SAMPLED, seed=8), batch_size=4)
    assert [r["response"] for r in other] != [r["response"] for r in a]


def test_samples_of_one_prompt_share_its_prefill(tiny_model):
    """n samples of a prompt in one batch: the prompt is prefilled once (a few-shot prompt's
    prefill costs more than its new tokens) and the samples equal those decoded one per batch."""
    from w2s.generation import hf as hf_backend

    run(tiny_model, sampling=SAMPLED, batch_size=1)  # load the model
    lm = hf_backend._LOADED[1]
    prefill_rows = []
    hook = lm.model.register_forward_pre_hook(
        lambda mod, args, kwargs: prefill_rows.append(kwargs["input_ids"].shape) if kwargs["input_ids"].shape[1] > 1 else None,
        with_kwargs=True)
    try:
        shared = run(tiny_model, sampling=SAMPLED, batch_size=64)
    finally:
        hook.remove()
    alone = run(tiny_model, sampling=SAMPLED, batch_size=1)
    assert [r["response"] for r in shared] == [r["response"] for r in alone]
    assert sum(shape[0] for shape in prefill_rows) == len(prompts())  # one prefill row per prompt, not per sample


def test_top_k_one_is_greedy(tiny_model):
    greedy = run(tiny_model)
    top1 = run(tiny_model, sampling=SamplingConfig(max_new_tokens=12, temperature=0.7, top_k=1, seed=5))
    assert [r["response"] for r in top1] == [r["response"] for r in greedy]


def test_greedy_n_samples_are_copies(tiny_model):
    out = run(tiny_model, sampling=SamplingConfig(max_new_tokens=8, n=2))
    assert [r["sample_index"] for r in out[:2]] == [0, 1] and out[0]["response"] == out[1]["response"]


def test_resume_after_interruption_generates_only_missing(tiny_model, tmp_path, monkeypatch):
    path = tmp_path / "g.jsonl"
    full = run(tiny_model, sampling=SAMPLED, batch_size=4)
    real, calls = hf_backend.decode_batch, []

    def interrupted(lm, batch, seeds, sampling):
        if calls:
            raise KeyboardInterrupt
        calls.append(len(batch))
        return real(lm, batch, seeds, sampling)

    monkeypatch.setattr(hf_backend, "decode_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_model, sampling=SAMPLED, batch_size=4, out_path=path)
    assert len(read_jsonl(path)) == 4
    with open(path, "a") as f:
        f.write('{"id": "q0", "prom')  # a torn line from a crash mid-write

    counted = []
    monkeypatch.setattr(hf_backend, "decode_batch",
                        lambda lm, batch, seeds, s: counted.append(len(batch)) or real(lm, batch, seeds, s))
    resumed = run(tiny_model, sampling=SAMPLED, batch_size=4, out_path=path)
    assert sum(counted) == len(full) - 4
    assert resumed == full
    assert len(read_jsonl(path)) == len(full)
    counted.clear()
    assert run(tiny_model, sampling=SAMPLED, out_path=path) == full and counted == []


def test_resume_refuses_a_file_from_another_model(tiny_model, tiny_model_b, tmp_path):
    path = tmp_path / "g.jsonl"
    run(tiny_model, prompts(2), out_path=path)
    with pytest.raises(ValueError, match="was generated by .*move it away to regenerate it"):
        run(tiny_model_b, prompts(2), out_path=path)


def test_peft_adapter_is_applied(tiny_model, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    peft_model.merge_and_unload().save_pretrained(tmp_path / "merged")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "merged" / f).write_bytes((tiny_model / f).read_bytes())

    with_adapter = run(tiny_model, adapter=str(tmp_path / "adapter"))
    merged = run(tmp_path / "merged")
    plain = run(tiny_model)
    assert [r["response"] for r in with_adapter] == [r["response"] for r in merged]
    assert [r["response"] for r in with_adapter] != [r["response"] for r in plain]
    assert with_adapter[0]["model"] == f"{tiny_model}+{tmp_path / 'adapter'}"


def test_unload_frees_the_cached_model(tiny_model):
    from w2s.generation import unload

    run(tiny_model, prompts(1))
    assert hf_backend._LOADED is not None
    unload()
    assert hf_backend._LOADED is None


# ---- replay -----------------------------------------------------------------------------

def test_replay_returns_recorded_generations(tmp_path):
    recorded = tmp_path / "rec.jsonl"
    recorded.write_text("\n".join(json.dumps(r) for r in [
        {"id": 0, "prompt": "old", "response": "A #### 1"},
        {"id": "1", "response": "B", "sample_index": 0, "finish_reason": "length", "n_tokens": 9, "model": "w"},
    ]) + "\n")
    ps = [{"id": "1", "prompt": "P1"}, {"id": "0", "prompt": "P0"}]
    out = generate(str(recorded), ps, GREEDY, backend="replay", progress=False, out_path=tmp_path / "o.jsonl")
    assert [(r["id"], r["prompt"], r["response"], r["finish_reason"]) for r in out] == [
        ("1", "P1", "B", "length"), ("0", "P0", "A #### 1", "stop")]
    assert out[0]["model"] == "w" and out[0]["n_tokens"] == 9
    from w2s.generation import GenerationError
    with pytest.raises(GenerationError, match="no recorded generation"):
        generate(str(recorded), [{"id": "2", "prompt": "x"}], GREEDY, backend="replay", progress=False)


# ---- CLI --------------------------------------------------------------------------------

def test_cli_generate_zero_and_few_shot(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from w2s.cli import _register, app

    _register()
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"id": f"q{i}", "question": q, "answer": "#### 1"})
                                   for i, q in enumerate(QUESTIONS)) + "\n")
    demos = tmp_path / "demos.jsonl"
    demos.write_text("\n".join(json.dumps({"id": f"q{i}", "prompt": "", "response": f" It is {i}.\n#### {i}"})
                               for i in range(len(QUESTIONS))) + "\n")
    runner = CliRunner()
    common = ["--model", str(tiny_model), "--input", str(questions), "--max-new-tokens", "6", "--quiet", "--json"]
    result = runner.invoke(app, ["generate", *common, "--out", str(tmp_path / "zero.jsonl")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["records"] == len(QUESTIONS) and summary["generated_now"] == len(QUESTIONS)
    zero = read_jsonl(tmp_path / "zero.jsonl")
    assert zero[0]["prompt"] == f"Question: {QUESTIONS[0]}\nAnswer:"

    result = runner.invoke(app, ["generate", *common, "--out", str(tmp_path / "few.jsonl"), "--shots", "2",
                                 "--demos", str(demos), "--n", "2", "--temperature", "1.0"])
    assert result.exit_code == 0, result.output
    few = read_jsonl(tmp_path / "few.jsonl")
    assert len(few) == 2 * len(QUESTIONS)
    assert all(r["prompt"].count("Question:") == 3 for r in few)

    result = runner.invoke(app, ["generate", *common, "--out", str(tmp_path / "x.jsonl"), "--shots", "2"])
    assert result.exit_code == 2 and "--demos" in result.output

    # demonstrations whose ids join no question: an error, not zero-shot prompts with exit 0
    stray = tmp_path / "stray.jsonl"
    stray.write_text("\n".join(json.dumps({"id": str(i), "prompt": "", "response": f" It is {i}.\n#### {i}"})
                               for i in range(len(QUESTIONS))) + "\n")
    result = runner.invoke(app, ["generate", *common, "--out", str(tmp_path / "y.jsonl"), "--shots", "2",
                                 "--demos", str(stray)])
    assert result.exit_code == 2 and "joins a question id" in result.output
    assert not (tmp_path / "y.jsonl").exists()


def test_cli_generate_and_eval_take_custom_task_options(tmp_path):
    """`w2s generate` / `w2s eval` build their task like every command (make_task), so the
    custom task works with its field options."""
    from typer.testing import CliRunner

    from w2s.cli import _register, app

    _register()
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "problem": "2+2?", "target": "4"}) + "\n")
    gens = tmp_path / "g.jsonl"
    gens.write_text(json.dumps({"id": "a", "sample_index": 0, "response": "The answer is 4"}) + "\n")
    opts = ["--task", "custom", "--task-option", "question_field=problem", "--task-option", "answer_field=target"]
    res = CliRunner().invoke(app, ["eval", *opts, "--model", str(gens), "--data", str(data), "--n", "0",
                                   "--backend", "replay", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["accuracy"] == 1.0
    res = CliRunner().invoke(app, ["generate", *opts, "--model", str(gens), "--input", str(data), "--backend", "replay",
                                   "--out", str(tmp_path / "o.jsonl"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert read_jsonl(tmp_path / "o.jsonl")[0]["response"] == "The answer is 4"
