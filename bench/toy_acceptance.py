"""Does a toy world meet its acceptance criteria (docs/toy_world.md)? Measured on seed 0's dev split
from a Stage I run scored on dev only, before any Stage II/III run on the world:

    w2s demo --world v11 --dev-only --set stage2.enabled=false --out runs/accept_v11
    python bench/toy_acceptance.py --run runs/accept_v11 --json bench/results/toy_acceptance_v11.json

Prints each criterion, its measured values and whether it is met (`w2s.toy.acceptance`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def share(x: float | None) -> str:
    return "-" if x is None else f"{pct(x)} %"


def table(result: dict) -> str:
    c = result["criteria"]
    one, two, three, four = (c[k] for k in ("1_fewshot_strict_vs_lenient", "2_self_consistency",
                                             "3_errors_and_nouns", "4_stage1"))
    sweep = "; ".join(f"T {t}: {pct(r['maj_minus_greedy']):>5} [{pct(r['maj_minus_greedy_ci95'][0])}, "
                      f"{pct(r['maj_minus_greedy_ci95'][1])}]" for t, r in two["rows"].items())
    kinds = ", ".join(f"{k} {v}" for k, v in three["error_kinds"].items())
    rows = [
        ("1. few-shot strict within 3 of lenient", f"strict {pct(one['strict'])}, lenient {pct(one['lenient'])}",
         one["met"]),
        ("2. M_plus maj@10 - greedy >= +3 at some T", sweep, two["met"]),
        ("3. plan-level errors >= 40 % of wrong samples, nouns right >= 95 %",
         f"plan {pct(three['plan_share'])} % of {three['wrong']} wrong (T {three['temperature']}: {kinds}); "
         f"nouns right {pct(three['nouns_right'])} % of {three['samples']}", three["met"]),
        ("4. weak-ft 25-45, M_plus - full weak >= +15, few-shot strict < M_plus CI",
         f"weak-ft {pct(four['weak_ft'])}, full weak {pct(four['full_weak'])}, M_plus {pct(four['m_plus'])} "
         f"[{pct(four['m_plus_ci95'][0])}, {pct(four['m_plus_ci95'][1])}], few-shot strict "
         f"{pct(four['strong_fewshot_strict'])}", four["met"]),
    ]
    lines = ["| criterion | measured (dev, seed 0) | met |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {'yes' if m else '**no**'} |" for a, b, m in rows]
    lenient = result["diagnostics"]["lenient_vote"]
    lines += ["", "diagnostic, not a criterion: M_plus read by the lenient parser (any final marker)", "",
              "| T | greedy | maj@k | avg@k | maj@k - greedy [95% CI] | p |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {t} | {pct(r['greedy'])} | {pct(r['maj@k'])} | {pct(r['avg@k'])} | "
              f"{pct(r['maj_minus_greedy']['delta'])} [{pct(r['maj_minus_greedy']['ci95'][0])}, "
              f"{pct(r['maj_minus_greedy']['ci95'][1])}] | {r['maj_minus_greedy']['p']:.3f} |" for t, r in lenient.items()]
    room = result["diagnostics"].get("vote_room", {})
    lines += ["", "diagnostic: where the vote can move greedy (strict; maj@k - greedy = (won - lost) / n)", "",
              "| T | greedy wrong | won | lost | right share there | commonest wrong share there |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {t} | {r['greedy_wrong']} of {r['n']} | {r['won']} | {r['lost']} | "
              f"{pct(r['right_share_where_greedy_wrong'])} % | {pct(r['top_wrong_share_where_greedy_wrong'])} % |"
              for t, r in room.items()]
    by_plan = result["diagnostics"].get("vote_by_plan", {})
    lines += ["", "diagnostic: the samples where greedy is wrong, by the greedy answer's plan (the vote gains from plans "
                  "only where samples leave it)", "",
              "| T | samples | in greedy's plan | right there | right in other plans | questions right in several plans |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {t} | {r['samples']} | {pct(r['in_greedy_plan'])} % | {share(r['right_in_greedy_plan'])} | "
              f"{share(r['right_in_other_plans'])} | {r['right_in_several_plans']} |" for t, r in by_plan.items()]
    errors = result["diagnostics"]["lenient_errors"]
    lines += ["", f"lenient errors: plan {pct(errors['plan_share'])} % of {errors['wrong']} wrong samples "
                  f"({', '.join(f'{k} {v}' for k, v in errors['error_kinds'].items())})"]
    lines += ["", "diagnostic: false equations in the greedy dev answers (share of the equations written)", "",
              "| model | + | - | * | / |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | " + " | ".join(f"{pct(r[op]['rate'])} % of {r[op]['equations']}" for op in "+-*/") + " |"
              for name, r in result["diagnostics"]["greedy_slip_rates"].items()]
    lines += ["", "diagnostic: greedy strict accuracy on dev questions with / without a distractor", "",
              "| model | with a distractor | without |", "| --- | --- | --- |"]
    lines += [f"| {name} | {pct(r['with']['accuracy'])} % of {r['with']['n']} | {pct(r['without']['accuracy'])} % "
              f"of {r['without']['n']} |" for name, r in result["diagnostics"]["greedy_by_distractor"].items()]
    plans = result["diagnostics"].get("plan_mix", {})
    names = next(iter(plans.values()), {})
    lines += ["", "diagnostic: the solution plan each model follows (share of its answers, strict accuracy within it)", "",
              "| model | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    lines += [f"| {name} | " + " | ".join(f"{pct(r[p]['share'])} % ({pct(r[p]['accuracy'])})" for p in names) + " |"
              for name, r in plans.items()]
    if screen := result["diagnostics"].get("base_screen"):
        lines += ["", f"diagnostic: the strong base's few-shot samples (T {screen['temperature']:g}, k {screen['k']}), "
                      f"before any Stage I: greedy wrong on {screen['greedy_wrong']} of {screen['n']}; there its "
                      f"samples are right {pct(screen['right_share_where_greedy_wrong'])} % (commonest wrong "
                      f"{pct(screen['top_wrong_share_where_greedy_wrong'])} %); won {screen['won']}, lost "
                      f"{screen['lost']}; plans " + ", ".join(f"{p} {pct(r['share'])} %" for p, r in screen["plans"].items())
                  + (f"; samples in greedy's plan {pct(b['in_greedy_plan'])} %, right there {share(b['right_in_greedy_plan'])}, "
                     f"elsewhere {share(b['right_in_other_plans'])}" if (b := screen.get("by_plan")) else "")]
    split = result["diagnostics"].get("plan_mix_by_distractor", {})
    lines += ["", "diagnostic: plan shares of the greedy answers on questions with / without a distractor", "",
              "| model | " + " | ".join(f"{p}, with / without" for p in names) + " |", "| --- |" + " --- |" * len(names)]
    lines += [f"| {name} | " + " | ".join(f"{pct(r['with'][p]['share'])} / {pct(r['without'][p]['share'])} %"
                                         for p in names) + " |" for name, r in split.items()]
    return "\n".join(lines) + f"\n\naccepted: {'yes' if result['accepted'] else 'no'} (M_plus = {result['m_plus']}, " \
                              f"{result['n_dev']} dev questions)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a `w2s demo --dev-only` run directory")
    ap.add_argument("--json", help="also write the measurements here")
    ap.add_argument("--screen-base", metavar="DIR", help="also sample the strong base's few-shot dev prompts "
                    "(10 at T 0.7; generations cached in DIR) and report its doubt where greedy is wrong")
    a = ap.parse_args()

    from w2s.tasks import get_task
    from w2s.toy.acceptance import base_screen, world_acceptance

    result = world_acceptance(a.run, get_task("toy"))
    if a.screen_base:
        result["diagnostics"]["base_screen"] = base_screen(a.run, get_task("toy"), a.screen_base)
    print(table(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
