"""Core data commands on files: grade, select, pairs, export.

Each prints a human summary; with --json the last line of output is one JSON object.
Each command reads its files and calls the same `w2s.steps` function as the pipeline's stage,
so its records and summary are the pipeline's.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from w2s import steps
from w2s.cli.common import emit, nonempty, user_errors
from w2s.io import DataError, check_output, read_records, write_json, write_jsonl
from w2s.method.metrics import grade_records
from w2s.method.registry import PAIRS, SELECTION
from w2s.method.selection import questions_from_generations
from w2s.records import PREFERENCE_FIELDS, SFT_FIELDS
from w2s.tasks import make_task

TASK_HELP = "Task name (gsm8k, math, custom, ...)."
OPTION_HELP = "Task option KEY=VALUE, repeatable (e.g. -o question_field=problem for custom)."


def task_from_options(name: str, options: list[str] | None):
    """A task from --task NAME and its repeatable -o KEY=VALUE options (shared by every command)."""
    spec = {"name": name}
    for item in options or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"task option {item!r} is not KEY=VALUE")
        spec[key.strip()] = value
    return make_task(spec)


def _questions(task, questions_path: str | None, *generation_sets: list[dict]) -> list[dict]:
    """Question records: from --questions (joined by id) or recovered from the generations."""
    recovered = questions_from_generations(task, [g for gens in generation_sets for g in gens])
    if not questions_path:
        for i, q in enumerate(recovered, 1):
            if "question" not in q:
                raise DataError(None, f"cannot recover the question text of id {q['id']!r} from its "
                                      "prompt or a 'question' field; pass --questions Q.jsonl",
                                row=i, field="question")
        return recovered
    given = {q["id"]: q for q in task.load_questions(questions_path)}
    unknown = [q["id"] for q in recovered if q["id"] not in given]
    if unknown:  # a --questions file that does not join would be silently ignored
        raise DataError(questions_path, f"has no question with id {unknown[0]!r} ({len(unknown)} of the "
                                        f"{len(recovered)} generation ids are not in it)", field="id")
    out = []
    for q in recovered:  # generation ids, question text and gold from the questions file
        rec = dict(given[q["id"]])
        if "answer" not in rec and "answer" in q:
            rec["answer"] = q["answer"]
        out.append(rec)
    return out


def grade(
    task: str = typer.Option(..., help=TASK_HELP),
    input: str = typer.Option(..., "--input", help="Rows with a model response (JSONL/JSON/datasets dir)."),
    out: str = typer.Option(..., "--out", help="Output JSONL: every input row plus pred and correct."),
    response_field: str = typer.Option("response", help="Field holding the model response."),
    gold_field: Optional[str] = typer.Option(None, help="Field holding the gold answer (default: the task's own gold fields)."),
    task_option: Optional[List[str]] = typer.Option(None, "--task-option", "-o", help=OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Grade model responses against gold answers."""
    with user_errors():
        check_output(out, [input])
        t = task_from_options(task, task_option)
        rows = nonempty(read_records(input), input)
        graded = grade_records(t, rows, response_field=response_field, gold_field=gold_field, path=input)
        write_jsonl(out, graded)
        n, right = len(graded), sum(r["correct"] for r in graded)
        summary = {"n": n, "correct": right, "accuracy": right / n if n else 0.0}
        bounded = [i for i, r in enumerate(graded, 1) if r.get("grading_bounded")]
        if bounded:  # rows whose verdict came from a timeout or the budget's strict-string fallback
            summary.update(bounded_rows=bounded, grading=t.grading_report())
        emit(summary, as_json, f"graded {n} rows with task {task}: {right} correct "
                               f"({100 * summary['accuracy']:.2f}%) -> {out}"
                               + (f"\n{len(bounded)} rows hit the grading bound (rows {bounded[:10]}...)" if bounded else ""))


