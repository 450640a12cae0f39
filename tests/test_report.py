"""The report: metrics.json shape, PGR, tables and a self-contained HTML page."""

import json

from w2s.io import write_json
from w2s.method.metrics import pgr
from w2s.report import ModelRef, collect_metrics, render_markdown, results_table, write_report


def fake_run(tmp_path):
    scores = {"weak": 0.30, "strong_fewshot": 0.50, "full_weak": 0.31, "gold_sft": 0.80,
              "stage1_iter1_hybrid": 0.55, "m_pro_dpo": 0.65}
    for name, acc in scores.items():
        write_json(tmp_path / "eval" / f"{name}.json", {"accuracy": acc, "pass@k": acc + 0.1, "maj@k": acc, "k": 4})
    write_json(tmp_path / "data" / "iter1" / "summary.json",
               {"iteration": 1, "n_questions": 100, "n_selected": 30, "coverage": 0.3, "precision": 0.9,
                "weak_accuracy": 0.3})
    write_json(tmp_path / "data" / "pairs_summary.json",
               {"n_questions": 100, "n_pairs": 20, "weak_chosen": 5, "weak_rejected": 15,
                "chosen_accuracy": 0.8, "rejected_accuracy": 0.1, "confidences": [0.5, 0.9, 1.0]})
    write_json(tmp_path / "manifest.json", {"stages": {"weak_sft": {"seconds": 1.5}, "load_data": {
        "info": {"n_gold": 50, "n_unlabeled": 100, "n_test": 40}}}, "invocations": []})
    (tmp_path / "config.yaml").write_text("task: gsm8k\nseed: 3\n")
    models = {"weak": ModelRef("weak_sft", "weak"), "strong_fewshot": ModelRef(None, "strong_fewshot"),
              "full_weak": ModelRef("full_weak", "full_weak"), "gold_sft": ModelRef("gold_sft", "gold_sft"),
              "stage1_iter1_hybrid": ModelRef("sft_iter1_hybrid", "stage1_iter1_hybrid"),
              "m_plus": ModelRef("sft_iter1_hybrid", "stage1_iter1_hybrid"),
              "m_pro_dpo": ModelRef("m_pro_dpo", "m_pro_dpo")}
    return models


def test_metrics_shape_and_pgr(tmp_path):
    metrics = collect_metrics(tmp_path, fake_run(tmp_path))
    m = metrics["models"]
    assert list(m)[:3] == ["weak", "strong_fewshot", "full_weak"]
    assert m["m_plus"]["accuracy"] == m["stage1_iter1_hybrid"]["accuracy"] == 0.55
    assert abs(m["m_pro_dpo"]["pgr"] - (0.65 - 0.30) / (0.80 - 0.30)) < 1e-9
    assert m["weak"]["pgr"] == 0.0 and m["gold_sft"]["pgr"] == 1.0
    assert metrics["timings"] == {"weak_sft": 1.5}
    assert metrics["aliases"] == {"m_plus": "stage1_iter1_hybrid"}
    assert metrics["selection"]["iterations"][0]["precision"] == 0.9
    assert pgr(0.5, 0.4, 0.4) is None  # no gap, no ratio


def test_report_files(tmp_path):
    metrics = collect_metrics(tmp_path, fake_run(tmp_path))
    write_report(tmp_path, metrics)
    assert json.loads((tmp_path / "metrics.json").read_text())["models"]["m_pro_dpo"]["accuracy"] == 0.65
    md = (tmp_path / "report.md").read_text()
    assert "| M_pro DPO (Stage II) | 65.0 | – | 75.0 | 65.0 | 0.70 |" in md  # no per-question verdicts: no CI
    assert "| 1 | 30/100 | 30.0 | 90.0 | 30.0 |" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3      # accuracy bars, Stage I selection, confidence histogram
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")  # self-contained
    assert "chosen side correct: 80.0%" in html  # the same sentence as report.md (written once)
    assert "| all | 20 | 80.0 | 10.0 |" in md             # pairs by side (no per-side diagnostics here)
    assert "- data: gold 50, unlabeled 100, test 40" in md and "- task gsm8k, seed 3" in md
    assert "Stage I iter 1 hybrid" in render_markdown(metrics)


