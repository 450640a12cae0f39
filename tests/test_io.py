"""Records and IO: formats, id coercion, joins by id, atomic writes, located errors."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from w2s.io import (DataError, JsonlAppender, read_jsonl, read_records, records_sha256, write_json,
                    write_jsonl, write_text)
from w2s.records import group_by_id


def test_jsonl_round_trip_and_int_ids(tmp_path):
    p = tmp_path / "a.jsonl"
    write_jsonl(p, [{"id": 1, "x": "é"}, {"id": "b", "x": None}])
    rows = read_records(p)
    assert rows == [{"id": "1", "x": "é"}, {"id": "b", "x": None}]


def test_float_integral_ids_become_plain_strings(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"id": 3.0}, {"id": 2.5}]))
    assert [r["id"] for r in read_records(p)] == ["3", "2.5"]


def test_json_array_and_data_wrapper(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"id": "1"}]))
    assert read_records(p) == [{"id": "1"}]
    p.write_text(json.dumps({"data": [{"id": "2"}]}))
    assert read_records(p) == [{"id": "2"}]
    p.write_text(json.dumps({"x": 1}))
    with pytest.raises(DataError, match="JSON array"):
        read_records(p)


def test_hf_datasets_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    d = tmp_path / "ds"
    datasets.Dataset.from_list([{"id": 7, "problem": "1+1?"}]).save_to_disk(str(d))
    rows = read_records(d, rename={"problem": "question"})
    assert rows == [{"id": "7", "question": "1+1?"}]


def test_errors_name_file_row_and_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "1", "q": "a"}\n{"id": "2"}\n')
    with pytest.raises(DataError) as e:
        read_records(p, required=("id", "q"))
    assert e.value.row == 2 and e.value.field == "q" and str(p) in str(e.value)
    assert "row 2" in str(e.value) and "'q'" in str(e.value) and "missing" in str(e.value)

    p.write_text('{"id": "1"}\n{"id": \n')
    with pytest.raises(DataError, match="row 2.*invalid JSON"):
        read_jsonl(p)
    p.write_text('[1, 2]\n')
    with pytest.raises(DataError, match="row 1.*expected a JSON object"):
        read_jsonl(p)
    p.write_text('{"id": [1]}\n')
    with pytest.raises(DataError, match="field 'id'.*string or integer"):
        read_records(p)
    p.write_text('{"id": null, "q": 1}\n')
    with pytest.raises(DataError, match="null"):
        read_records(p, required=("id",))
    with pytest.raises(DataError, match="file not found"):
        read_records(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unsupported"):
        read_records(tmp_path.joinpath("x.txt").write_text("x") and tmp_path / "x.txt")


def test_non_utf8_is_located_and_bom_is_tolerated(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"id": "1"}\n{"id": "\xff"}\n')
    with pytest.raises(DataError, match="row 2.*UTF-8"):
        read_jsonl(p)
    p.write_bytes(b'\xef\xbb\xbf{"id": "1"}\n')
    assert read_jsonl(p) == [{"id": "1"}]


def test_data_error_pickles():
    e = pickle.loads(pickle.dumps(DataError("f.jsonl", "bad", row=3, field="x")))
    assert (e.path, e.row, e.field) == ("f.jsonl", 3, "x") and "row 3" in str(e)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.jsonl"
    write_jsonl(p, [{"id": "1"}])

    def boom():
        yield {"id": "2"}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(p, boom())
    assert read_jsonl(p) == [{"id": "1"}]
    assert [f.name for f in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_written_files_are_readable_by_others(tmp_path):
    p = tmp_path / "x.json"
    write_json(p, {"a": 1})
    assert os.stat(p).st_mode & 0o044  # not mkstemp's 0600
    write_text(tmp_path / "t.txt", "hi")
    assert (tmp_path / "t.txt").read_text() == "hi"


def test_appender_repairs_a_torn_tail(tmp_path):
    p = tmp_path / "stream.jsonl"
    with JsonlAppender(p) as a:
        a.append([{"id": "1"}, {"id": "2"}])
    with open(p, "a") as f:
        f.write('{"id": "3", "resp')  # crash mid-line
    assert read_jsonl(p, tolerate_partial_tail=True) == [{"id": "1"}, {"id": "2"}]
    with pytest.raises(DataError):
        read_jsonl(p)
    with JsonlAppender(p) as a:
        a.append([{"id": "3"}])
    assert [r["id"] for r in read_jsonl(p)] == ["1", "2", "3"]


def test_join_by_id_not_position():
    gens = [{"id": "2", "sample_index": 1, "r": "b"}, {"id": "1", "r": "x"}, {"id": "2", "sample_index": 0, "r": "a"}]
    groups = group_by_id(gens)
    assert [g["r"] for g in groups["2"]] == ["a", "b"]


def test_records_hash_is_order_sensitive_but_key_order_free():
    assert records_sha256([{"a": 1, "b": 2}]) == records_sha256([{"b": 2, "a": 1}])
    assert records_sha256([{"a": 1}, {"a": 2}]) != records_sha256([{"a": 2}, {"a": 1}])


def test_a_failed_write_keeps_the_old_file_and_names_the_path(tmp_path):
    """Disk full in the middle of a write: the old file is intact, no temp file is left, and the
    error names the file (the CLI prints it as one line)."""
    import errno

    from w2s.io import write_jsonl

    out = tmp_path / "g.jsonl"
    out.write_text('{"old": true}\n')

    def rows():
        yield {"a": 1}
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        write_jsonl(out, rows())
    assert e.value.filename == str(out) and e.value.errno == errno.ENOSPC
    assert out.read_text() == '{"old": true}\n' and [p.name for p in tmp_path.iterdir()] == ["g.jsonl"]
