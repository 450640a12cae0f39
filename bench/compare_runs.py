"""Compare two run directories: the byte-identity check for refactors.

    python bench/compare_runs.py runs/before runs/after

Every data/ and eval/ JSONL file is compared byte for byte, and again with each run directory's
own path replaced (runs written by older versions name run-internal models by absolute path);
JSON summaries and eval files are compared on the keys both have (wall time left out); every
model's accuracy, pass@k, maj@k and PGR in metrics.json are compared. Exit 1 on any difference
beyond the run directory's path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCORES = ("accuracy", "pass@k", "maj@k", "pgr")


def main(a: Path, b: Path) -> int:
    a, b = a.resolve(), b.resolve()
    identical = same_but_path = different = 0
    for f in sorted(a.rglob("*.jsonl")):
        rel = f.relative_to(a)
        if rel.parts[0] not in ("data", "eval"):
            continue
        g = b / rel
        if not g.exists():
            print(f"missing in {b}: {rel}")
            different += 1
        elif f.read_bytes() == g.read_bytes():
            identical += 1
        elif f.read_text().replace(str(a), "RUN") == g.read_text().replace(str(b), "RUN"):
            same_but_path += 1
        else:
            print(f"different: {rel}")
            different += 1
    print(f"jsonl: {identical} identical, {same_but_path} identical but for the run directory's path, "
          f"{different} different or missing")
    for f in sorted([*a.glob("data/**/*.json"), *a.glob("eval/*.json")]):
        rel = f.relative_to(a)
        if not (b / rel).exists() or rel.name.endswith(".generations.json"):
            continue
        x, y = json.loads(f.read_text()), json.loads((b / rel).read_text())
        bad = [k for k in x if k in y and k not in ("seconds", "model") and x[k] != y[k]]
        if bad:
            print(f"{rel}: differs on {bad}")
            different += 1
    ma = json.loads((a / "metrics.json").read_text())["models"]
    mb = json.loads((b / "metrics.json").read_text())["models"]
    for name, m in ma.items():
        if any(m.get(k) != mb.get(name, {}).get(k) for k in SCORES):
            print(f"metrics differ for {name}: {[m.get(k) for k in SCORES]} vs "
                  f"{[mb.get(name, {}).get(k) for k in SCORES]}")
            different += 1
    print("same" if not different else f"{different} differences")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