def test_untrained_models_are_marked(tmp_path, tiny_model):
    from w2s.training import is_complete, untrained_copy

    models = fake_run(tmp_path)
    untrained_copy(tiny_model, tmp_path / "models" / "m_pro_dpo", "no preference pairs")
    assert is_complete(tmp_path / "models" / "m_pro_dpo")
    assert (tmp_path / "models" / "m_pro_dpo" / "model.safetensors").read_bytes() == \
        (tiny_model / "model.safetensors").read_bytes()
    metrics = collect_metrics(tmp_path, models)
    assert metrics["models"]["m_pro_dpo"]["untrained"] is True
    assert "M_pro DPO (Stage II) (no training data: unchanged)" in render_markdown(metrics)


def test_confidence_intervals_and_paired_comparisons(tmp_path):
    """ci95 per model and paired comparisons recomputed from the per-question verdicts in eval/*.json."""
    ids = [f"q{i}" for i in range(200)]
    verdicts = {"weak": lambda i: i % 5 == 0, "full_weak": lambda i: i % 4 == 0, "gold_sft": lambda i: i % 10 != 0,
                "stage1_iter1_hybrid": lambda i: i % 2 == 0, "m_pro_dpo": lambda i: i % 2 == 0 or i % 3 == 0,
                "strong_fewshot": lambda i: i % 2 == 0}
    for name, f in verdicts.items():
        correct = {q: int(f(i)) for i, q in enumerate(ids)}
        write_json(tmp_path / "eval" / f"{name}.json", {"accuracy": sum(correct.values()) / 200, "correct": correct})
    models = {n: ModelRef(n, n) for n in verdicts} | {"m_plus": ModelRef("sft_iter1_hybrid", "stage1_iter1_hybrid")}
    metrics = collect_metrics(tmp_path, models)
    lo, hi = metrics["models"]["m_plus"]["ci95"]
    assert lo < 0.5 < hi and hi - lo < 0.2
    by = {(c["a"], c["b"]): c for c in metrics["comparisons"]}
    assert set(by) == {("m_plus", "full_weak"), ("m_pro_dpo", "m_plus"), ("m_plus", "strong_fewshot"),
                       ("m_pro_dpo", "strong_fewshot"), ("m_pro_dpo", "gold_sft")}
    dpo = by[("m_pro_dpo", "m_plus")]   # dpo is right wherever m_plus is, plus the odd multiples of 3
    assert dpo["b_only"] == 0 and dpo["a_only"] == 33 and abs(dpo["delta"] - 33 / 200) < 1e-9
    assert dpo["p"] < 1e-6 and dpo["ci95"][0] > 0
    same = by[("m_plus", "strong_fewshot")]
    assert same["delta"] == 0 and same["p"] == 1.0
    md = render_markdown(metrics)
    assert "not significant" in md and "McNemar" in md and "95% CI" in md


