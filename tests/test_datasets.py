"""`w2s data gsm8k|math`: the paper's splits from the authors' pinned release, checked by sha256;
offline copies with --from; no network is one clear line; `hf:NAME@SPLIT` loads that split and
a scoring split from the hub must name one."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
from typer.testing import CliRunner

from w2s import datasets
from w2s.cli import _register, app
from w2s.io import DataError, read_records
from w2s.tasks import make_task

_register()


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_gsm8k_from_an_offline_copy_is_the_papers_split(shared_data, tmp_path):
    res = cli("data", "gsm8k", "--from", shared_data / "gsm8k", "--out", tmp_path / "g", "--json")
    assert res.exit_code == 0, res.output
    task = make_task("gsm8k")
    splits = {s: task.load_questions(str(tmp_path / "g" / f"{s}.jsonl")) for s in ("train_1", "train_2", "test")}
    assert {s: len(r) for s, r in splits.items()} == {"train_1": 7000, "train_2": 7000, "test": 1319}
    ids = {s: {r["id"] for r in rows} for s, rows in splits.items()}
    assert not ids["train_1"] & ids["train_2"] and any(i.startswith("aug_") for i in ids["train_1"])
    assert all(r["answer"] for rows in splits.values() for r in rows)
    # the same questions, in the same order, as the released files (checked by their sha256)
    for split, name in (("train_1", "train_1"), ("train_2", "train_2"), ("test", "test")):
        released = [json.loads(x)["question"] for x in (shared_data / "gsm8k" / f"{name}.jsonl").read_text().splitlines()]
        assert [r["question"] for r in splits[split]] == released
    source = json.loads((tmp_path / "g" / "SOURCE.json").read_text())
    assert source["commit"] == datasets.COMMIT and source["files"]["test"]["rows"] == 1319


def test_a_stubbed_download_writes_the_splits_and_a_changed_byte_is_refused(shared_data, tmp_path, monkeypatch):
    by_path = {r.path: shared_data / "gsm8k" / f"{s}.jsonl" for s, r in datasets.DATASETS["gsm8k"].items()}
    urls = []
    monkeypatch.setattr(datasets, "download", lambda url: urls.append(url) or by_path[url[len(datasets.URL):]].read_bytes())
    datasets.write_dataset("gsm8k", tmp_path / "g")
    assert len(read_records(tmp_path / "g" / "train_2.jsonl")) == 7000 and all(datasets.COMMIT in u for u in urls)
    tampered = by_path["data/test/gsm8k.jsonl"].read_bytes().replace(b"Janet", b"Jane", 1)
    monkeypatch.setattr(datasets, "download", lambda url: tampered if url.endswith("test/gsm8k.jsonl")
                        else by_path[url[len(datasets.URL):]].read_bytes())
    with pytest.raises(DataError, match="is not the released file's"):
        datasets.write_dataset("gsm8k", tmp_path / "h")
    assert not (tmp_path / "h").exists()  # every file is checked before the first is written


def test_no_network_is_one_clear_line_and_writes_nothing(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    res = cli("data", "gsm8k", "--out", tmp_path / "g")
    assert res.exit_code == 1
    assert "cannot download" in res.output and "--from FOLDER" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "g").exists()


def test_an_existing_different_output_needs_force(shared_data, tmp_path):
    out = tmp_path / "g"
    assert cli("data", "gsm8k", "--from", shared_data / "gsm8k", "--out", out).exit_code == 0
    assert cli("data", "gsm8k", "--from", shared_data / "gsm8k", "--out", out).exit_code == 0  # same content
    (out / "test.jsonl").write_text('{"id": "x", "question": "q", "answer": "#### 1"}\n')
    res = cli("data", "gsm8k", "--from", shared_data / "gsm8k", "--out", out)
    assert res.exit_code == 2 and "--force" in res.output
    assert cli("data", "gsm8k", "--from", shared_data / "gsm8k", "--out", out, "--force").exit_code == 0


def test_math500_from_its_public_copy(shared_data, tmp_path):
    assert cli("data", "math", "--from", shared_data / "math", "--out", tmp_path / "m").exit_code == 0
    rows = make_task("math").load_questions(str(tmp_path / "m" / "test.jsonl"))
    assert len(rows) == 500 and all(r["answer"] for r in rows)


def test_hub_datasets_load_the_named_split(monkeypatch):
    import datasets as hf_datasets

    calls = []
    monkeypatch.setattr(hf_datasets, "load_dataset", lambda name, config=None, split=None:
                        calls.append((name, config, split)) or [{"question": "q", "answer": "#### 1"}])
    read_records("hf:openai/gsm8k:main@test")
    read_records("hf:HuggingFaceH4/MATH-500@test")
    read_records("hf:openai/gsm8k:main")
    assert calls == [("openai/gsm8k", "main", "test"), ("HuggingFaceH4/MATH-500", None, "test"),
                     ("openai/gsm8k", "main", "train")]


def test_a_scoring_split_from_the_hub_must_name_its_split(tmp_path):
    from w2s.pipeline.config import ConfigError, config_from_dict

    (tmp_path / "g.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    raw = {"task": "gsm8k", "data": {"gold": str(tmp_path / "g.jsonl"), "unlabeled": "hf:openai/gsm8k:main",
                                     "test": "hf:openai/gsm8k:main"},
           "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}}
    with pytest.raises(ConfigError, match=r"data\.test: hf:openai/gsm8k:main names no split: add one, e\.g\. "
                                          r"hf:openai/gsm8k:main@test"):
        config_from_dict(raw)
    raw["data"]["test"] = "hf:openai/gsm8k:main@test"
    assert config_from_dict(raw).data.test.endswith("@test")
    raw["data"]["test"] = "hf:openai/gsm8k@"
    with pytest.raises(ConfigError, match="expected hf:NAME"):
        config_from_dict(raw)


def test_a_hub_dataset_as_a_mapping_with_its_columns_named(monkeypatch, tmp_path):
    """`{hub, config, split, fields}`: MATH-500's `problem` column read as the task's question;
    a misspelled key is named with the nearest valid one; the mapping is checked like `hf:`."""
    import datasets as hf_datasets

    from w2s.pipeline.config import ConfigError, config_from_dict

    calls = []
    monkeypatch.setattr(hf_datasets, "load_dataset", lambda name, config=None, split=None:
                        calls.append((name, config, split)) or [{"problem": "1 + 1?", "answer": "2", "id": 7}])
    (tmp_path / "g.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    raw = {"task": "gsm8k", "data": {"gold": str(tmp_path / "g.jsonl"), "unlabeled": str(tmp_path / "g.jsonl"),
                                     "test": {"hub": "HuggingFaceH4/MATH-500", "split": "test",
                                              "fields": {"question": "problem"}}},
           "weak": {"model": "tiny:layers=1"}, "strong": {"model": "tiny:layers=2"}}
    spec = config_from_dict(raw).data.test
    assert spec == "hf:HuggingFaceH4/MATH-500@test?question=problem"
    assert read_records(spec) == [{"question": "1 + 1?", "answer": "2", "id": "7"}]
    assert calls == [("HuggingFaceH4/MATH-500", None, "test")]
    raw["data"]["test"] = {"hub": "HuggingFaceH4/MATH-500", "splt": "test"}
    with pytest.raises(ConfigError, match=r"data\.test: unknown key 'splt' .*did you mean 'split'\?"):
        config_from_dict(raw)
    raw["data"]["test"] = {"hub": "HuggingFaceH4/MATH-500"}
    with pytest.raises(ConfigError, match=r"data\.test: .* names no split"):
        config_from_dict(raw)
