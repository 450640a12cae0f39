"""Hostile input files and a full disk (issue 19 item 6): each is a one-line error naming the
file, row and field, never a traceback, a false message or a silent choice."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from w2s.generation import GenerationError, SamplingConfig, generate
from w2s.generation import resumable
from w2s.io import DataError, JsonlAppender, read_json, read_jsonl, read_records

GOOD = {"id": "q0", "question": "What is 1?", "answer": "1"}


def _lines(path: Path, *rows: str) -> Path:
    path.write_text("".join(r + "\n" for r in rows))
    return path


# ---- rows a JSON reader must refuse ---------------------------------------------------------------

def test_a_100000_deep_row_is_a_row_error(tmp_path):
    deep = '{"id": "q1", "question": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = _lines(tmp_path / "q.jsonl", json.dumps(GOOD), deep)
    with pytest.raises(DataError, match=r"q.jsonl, row 2: JSON nested too deeply"):
        read_records(path)
    (tmp_path / "q.json").write_text("[" + json.dumps(GOOD) + ", " + deep + "]")
    with pytest.raises(DataError, match=r"q.json: JSON nested too deeply"):
        read_records(tmp_path / "q.json")


@pytest.mark.parametrize("row, field", [
    ('{"id": "q1", "question": "bad \\ud800 text"}', "question"),
    ('{"id": "q1", "question": "x", "tags": ["ok", {"deep": "\\udfff"}]}', "tags"),
    ('{"id": "q1", "question": "x", "\\ud83d": 1}', "\\ud83d"),
])
def test_a_lone_surrogate_is_a_row_error_naming_the_field(tmp_path, row, field):
    path = _lines(tmp_path / "q.jsonl", json.dumps(GOOD), row)
    with pytest.raises(DataError, match=r"row 2, field .*lone UTF-16 surrogate") as e:
        read_jsonl(path)
    assert e.value.row == 2 and e.value.field == field.encode().decode("unicode_escape")


def test_paired_surrogates_are_text(tmp_path):
    path = _lines(tmp_path / "q.jsonl", '{"id": "q1", "question": "smile \\ud83d\\ude00"}')
    assert read_jsonl(path)[0]["question"] == "smile \U0001F600"


def test_duplicate_keys_are_a_row_error_naming_the_key(tmp_path):
    path = _lines(tmp_path / "q.jsonl", json.dumps(GOOD), '{"id": "q1", "question": "a", "question": "b"}')
    with pytest.raises(DataError, match=r"q.jsonl, row 2, field 'question': duplicate key"):
        read_records(path)
    nested = _lines(tmp_path / "n.jsonl", '{"id": "q1", "question": "a", "meta": {"k": 1, "k": 2}}')
    with pytest.raises(DataError, match=r"row 1, field 'k': duplicate key"):
        read_jsonl(nested)
    (tmp_path / "state.json").write_text('{"a": 1, "a": 2}')
    with pytest.raises(DataError, match=r"state.json, field 'a': duplicate key"):
        read_json(tmp_path / "state.json")


def test_a_torn_last_line_is_still_tolerated_when_streaming(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(GOOD) + '\n{"id": "q1", "quest')
    assert read_jsonl(path, tolerate_partial_tail=True) == [GOOD]
    with pytest.raises(DataError, match="row 2: invalid JSON"):
        read_jsonl(path)


# ---- duplicate ids ---------------------------------------------------------------------------------

def test_conflicting_generations_name_both_rows_identical_repeats_pass(tmp_path):
    gen = {"id": "q0", "sample_index": 0, "prompt": "p", "response": "#### 1"}
    other = {**gen, "sample_index": 1, "response": "#### 2"}
    path = _lines(tmp_path / "g.jsonl", *(json.dumps(r) for r in (gen, other, {**gen, "response": "#### 7"})))
    with pytest.raises(DataError, match=r"g.jsonl, row 3, field 'id': rows 1 and 3 have the same id 'q0', "
                                        r"sample_index 0 but different contents"):
        read_records(path)
    _lines(path, *(json.dumps(r) for r in (gen, other, gen)))
    assert len(read_records(path)) == 3  # what an interrupted, resumed run may leave


def test_conflicting_questions_name_both_rows(tmp_path):
    path = _lines(tmp_path / "q.jsonl", json.dumps(GOOD), json.dumps({**GOOD, "id": "q1"}),
                  json.dumps({**GOOD, "question": "What is 2?"}))
    with pytest.raises(DataError, match=r"rows 1 and 3 have the same id 'q0'"):
        read_records(path)
    with pytest.raises(DataError, match=r"rows 1 and 3"):  # ids 0 and "0" are one id
        read_records(_lines(tmp_path / "i.jsonl", '{"id": 0, "question": "a"}', '{"id": 1, "question": "b"}',
                            '{"id": "0", "question": "c"}'))


def test_preference_pairs_may_share_an_id(tmp_path):
    pairs = [{"id": "q0", "prompt": "p", "chosen": c, "rejected": "r"} for c in ("a", "b")]
    assert len(read_records(_lines(tmp_path / "p.jsonl", *map(json.dumps, pairs)))) == 2
    with pytest.raises(DataError, match="rows 1 and 2"):
        read_records(tmp_path / "p.jsonl", unique=("id",))


def test_a_resumed_output_file_with_two_answers_for_one_sample_is_refused(tmp_path):
    recorded = _lines(tmp_path / "rec.jsonl", *(json.dumps({"id": i, "response": f"r{i}"}) for i in ("a", "b")))
    prompts = [{"id": "a", "prompt": "A"}, {"id": "b", "prompt": "B"}]
    out = tmp_path / "out.jsonl"
    greedy = SamplingConfig(max_new_tokens=4)
    first = generate(str(recorded), prompts, greedy, backend="replay", out_path=out, progress=False)
    with open(out, "a") as f:  # an identical repeat: resuming still works
        f.write(json.dumps(first[0]) + "\n")
    assert generate(str(recorded), prompts, greedy, backend="replay", out_path=out, progress=False) == first
    with open(out, "a") as f:
        f.write(json.dumps({**first[1], "response": "something else"}) + "\n")
    with pytest.raises(DataError, match=r"out.jsonl, row 4, field 'id': rows 2 and 4 are different records "
                                        r"for id 'b', sample 0"):
        generate(str(recorded), prompts, greedy, backend="replay", out_path=out, progress=False)


# ---- a full disk -------------------------------------------------------------------------------------

class OneAtATime:
    """A backend that yields one record per batch and counts what it was asked for."""
    asked: list[str] = []

    def __init__(self, model, adapter=None):
        pass

    def run(self, items, sampling):
        for it in items:
            OneAtATime.asked.append(it.id)
            yield [{"id": it.id, "sample_index": it.sample_index, "response": f"answer {it.id}",
                    "finish_reason": "stop", "n_tokens": 2}]


PROMPTS = [{"id": f"q{i}", "prompt": f"Q{i}"} for i in range(3)]


def _disk_full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_streaming_says_what_the_file_keeps_and_a_rerun_resumes(tmp_path, monkeypatch):
    out, real_append, calls = tmp_path / "g.jsonl", JsonlAppender.append, []

    def full_after_one(self, records):
        calls.append(records)
        if len(calls) > 1:
            _disk_full()
        real_append(self, records)
    monkeypatch.setattr(JsonlAppender, "append", full_after_one)
    OneAtATime.asked = []
    with pytest.raises(GenerationError, match=rf"{out}: No space left on device; 1 of the 3 records are in it "
                                              "and are kept: free space and rerun"):
        generate("m", PROMPTS, SamplingConfig(max_new_tokens=4), backend=f"{__name__}:OneAtATime",
                 out_path=out, progress=False)
    assert [r["id"] for r in read_jsonl(out)] == ["q0"]
    monkeypatch.setattr(JsonlAppender, "append", real_append)
    OneAtATime.asked = []
    records = generate("m", PROMPTS, SamplingConfig(max_new_tokens=4), backend=f"{__name__}:OneAtATime",
                       out_path=out, progress=False)
    assert OneAtATime.asked == ["q1", "q2"] and [r["id"] for r in records] == ["q0", "q1", "q2"]


def test_a_full_disk_while_reordering_keeps_every_record(tmp_path, monkeypatch):
    out = tmp_path / "g.jsonl"
    monkeypatch.setattr(resumable, "write_jsonl", _disk_full)
    with pytest.raises(GenerationError, match=r"while putting the finished file in input order; all 3 records"):
        generate("m", PROMPTS, SamplingConfig(max_new_tokens=4), backend=f"{__name__}:OneAtATime",
                 out_path=out, progress=False)
    assert len(read_jsonl(out)) == 3
    monkeypatch.undo()
    OneAtATime.asked = []
    generate("m", PROMPTS[::-1], SamplingConfig(max_new_tokens=4), backend=f"{__name__}:OneAtATime",
             out_path=out, progress=False)
    assert OneAtATime.asked == [] and [r["id"] for r in read_jsonl(out)] == ["q2", "q1", "q0"]


def test_the_cli_does_not_claim_nothing_was_written(tmp_path, monkeypatch):
    from w2s.cli import _register, app

    _register()
    recorded = _lines(tmp_path / "rec.jsonl", *(json.dumps({"id": f"q{i}", "response": "#### 1"}) for i in range(3)))
    questions = _lines(tmp_path / "q.jsonl", *(json.dumps({**GOOD, "id": f"q{i}"}) for i in range(3)))
    monkeypatch.setattr(resumable, "write_jsonl", _disk_full)
    monkeypatch.setattr(JsonlAppender, "append", _disk_full)
    result = CliRunner().invoke(app, ["generate", "-m", str(recorded), "-b", "replay", "-i", str(questions),
                                      "-o", str(tmp_path / "g.jsonl"), "-q"])
    assert result.exit_code == 1, result.output
    assert "nothing was written" not in result.output and "0 of the 3 records are in it" in result.output


# ---- toy data sizes ----------------------------------------------------------------------------------

def test_negative_toy_split_sizes_are_refused_before_writing(tmp_path):
    from w2s.cli import _register, app
    from w2s.toy.data import write_splits

    _register()
    result = CliRunner().invoke(app, ["toy", "data", "--out", str(tmp_path / "d"), "--n-test", "-5"])
    assert result.exit_code == 2 and "--n-test" in result.output
    with pytest.raises(ValueError, match="size of split 'test' must be a whole number >= 0, got -5"):
        write_splits(tmp_path / "d", 0, {"train_1": 3, "train_2": 3, "test": -5}, decontaminate=False)
    assert not (tmp_path / "d").exists()


# ---- backends and the vllm <-> ray_dp cycle --------------------------------------------------------

def test_backends_are_a_registry_naming_the_choices():
    assert set(resumable.BACKENDS) == set(resumable.BACKEND_REGISTRY.names())
    with pytest.raises(ValueError, match=r"unknown generation backend 'vlm' \(known: hf, openai, replay, vllm; "
                                         r".*did you mean 'vllm'"):
        resumable.make_backend("vlm", "m")
    assert resumable.BACKEND_REGISTRY.describe()["replay"]


def test_backend_modules_are_imported_only_when_used(tmp_path):
    code = ("import sys, w2s.generation as g; lazy = ['w2s.generation.hf', 'w2s.generation.openai_backend', "
            "'w2s.generation.replay']; print([m for m in lazy if m in sys.modules]); "
            f"g.make_backend('replay', {str(tmp_path / 'r.jsonl')!r}); print('w2s.generation.replay' in sys.modules)")
    _lines(tmp_path / "r.jsonl", '{"id": "a", "response": "x"}')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stderr


def test_vllm_and_ray_dp_do_not_import_each_other_both_ways():
    import ast

    from w2s.generation import ray_dp, vllm_params

    def imports(module) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
               {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                for a in n.names}
    assert not any(m.startswith("w2s.generation.vllm") and not m.startswith("w2s.generation.vllm_params")
                   for m in imports(ray_dp) | imports(vllm_params))