def test_lenient_verdicts_get_their_own_comparisons(tmp_path):
    """A task with a lenient parse (toy): per-question lenient verdicts give `ci95_lenient` and
    `comparisons_lenient`, and the report states the lenient comparison where it differs."""
    ids = [f"q{i}" for i in range(100)]
    strict = {"m_plus": lambda i: i % 2 == 0, "strong_fewshot": lambda i: False}
    lenient = {"m_plus": lambda i: i % 2 == 0, "strong_fewshot": lambda i: i % 4 != 0}  # few-shot right, wrong format
    for name in strict:
        correct = {q: int(strict[name](i)) for i, q in enumerate(ids)}
        loose = {q: int(lenient[name](i)) for i, q in enumerate(ids)}
        write_json(tmp_path / "eval" / f"{name}.json", {"accuracy": sum(correct.values()) / 100, "correct": correct,
                                                         "accuracy_lenient": sum(loose.values()) / 100,
                                                         "correct_lenient": loose})
    metrics = collect_metrics(tmp_path, {"m_plus": ModelRef("m", "m_plus"),
                                         "strong_fewshot": ModelRef(None, "strong_fewshot")})
    (s,), (l,) = metrics["comparisons"], metrics["comparisons_lenient"]
    assert s["delta"] == 0.5 and s["p"] < 1e-6
    assert abs(l["delta"] - (0.5 - 0.75)) < 1e-9 and l["ci95"][1] < 0  # lenient: few-shot is ahead
    lo, hi = metrics["models"]["strong_fewshot"]["ci95_lenient"]
    assert lo < 0.75 < hi
    assert "lenient: -25.0" in render_markdown(metrics)


def test_a_tuning_run_reports_dev_scores_only(tmp_path):
    """eval.test: false (settings chosen on dev): no test file exists; the table is the dev one,
    with CIs, and no test number is invented."""
    ids = [f"q{i}" for i in range(50)]
    for name, every in (("weak", 5), ("m_pro_dpo", 2)):
        correct = {q: int(i % every == 0) for i, q in enumerate(ids)}
        write_json(tmp_path / "eval_dev" / f"{name}.json", {"accuracy": sum(correct.values()) / 50, "correct": correct})
    metrics = collect_metrics(tmp_path, {"weak": ModelRef("weak_sft", "weak"), "m_pro_dpo": ModelRef("m", "m_pro_dpo")})
    assert metrics["models"]["m_pro_dpo"]["accuracy"] is None and metrics["models"]["m_pro_dpo"]["dev_accuracy"] == 0.5
    assert metrics["comparisons"] == [] and metrics["models"]["weak"]["pgr"] is None
    table = results_table(metrics)
    assert table[0][:3] == ["Model", "Dev accuracy %", "95% CI"] and table[2][1] == "50.0"
    assert "Results (dev split only" in render_markdown(metrics)  # and nothing to plot from test


def test_a_tuning_run_compares_models_on_dev(tmp_path):
    """Settings are chosen on dev: a tuning run's metrics carry the same paired comparisons on the
    dev questions (`comparisons_dev`), and its report states them; test comparisons stay empty."""
    ids = [f"q{i}" for i in range(300)]
    rule = {"m_plus": lambda i: i % 2 == 0, "m_pro_orpo": lambda i: i % 2 == 0 or i % 5 == 1,
            "m_rl": lambda i: i % 2 == 0 and i % 3 != 0}
    for name, f in rule.items():
        correct = {q: int(f(i)) for i, q in enumerate(ids)}
        write_json(tmp_path / "eval_dev" / f"{name}.json", {"accuracy": sum(correct.values()) / 300, "correct": correct})
    metrics = collect_metrics(tmp_path, {n: ModelRef(n, n) for n in rule})
    assert metrics["comparisons"] == []
    by = {(c["a"], c["b"]): c for c in metrics["comparisons_dev"]}
    assert set(by) == {("m_pro_orpo", "m_plus"), ("m_rl", "m_plus"), ("m_rl", "m_pro_orpo")}
    orpo = by[("m_pro_orpo", "m_plus")]  # right where m_plus is, plus the odd i = 1 mod 5: 30 questions
    assert (orpo["a_only"], orpo["b_only"]) == (30, 0) and abs(orpo["delta"] - 0.1) < 1e-9 and orpo["ci95"][0] > 0
    rl = by[("m_rl", "m_plus")]           # loses the even multiples of 3: 50 questions
    assert (rl["a_only"], rl["b_only"]) == (0, 50) and rl["ci95"][1] < 0
    md = render_markdown(metrics)
    assert "Paired comparisons (same dev questions)" in md and "+10.0 points" in md and "-16.7 points" in md


