"""The report's text: tables as rows of strings and sentences, from metrics.json's content.
Rendering (markdown, HTML) is `sections`; every cell here is plain text."""

from __future__ import annotations

LABELS = {
    "weak": "Weak model (floor)",
    "strong_fewshot": "Strong few-shot",
    "full_weak": "Full weak fine-tuning",
    "gold_sft": "Gold SFT (ceiling)",
    "m_plus": "M_plus (Stage I)",
    "m_pro_dpo": "M_pro DPO (Stage II)",
    "m_pro_orpo": "M_pro ORPO (Stage II)",
    "m_rl": "m_rl (Stage III, GRPO)",
}


def label(name: str) -> str:
    if name.startswith("stage1_"):
        _, it, variant = name.split("_")
        return f"Stage I {it.replace('iter', 'iter ')} {variant}"
    return LABELS.get(name, name)


def _fmt(x, pct=True):
    if x is None:
        return "–"
    text = f"{100 * x:.1f}" if pct else f"{x:.2f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def _ci(ci) -> str:
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}" if ci else "–"


def results_table(metrics: dict) -> list[list[str]]:
    ks = {m.get("k") for m in metrics["models"].values() if m.get("k")}
    k = str(ks.pop()) if len(ks) == 1 else "k"
    lenient = any("accuracy_lenient" in m for m in metrics["models"].values())
    dev = any("dev_accuracy" in m for m in metrics["models"].values())
    if dev and not any(m.get("accuracy") is not None for m in metrics["models"].values()):
        return dev_table(metrics)  # a tuning run: never scored on test
    avg = any(m.get("avg@k") is not None for m in metrics["models"].values())
    rows = [["Model", "Accuracy %", "95% CI"] + (["Lenient %"] if lenient else []) +
            [f"pass@{k} %", f"maj@{k} %"] + ([f"avg@{k} %"] if avg else []) + ["PGR"] + (["Dev %"] if dev else [])]
    for name, m in metrics["models"].items():
        name_cell = label(name) + (" (no training data: unchanged)" if m.get("untrained") else "")
        rows.append([name_cell, _fmt(m.get("accuracy")), _ci(m.get("ci95"))] +
                    ([_fmt(m.get("accuracy_lenient"))] if lenient else []) +
                    [_fmt(m.get("pass@k")), _fmt(m.get("maj@k"))] + ([_fmt(m.get("avg@k"))] if avg else []) +
                    [_fmt(m.get("pgr"), pct=False)] +
                    ([_fmt(m.get("dev_accuracy"))] if dev else []))
    return rows


def results_title(metrics: dict) -> str:
    if any(m.get("accuracy") is not None for m in metrics["models"].values()):
        return "Results (test set)"
    return "Results (dev split only: a tuning run, test not scored)"


def dev_table(metrics: dict) -> list[list[str]]:
    """A tuning run's table (eval.test: false): greedy accuracy on the dev split only."""
    lenient = any("dev_accuracy_lenient" in m for m in metrics["models"].values())
    rows = [["Model", "Dev accuracy %", "95% CI"] + (["Dev lenient %"] if lenient else [])]
    for name, m in metrics["models"].items():
        rows.append([label(name), _fmt(m.get("dev_accuracy")), _ci(m.get("dev_ci95"))] +
                    ([_fmt(m.get("dev_accuracy_lenient"))] if lenient else []))
    return rows


def selection_rows(metrics: dict) -> list[list[str]]:
    rows = [["Iteration", "Selected", "Coverage %", "Precision % (selected)", "Weak labels % (all)"]]
    for s in metrics["selection"].get("iterations", []):
        rows.append([str(s.get("iteration")), f"{s.get('n_selected')}/{s.get('n_questions')}",
                     _fmt(s.get("coverage")), _fmt(s.get("precision")), _fmt(s.get("weak_accuracy"))])
    return rows


def pair_rows(metrics: dict) -> list[list[str]]:
    """Stage II pairs by the side the weak response is on, against hidden gold."""
    p = metrics["selection"].get("pairs") or {}
    rows = [["Pairs", "Count", "Chosen correct %", "Rejected correct %", "Pair right %"]]
    for title, prefix, count in (("all", "", p.get("n_pairs")), ("weak chosen", "weak_chosen_", p.get("weak_chosen")),
                                 ("weak rejected", "weak_rejected_", p.get("weak_rejected"))):
        rows.append([title, str(count), _fmt(p.get(f"{prefix}chosen_accuracy")),
                     _fmt(p.get(f"{prefix}rejected_accuracy")), _fmt(p.get(f"{prefix}pair_accuracy"))])
    return rows


