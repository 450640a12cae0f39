"""The report's charts, one function each, as base64 PNGs for report.html (matplotlib, Agg)."""

from __future__ import annotations

import base64
import io

from w2s.report.tables import label

BASELINES = ("weak", "gold_sft", "strong_fewshot", "full_weak")


def charts(metrics: dict) -> dict[str, str]:
    """{key: base64 PNG} for the charts this run has data for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for key, draw in (("accuracy", accuracy_chart), ("selection", selection_chart),
                      ("vote_shares", vote_share_chart), ("stage3", stage3_chart), ("timings", timing_chart)):
        fig = draw(metrics, plt)
        if fig is not None:
            fig.tight_layout()
            out[key] = _png(fig, plt)
    return out


def accuracy_chart(metrics: dict, plt):
    names = [n for n, m in metrics["models"].items() if m.get("accuracy") is not None]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 3.6))
    accs = [100 * (metrics["models"][n]["accuracy"] or 0) for n in names]
    colors = ["#999" if n in BASELINES else "#3b7dd8" for n in names]
    cis = [metrics["models"][n].get("ci95") for n in names]
    err = [[a - 100 * c[0] if c else 0 for a, c in zip(accs, cis)], [100 * c[1] - a if c else 0 for a, c in zip(accs, cis)]]
    ax.bar(range(len(names)), accs, color=colors, yerr=err, capsize=3, ecolor="#333")
    for i, a in enumerate(accs):
        ax.text(i, a + err[1][i] + 0.5, f"{a:.1f}", ha="center", fontsize=8)
    for ref, style in (("weak", ":"), ("gold_sft", "--")):
        if ref in metrics["models"]:
            ax.axhline(100 * (metrics["models"][ref]["accuracy"] or 0), color="#555", ls=style, lw=1)
    ax.set_ylim(0, max(accs + [1.0]) * 1.18)
    ax.set_xticks(range(len(names)), [label(n) for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Greedy test accuracy with 95% CI (dotted: weak floor, dashed: gold-SFT ceiling)", fontsize=9)
    return fig


def selection_chart(metrics: dict, plt):
    iters = metrics["selection"].get("iterations") or []
    if not iters:
        return None
    fig, ax = plt.subplots(figsize=(5, 3))
    xs = [s.get("iteration") for s in iters]
    ax.plot(xs, [100 * (s.get("coverage") or 0) for s in iters], "o-", label="coverage")
    if any(s.get("precision") is not None for s in iters):
        ax.plot(xs, [100 * (s.get("precision") or 0) for s in iters], "s-", label="precision (hidden gold)")
    if any(s.get("weak_accuracy") is not None for s in iters):
        ax.axhline(100 * (iters[0].get("weak_accuracy") or 0), color="#555", ls=":", lw=1, label="weak labels")
    ax.set_xticks(xs)
    ax.set_xlabel("Stage I iteration")
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("Stage I selection")
    return fig


def vote_share_chart(metrics: dict, plt):
    shares = (metrics["selection"].get("pairs") or {}).get("confidences")
    if not shares:
        return None
    fig, ax = plt.subplots(figsize=(5, 3))
    k = metrics["selection"]["pairs"].get("n_samples_per_question")
    if k:  # a share is a multiple of 1/k: one bar per possible share, none split across bins
        ax.bar([i / k for i in range(k + 1)], [sum(round(c * k) == i for c in shares) for i in range(k + 1)],
               width=0.8 / k, color="#3b7dd8")
    else:
        ax.hist(shares, bins=10, range=(0, 1), color="#3b7dd8")
    ax.set_xlabel("majority share among samples (confidence)")
    ax.set_ylabel("questions")
    ax.set_title("Stage II vote confidence")
    return fig


def stage3_chart(metrics: dict, plt):
    rounds = (metrics.get("stage3") or {}).get("rounds") or []
    if not rounds:
        return None
    fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(10, 3.2))
    _stage3_monitor(ax, metrics["stage3"], rounds)
    _stage3_rewards(ax_r, rounds)
    return fig


def _stage3_monitor(ax, stage3: dict, rounds: list[dict]) -> None:
    xs = [r["round"] for r in rounds]
    start_dev = stage3.get("start_dev_accuracy")
    if start_dev is not None:  # round 0: the starting policy
        ax.plot([0], [100 * start_dev], "D", color="#555", label="start policy's dev accuracy")
    for key, style, name in (("coverage", "o-", "pseudo-label coverage"),
                             ("pseudo_label_precision", "s-", "pseudo-label precision (hidden gold)"),
                             ("mean_reward", "^-", "mean GRPO reward"), ("majority_share", "v--", "majority share"),
                             ("dev_accuracy", "D-", "dev accuracy (greedy)")):
        if any(r.get(key) is not None for r in rounds):
            ax.plot(xs, [100 * r[key] if r.get(key) is not None else float("nan") for r in rounds], style, label=name)
    ax.axvline(stage3.get("chosen_round", xs[-1]), color="#555", ls=":", lw=1)
    ax.set_xticks(([0] if start_dev is not None else []) + xs)
    ax.set_xlabel("Stage III round (dotted: m_rl)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7)
    ax.set_title("Stage III collapse monitor")


def _stage3_rewards(ax, rounds: list[dict]) -> None:
    """The GRPO reward along training: a running mean over 25 steps, rounds end to end."""
    step = 0
    for r in rounds:
        curve = r.get("reward_curve") or []
        smooth = [sum(curve[max(0, i - 24):i + 1]) / len(curve[max(0, i - 24):i + 1]) for i in range(len(curve))]
        ax.plot(range(step, step + len(curve)), [100 * v for v in smooth], color="#3b7dd8")
        step += len(curve)
        ax.axvline(step, color="#999", ls=":", lw=1)
    ax.set_xlabel("GRPO step (dotted: end of a round)")
    ax.set_ylabel("mean reward % (running mean, 25 steps)")
    ax.set_ylim(0, 105)
    ax.set_title("Stage III reward during training")


def timing_chart(metrics: dict, plt):
    """Per stage that computes: its measured seconds, and the seconds its arithmetic takes at the
    machine's measured rate (the limit); the label is the share of the rate the stage reached."""
    rows = metrics.get("arithmetic") or {}
    names = [n for n in metrics.get("timings", {}) if n in rows]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.28 * len(names) + 1)))
    ys = range(len(names))
    ax.barh(ys, [metrics["timings"][n] for n in names], color="#c9d7ee", label="measured")
    ax.barh(ys, [rows[n]["arithmetic_seconds"] for n in names], height=0.45, color="#3b7dd8",
            label="arithmetic at the machine's rate")
    for y, n in zip(ys, names):
        ax.text(metrics["timings"][n], y, f" {100 * rows[n]['share_of_machine_rate']:.0f}%", va="center", fontsize=7)
    ax.set_yticks(list(ys), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Where the time goes (label: share of the machine's rate reached)")
    return fig


def _png(fig, plt) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
