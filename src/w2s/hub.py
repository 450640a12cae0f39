"""A run on the Hugging Face Hub (`hub: {push: true, prefix: ORG/NAME}` in a run config).

Each trained model of the run (an adapter or full weights, as trained) goes to its own model
repository `PREFIX-MODEL` with a card that states its lineage (base, what it was trained from,
on which data, with which settings) and the run's metrics for it; the run's datasets (D_weak,
D_icl, the Stage I selections, the Stage II pairs, the Stage III labels) go to one dataset
repository `PREFIX-data` with the report. Checkpoints and w2s's markers stay local. The token is
huggingface_hub's own (HF_TOKEN or `huggingface-cli login`).
"""

from __future__ import annotations

import json
from pathlib import Path

from w2s.training import is_complete, read_lineage

#: what the dataset repository holds (globs relative to the run directory)
DATA_FILES = ("data/d_weak.jsonl", "data/d_icl.jsonl", "data/iter*/*.jsonl", "data/iter*/summary.json",
              "data/pairs.jsonl", "data/pairs_summary.json", "data/stage3/round*/train.jsonl",
              "data/stage3/summary.json", "metrics.json", "report.md")
LOCAL_ONLY = ["checkpoints/*", "DONE", "*.tmp"]


def repo_name(prefix: str, model: str) -> str:
    return f"{prefix}-{model.replace('_', '-')}"


def model_card(name: str, lineage: dict | None, scores: dict | None, run_name: str) -> str:
    """A model card: what the model is, where it comes from, and its numbers on this run."""
    lineage = lineage or {}
    lines = ["---", "library_name: " + ("peft" if lineage.get("adapter") or lineage.get("lora") else "transformers"),
             "tags: [w2s, weak-to-strong]", "---", "",
             f"# {name} ({run_name})", "",
             f"A model of the w2s run `{run_name}` (Weak-to-Strong Reasoning, Yang, Ma, Liu 2024).", "",
             "## Lineage", ""]
    base = lineage.get("base_model") or {}
    lines.append(f"- trained by: {lineage.get('kind', '?')} from `{base.get('path', '?')}`"
                 + (" (a LoRA adapter over it)" if lineage.get("adapter") else ""))
    if (lineage.get("reference") or {}).get("model"):
        lines.append(f"- reference model: `{lineage['reference']['model']}`")
    if lineage.get("untrained"):
        lines.append("- untrained: an unchanged copy of its start (nothing to train on)")
    data = lineage.get("data") or {}
    if data:
        lines.append(f"- data: {data.get('n_records', '?')} records, sha256 `{data.get('sha256')}`")
    if scores:
        ci = scores.get("ci95") or [None, None]
        lines += ["", "## Scores on the run's test set", "",
                  f"- accuracy: {scores.get('accuracy')} (95% CI {ci[0]} to {ci[1]})"]
        lines += [f"- {k}: {scores[k]}" for k in ("pass@k", "maj@k", "avg@k", "pgr", "dev_accuracy") if k in scores]
    lines += ["", "## Settings", "", "```json", json.dumps(lineage.get("config") or {}, indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def push_run(run_dir: Path, models: dict, prefix: str, private: bool = True, api=None) -> dict:
    """Push every trained model of the run and its datasets; returns {repo_id: what was pushed}."""
    from huggingface_hub import HfApi

    api = api or HfApi()  # the token: HF_TOKEN, or huggingface-cli login
    run_dir = Path(run_dir).resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    run_name = (metrics.get("run") or {}).get("name") or run_dir.name
    pushed, seen = {}, set()
    # the method's names first: an alias (m_plus) is pushed under its own name, its row is not
    for name in sorted(models, key=lambda n: not n.startswith("m_")):
        folder = _model_folder(run_dir, models[name])
        if folder is None or folder in seen:
            continue
        seen.add(folder)
        repo = repo_name(prefix, name)
        api.create_repo(repo, private=private, exist_ok=True)
        card = model_card(name, read_lineage(folder), (metrics.get("models") or {}).get(name), run_name)
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo)
        api.upload_folder(folder_path=str(folder), repo_id=repo, ignore_patterns=LOCAL_ONLY,
                          commit_message=f"w2s run {run_name}: {name}")
        pushed[repo] = str(folder.relative_to(run_dir))
    data_repo = f"{prefix}-data"
    api.create_repo(data_repo, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(run_dir), repo_id=data_repo, repo_type="dataset",
                      allow_patterns=list(DATA_FILES), commit_message=f"w2s run {run_name}: data")
    pushed[data_repo] = "data"
    return pushed


def _model_folder(run_dir: Path, ref) -> Path | None:
    """A trained model's complete directory (base models used as is are not pushed)."""
    stage = getattr(ref, "model_stage", None) or getattr(ref, "model_dir", None)
    if stage is None:
        return None
    folder = (run_dir / "models" / stage).resolve()
    return folder if is_complete(folder) else None