def sweep_rows(metrics: dict) -> list[list[str]]:
    """M_plus on dev by sampling temperature: the vote (maj@k) and the mean sample (avg@k) against
    greedy decoding."""
    rows = [["Temperature", "k", "Greedy %", "maj@k %", "avg@k %", "pass@k %", "maj@k − greedy (points)",
             "95% CI (paired)", "McNemar p"]]
    for r in metrics["temperature_sweep"]["rows"]:
        diff, ci, p = r.get("maj_minus_greedy"), r.get("maj_minus_greedy_ci95"), r.get("maj_minus_greedy_p")
        rows.append([f"{r['temperature']:g}", str(r.get("k")), _fmt(r.get("greedy")), _fmt(r.get("maj@k")),
                     _fmt(r.get("avg@k")), _fmt(r.get("pass@k")), "–" if diff is None else f"{100 * diff:+.1f}",
                     f"{100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}" if ci else "–", "–" if p is None else f"{p:.2g}"])
    return rows


def sweep_line(metrics: dict) -> str:
    best = metrics["temperature_sweep"].get("best_maj_minus_greedy")
    if not best:
        return "no temperature scored yet"
    verdict = "above" if best["value"] > 0 else "not above"
    return (f"best maj@k − greedy {100 * best['value']:+.1f} points (T = {best['temperature']:g}): the vote is "
            f"{verdict} greedy decoding. Stage II's pairs and the majority rewards turn the vote into a training "
            f"signal; where it does not beat greedy, they have little to teach.")


def stage3_rows(metrics: dict) -> list[list[str]]:
    """Stage III per round: the pseudo-labels (precision from hidden gold, diagnostics only), the
    policy's samples, GRPO's reward, dev accuracy."""
    rows = [["Round", "Labelled", "Coverage %", "Precision %", "Majority share %", "Answer entropy",
             "Mean reward %", "Reward first→last %", "Zero-variance groups %", "Dev %"]]
    s3 = metrics.get("stage3") or {}
    chosen = s3.get("chosen_round")
    if chosen == 0:  # m_rl is the start policy kept: the row that says so, with its dev score
        rows.append(["0 (start policy, m_rl)"] + ["–"] * 8 + [_fmt(s3.get("start_dev_accuracy"))])
    for r in s3.get("rounds", []):
        rows.append([f"{r['round']}{' (m_rl)' if r['round'] == chosen else ''}",
                     f"{r.get('n_labelled')}/{r.get('n_questions')}", _fmt(r.get("coverage")),
                     _fmt(r.get("pseudo_label_precision")), _fmt(r.get("majority_share")),
                     _fmt(r.get("answer_entropy"), pct=False), _fmt(r.get("mean_reward")),
                     f"{_fmt(r.get('reward_first'))}→{_fmt(r.get('reward_last'))}", _fmt(r.get("zero_std_share")),
                     _fmt(r.get("dev_accuracy"))])
    return rows


def stage3_line(metrics: dict) -> str:
    s = metrics["stage3"]
    start = s.get("start_dev_accuracy")
    return (f"reward {s.get('reward')} from {s.get('start')}"
            + (f" (dev {_fmt(start)})" if start is not None else "")
            + f", {len(s.get('rounds', []))} rounds; m_rl = "
            + (f"round {s.get('chosen_round')}" if s.get("chosen_round") else "round 0 (the start policy: no round beat it on dev)")
            + f" (chosen by {s.get('chosen_by')})")


def run_lines(metrics: dict) -> list[str]:
    r = metrics.get("run") or {}
    lines = []
    if r.get("task"):
        lines.append(f"task {r['task']}, seed {r.get('seed')}, weak {r.get('weak_model')}, strong {r.get('strong_model')}")
    if r.get("data_sizes"):
        lines.append("data: " + ", ".join(f"{k} {v}" for k, v in r["data_sizes"].items()))
    if r.get("backend"):
        lines.append(f"generation: {r['backend']} backend, {r.get('max_new_tokens')} new tokens; Stage I "
                     f"{r.get('stage1_iterations')} iterations; Stage II k = {r.get('stage2_samples')}; "
                     f"eval k = {r.get('eval_samples')} at T = {r.get('eval_temperature')}"
                     + (f" (intermediate Stage I models: k = {r['eval_intermediate_samples']})"
                        if r.get("eval_intermediate_samples") is not None else "")
                     + f"; M_plus = the last Stage I {r.get('m_plus', 'hybrid')} model")
    if r.get("versions"):
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()))
    if r.get("compute_seconds") is not None:
        lines.append(f"threads: {r.get('threads')} (0 = auto); compute time of the stages: {r['compute_seconds']:.0f} s")
    return lines