def test_run_text_cannot_inject_html_or_break_lines_in_report_md(tmp_path):
    """Config values reach the report (run name, model names): report.html escaped them, report.md
    carried raw `<script>` and line-breaking newlines."""
    from w2s.report.sections import md_table, render_markdown

    hostile = "<script>alert(1)</script>\n# heading | cell"
    metrics = {"run": {"task": "gsm8k", "seed": 0, "weak_model": hostile, "strong_model": "s"},
               "models": {hostile: {"accuracy": 0.5, "ci95": [0.4, 0.6]}}, "comparisons": [],
               "selection": {"iterations": []}}
    md = render_markdown(metrics)
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert not any(line.startswith("# heading") for line in md.splitlines())
    table = md_table([["Model", "x"], [hostile, "1"]])
    assert len(table.splitlines()) == 3 and "\\| cell" in table  # one row, its pipe escaped


def test_the_temperature_sweep_reads_only_the_configured_temperatures_of_m_plus(tmp_path):
    """M_plus on dev at each swept temperature: maj@k, avg@k and maj@k - greedy per row, the best
    row named; a file of a temperature the config no longer lists is not this run's, and a model
    that is not M_plus is never read as its sweep."""
    models = fake_run(tmp_path)
    sweep = tmp_path / "eval_dev" / "temperatures"
    for temp, maj, avg in ((0.3, 0.50, 0.52), (0.7, 0.58, 0.49), (1.0, 0.54, 0.44), (0.9, 0.99, 0.99)):
        write_json(sweep / f"stage1_iter1_hybrid.t{temp:g}.json",
                   {"accuracy": 0.55, "maj@k": maj, "avg@k": avg, "pass@k": 0.9, "k": 10, "temperature": temp})
    write_json(sweep / "m_pro_dpo.t0.5.json", {"accuracy": 0.1, "maj@k": 0.9, "k": 10})
    ids = [f"q{i}" for i in range(100)]   # T = 0.7 with per-question verdicts: the vote wins 3 questions, loses none
    write_json(sweep / "stage1_iter1_hybrid.t0.7.json",
               {"accuracy": 0.55, "maj@k": 0.58, "avg@k": 0.49, "pass@k": 0.9, "k": 10, "temperature": 0.7,
                "correct": {q: int(i < 55) for i, q in enumerate(ids)},
                "correct_maj": {q: int(i < 58) for i, q in enumerate(ids)}})
    from w2s.pipeline.layout import eval_rel

    metrics = collect_metrics(tmp_path, models, {t: eval_rel("stage1_iter1_hybrid", "dev", t) for t in (0.3, 0.5, 0.7, 1.0)})
    s = metrics["temperature_sweep"]
    assert s["eval_name"] == "stage1_iter1_hybrid" and s["split"] == "dev"
    assert [r["temperature"] for r in s["rows"]] == [0.3, 0.7, 1.0]          # 0.5 not scored yet, 0.9 stale
    assert [round(r["maj_minus_greedy"], 4) for r in s["rows"]] == [-0.05, 0.03, -0.01]
    assert s["best_maj_minus_greedy"]["temperature"] == 0.7 and round(s["best_maj_minus_greedy"]["value"], 4) == 0.03
    row = s["rows"][1]
    assert row["maj_minus_greedy_p"] == 0.25 and 0 <= row["maj_minus_greedy_ci95"][0] <= 0.03 <= row["maj_minus_greedy_ci95"][1]
    assert s["rows"][0]["maj_minus_greedy_ci95"] is None           # a file without per-question verdicts
    md = render_markdown(metrics)
    assert "Self-consistency on dev" in md and "| 0.7 | 10 | 55.0 | 58.0 | 49.0 | 90.0 | +3.0 | +" in md
    assert "| 0.3 | 10 | 55.0 | 50.0 | 52.0 | 90.0 | -5.0 | – | – |" in md
    assert "temperature_sweep" not in collect_metrics(tmp_path, models)        # none configured: none read