def select(
    task: str = typer.Option(..., help=TASK_HELP),
    weak: str = typer.Option(..., help="Weak model generations (one per id)."),
    icl: str = typer.Option(..., help="Strong model in-context generations (one per id)."),
    out: str = typer.Option(..., "--out", help="Output directory."),
    questions: Optional[str] = typer.Option(None, help="Question file to join question text and gold by id."),
    strategy: str = typer.Option("consistency", help="Selection strategy (stage1.selection): consistency "
                                                     "(weak and in-context answers agree), confidence, random, "
                                                     "relabel (from iteration 2: the fine-tuned strong models "
                                                     "relabel what consistency discarded)."),
    icl_samples: Optional[str] = typer.Option(None, help="confidence: the strong model's in-context samples "
                                                         "(several generation records per id)."),
    threshold: float = typer.Option(0.75, help="confidence: share of the in-context samples that must reach "
                                               "the greedy in-context answer (stage1.confidence_threshold)."),
    seed: int = typer.Option(0, help="random: seed of the draw (the run's seed)."),
    iteration: int = typer.Option(1, min=1, help="The Stage I iteration (--weak / --icl are its columns), for "
                                                 "strategies that need it (relabel)."),
    d_weak: Optional[str] = typer.Option(None, "--d-weak", help="relabel: the weak model's original answers "
                                                                "(iteration 1's --weak)."),
    d_icl: Optional[str] = typer.Option(None, "--d-icl", help="relabel: the base strong model's original "
                                                              "in-context answers (iteration 1's --icl)."),
    hidden_gold: Optional[str] = typer.Option(None, "--hidden-gold", help="A control that needs gold only: the "
                                              "questions file holding the gold answers."),
    task_option: Optional[List[str]] = typer.Option(None, "--task-option", "-o", help=OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Stage I: keep the questions a selection strategy picks (default: the paper's, weak and
    in-context final answers agree).

    Writes OUT/weak.jsonl, OUT/icl.jsonl, OUT/hybrid.jsonl (SFT records) and OUT/summary.json.
    """
    with user_errors():
        entry = SELECTION.get(strategy, "--strategy")
        check_output(out, [weak, icl, questions, icl_samples, d_weak, d_icl, hidden_gold], is_dir=True)
        t = task_from_options(task, task_option)
        files = _needed_files(entry, strategy, {"icl_samples": icl_samples, "d_weak": d_weak, "d_icl": d_icl,
                                                "hidden_gold": hidden_gold}, t)
        weak_gens = nonempty(steps.read_generations(weak), weak)
        icl_gens = nonempty(steps.read_generations(icl), icl)
        qs = _questions(t, questions, weak_gens, icl_gens)
        sel, summary = steps.select(t, qs, weak_gens, icl_gens, strategy=strategy, seed=seed,
                                    confidence_threshold=threshold, iteration=iteration, **files)
        out_dir = Path(out)
        steps.write_selection(out_dir, sel, summary)
        human = (f"selected {summary['n_selected']} of {summary['n_questions']} questions "
                 f"({100 * summary['coverage']:.1f}%) -> {out_dir}/{{weak,icl,hybrid}}.jsonl")
        if "precision" in summary:
            human += f"\nprecision of the selected answers against gold: {100 * summary['precision']:.2f}%"
        emit(summary, as_json, human)


def pairs(
    task: str = typer.Option(..., help=TASK_HELP),
    weak: str = typer.Option(..., help="Weak model generations (one per id)."),
    samples: str = typer.Option(..., help="Strong model samples (several generation records per id)."),
    out: str = typer.Option(..., "--out", help="Output JSONL of preference records."),
    questions: Optional[str] = typer.Option(None, help="Question file to join question text and gold by id."),
    min_confidence: float = typer.Option(0.6, help="Drop questions whose majority share is below this."),
    flip_confidence: float = typer.Option(0.8, help="Prefer the majority over the weak answer from this share."),
    max_pairs: int = typer.Option(1, help="Pairs per question at most (paper: 1 for GSM8K, 3 for MATH)."),
    seed: int = typer.Option(42, help="Seed for choosing among candidate samples."),
    strategy: str = typer.Option("paper", help="Pair strategy (stage2.pairs): paper, weak_rejected_only "
                                               "(only pairs rejecting the weak response), self (no weak side), "
                                               "agreement (labels from weak/in-context answers the samples support), "
                                               "scpo (most- against least-voted answer), gold (a control)."),
    icl: Optional[str] = typer.Option(None, help="agreement only: the in-context strong model's generations."),
    hidden_gold: Optional[str] = typer.Option(None, "--hidden-gold", help="gold only (a CONTROL, not label-free): "
                                              "the questions file holding the gold answers."),
    min_margin: float = typer.Option(0.0, help="scpo only: the least vote margin a pair needs."),
    stage1: Optional[str] = typer.Option(None, help="Stage I's selected records (e.g. iter2/hybrid.jsonl): the summary "
                                                    "says how many pairs fall on questions Stage I already learnt."),
    min_support: int = typer.Option(3, help="agreement only: samples that must reach a weak/in-context answer."),
    prefer: str = typer.Option("icl", help="agreement only: weak | icl | most_votes, when both answers qualify."),
    task_option: Optional[List[str]] = typer.Option(None, "--task-option", "-o", help=OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Stage II: preference pairs from the weak responses and the strong model's samples.

    Writes OUT (preference records) and OUT's summary beside it (OUT_summary.json).
    """
    with user_errors():
        entry = PAIRS.get(strategy, "--strategy")
        check_output(out, [weak, samples, questions, icl, stage1, hidden_gold])
        t = task_from_options(task, task_option)
        files = _needed_files(entry, strategy, {"icl_gens": icl, "hidden_gold": hidden_gold}, t)
        weak_gens = nonempty(steps.read_generations(weak), weak)
        sample_gens = nonempty(steps.read_generations(samples), samples)
        qs = _questions(t, questions, weak_gens)
        prefs, summary = steps.preference_pairs(t, qs, weak_gens, sample_gens, min_confidence=min_confidence,
                                                flip_confidence=flip_confidence, max_pairs=max_pairs, seed=seed,
                                                strategy=strategy, min_support=min_support, prefer=prefer,
                                                min_margin=min_margin,
                                                stage1_ids=[r["id"] for r in read_records(stage1)] if stage1 else None,
                                                **files)
        write_jsonl(out, prefs)
        write_json(_summary_path(out), summary)
        human = (f"{summary['n_pairs']} pairs from {summary['n_questions_with_pairs']} of "
                 f"{summary['n_questions']} questions (weak chosen {summary['weak_chosen']}, "
                 f"weak rejected {summary['weak_rejected']}) -> {out}")
        if "pair_accuracy" in summary:
            human += f"\npair accuracy against gold: {100 * summary['pair_accuracy']:.2f}%"
        emit(summary, as_json, human)


#: the option that gives each named input a strategy may need (its entry's `needs`)
INPUT_OPTIONS = {"icl_samples": ("--icl-samples", "the strong model's in-context samples"),
                 "icl_gens": ("--icl", "the in-context strong model's generations"),
                 "d_weak": ("--d-weak", "the weak model's original answers, D_weak"),
                 "d_icl": ("--d-icl", "the base strong model's original in-context answers, D_icl"),
                 "hidden_gold": ("--hidden-gold", "the questions file with the gold answers (a control)")}


def _needed_files(entry, strategy: str, given: dict[str, str | None], task=None) -> dict[str, list[dict]]:
    """The files a strategy declares it needs, read (generations; the gold control's questions
    by the task's own reader); a missing one names its option."""
    out = {}
    for need in entry.needs:
        if need not in INPUT_OPTIONS:
            continue  # a value (seed), not a file
        option, what = INPUT_OPTIONS[need]
        path = given.get(need)
        if not path:
            raise ValueError(f"--strategy {strategy} needs {option} ({what})")
        rows = steps.load_questions(task, path) if need == "hidden_gold" else steps.read_generations(path)
        out[need] = nonempty(rows, path)
    return out


def _summary_path(out: str) -> Path:
    p = Path(out)
    return p.with_name(f"{p.stem}_summary.json")


def _export_rows(records: list[dict], fmt: str, kind: str, path: str) -> list[dict]:
    need = [f for f in (PREFERENCE_FIELDS if kind == "preference" else SFT_FIELDS) if f != "id"]
    for i, r in enumerate(records, 1):
        for f in need:
            if not isinstance(r.get(f), str):
                raise DataError(path, f"expected a string ({kind} record)", row=i, field=f)
    if fmt == "trl":  # TRL's standard prompt-completion / preference formats
        return [{"id": r.get("id"), **{f: r[f] for f in need}} for r in records]
    if kind == "preference":  # LLaMA-Factory alpaca "ranking" format
        return [{"instruction": r["prompt"], "input": "", "chosen": r["chosen"], "rejected": r["rejected"]}
                for r in records]
    return [{"instruction": r["prompt"], "input": "", "output": r["completion"]} for r in records]


def export(
    format: str = typer.Option(..., "--format", help="llamafactory or trl."),
    input: str = typer.Option(..., "--input", help="SFT or preference records (JSONL/JSON)."),
    out: str = typer.Option(..., "--out", help="Output file (.json: JSON array, otherwise JSONL)."),
    kind: str = typer.Option("auto", help="sft, preference or auto (from the fields)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Export SFT / preference records for other trainers (LLaMA-Factory, TRL).

    Prompts already hold the task format ("Question: ...\\nAnswer:"); in LLaMA-Factory use
    the "empty" template so no chat template is wrapped around them.
    """
    with user_errors():
        check_output(out, [input])
        if format not in ("llamafactory", "trl"):
            raise ValueError(f"--format must be llamafactory or trl, got {format!r}")
        records = nonempty(read_records(input), input)
        if kind == "auto":
            kind = "preference" if records and "chosen" in records[0] else "sft"
        if kind not in ("sft", "preference"):
            raise ValueError(f"--kind must be sft, preference or auto, got {kind!r}")
        rows = _export_rows(records, format, kind, input)
        if out.endswith(".json"):
            write_json(out, rows)
        else:
            write_jsonl(out, rows)
        summary: dict = {"n": len(rows), "format": format, "kind": kind, "out": out}
        human = f"exported {len(rows)} {kind} records for {format} -> {out}"
        if format == "llamafactory":
            columns = ({"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
                       if kind == "preference" else {"prompt": "instruction", "query": "input", "response": "output"})
            entry = {"file_name": Path(out).name, "columns": columns}
            if kind == "preference":
                entry["ranking"] = True
            summary["dataset_info"] = {Path(out).stem: entry}
            human += f"\nadd to LLaMA-Factory's dataset_info.json: {summary['dataset_info']}"
        emit(summary, as_json, human)


def register(app) -> None:
    app.command("grade")(grade)
    app.command("select")(select)
    app.command("pairs")(pairs)
    app.command("export")(export)