def significance_lines(metrics: dict, split: str = "test") -> list[str]:
    """Each comparison in words: which model is ahead, by how much, and whether it is significant
    (on `split`: test, with its lenient reading where it differs, or dev)."""
    lines = []
    lenient = {(c["a"], c["b"]): c for c in metrics.get("comparisons_lenient", [])} if split == "test" else {}
    for c in metrics.get("comparisons" if split == "test" else "comparisons_dev", []):
        lo, hi = c["ci95"]
        verdict = ("significant" if c["p"] < 0.05 else "not significant") + f" (McNemar p = {c['p']:.3g})"
        line = (f"{label(c['a'])} vs {label(c['b'])}: {100 * c['delta']:+.1f} points "
                f"[95% CI {100 * lo:+.1f}, {100 * hi:+.1f}] on {c['n']} questions, {verdict}")
        cl = lenient.get((c["a"], c["b"]))
        if cl is not None and (cl["a_only"], cl["b_only"]) != (c["a_only"], c["b_only"]):
            line += (f"; lenient: {100 * cl['delta']:+.1f} [{100 * cl['ci95'][0]:+.1f}, {100 * cl['ci95'][1]:+.1f}], "
                     f"{'significant' if cl['p'] < 0.05 else 'not significant'} (p = {cl['p']:.3g})")
        lines.append(line)
    return lines


def strategy_words(metrics: dict, key: str) -> str:
    """The run's strategy for a stage (`stage1.selection` / `stage2.pairs`), in words."""
    name = (metrics.get("run") or {}).get(key) or {"stage1_selection": "consistency", "stage2_pairs": "paper"}[key]
    sel = metrics.get("selection") or {}
    summaries = [sel.get("pairs") or {}] if key == "stage2_pairs" else sel.get("iterations") or []
    control = next((s["control"] for s in summaries if s.get("control")), None)
    if control:
        return f"CONTROL: {control} labels, not label-free"
    return {"consistency": "final answer consistency", "paper": "the paper's rule"}.get(name, f"strategy {name}")


def pair_lines(metrics: dict) -> list[str]:
    p = metrics["selection"].get("pairs") or {}
    lines = [f"pairs: {p.get('n_pairs')} from {p.get('n_questions')} questions "
             f"(weak chosen: {p.get('weak_chosen')}, weak rejected: {p.get('weak_rejected')})"]
    if p.get("chosen_accuracy") is not None:
        lines.append(f"chosen side correct: {_fmt(p.get('chosen_accuracy'))}%, "
                     f"rejected side correct: {_fmt(p.get('rejected_accuracy'))}%")
    overlap = (p.get("stage1_overlap") or {}).get("share_in_stage1")
    if overlap is not None:
        lines.append(f"pairs on questions Stage I already learnt from: {_fmt(overlap)}%")
    return lines


def timing_rows(metrics: dict) -> list[list[str]]:
    """Seconds per stage; with plan.json, the stage's arithmetic at the machine's measured rate
    and the share of that rate it reached."""
    arithmetic = metrics.get("arithmetic") or {}
    rows = [["Stage", "Seconds", "Arithmetic (s)", "Share of machine rate"]]
    for k, v in metrics["timings"].items():
        a = arithmetic.get(k)
        rows.append([k, f"{v:.1f}", f"{a['arithmetic_seconds']:.1f}" if a else "-",
                     f"{100 * a['share_of_machine_rate']:.0f}%" if a else "-"])
    return rows


def machine_line(metrics: dict) -> str:
    m = metrics["machine"]
    return (f"machine: {m['flops_per_s'] / 1e9:.0f} GFLOP/s ({m['dtype']} matrix products on {m['device']}, "
            "measured at the start of the run); arithmetic: 2 FLOPs per parameter per generated or prefilled "
            "token, 6 per trained token (4 with LoRA), from `w2s plan`")
