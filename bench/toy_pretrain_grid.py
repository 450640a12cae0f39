"""Pretrain a world's base models for several corpus variants and initialisation seeds at once, one
process per model (a GPU runs them side by side; the CPU runs them one after the other):

    python bench/toy_pretrain_grid.py --world v15 --variants v15 no-drill --init-seeds 2 102 202 \
        --device cuda --out runs/grid_v15

Writes `OUT/<variant>/weak` (the spec's own seed) and `OUT/<variant>/strong-s<seed>`, each an
ordinary pretraining output (manifest.json included). Whether a base model copies a demonstrated
marker is chance over initialisations (docs/toy_world.md, world v14), so a world's corpus is
judged on several of them: probe each with `bench/toy_copy_probe.py --model` and
`bench/toy_marker_probe.py --model`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import replace
from pathlib import Path

#: corpus variants beside the world's own recipe (each a change of `pretrain.RECIPES[world]`)
VARIANTS = {
    "no-drill": {"share_drill": 0.0, "n_docs": 27500},
    "wide-runs": {"longest_run": 8},
    "facts-spaced": {"fact_styles": (("spaced", 1.0),)},
}


def recipe_of(world: str, variant: str):
    from w2s.toy.pretrain import RECIPES

    return RECIPES[world] if variant == world else replace(RECIPES[world], **VARIANTS[variant])


def one(job: tuple) -> str:
    world, variant, name, init_seed, out, device, threads = job
    from w2s.toy.pretrain import SPECS_BY_WORLD, pretrain

    spec = SPECS_BY_WORLD[world][name]
    if init_seed is not None:
        spec = replace(spec, init_seed=init_seed)
    target = Path(out) / variant
    label = name if init_seed is None else f"{name}-s{init_seed}"
    t0 = time.time()
    paths = pretrain(target / "_tmp" / label, which=(name,), world=world, recipe=recipe_of(world, variant),
                     specs={name: spec}, device=device, threads=threads,
                     log=lambda m: print(f"{variant}/{label} {m}", flush=True))
    paths[name].rename(target / label)
    return f"{variant}/{label}: {time.time() - t0:.0f}s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--variants", nargs="+", required=True, help=f"the world itself or: {', '.join(VARIANTS)}")
    ap.add_argument("--init-seeds", nargs="+", type=int, default=[2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    jobs = []
    for variant in a.variants:
        recipe_of(a.world, variant)  # an unknown variant fails before any work
        jobs.append((a.world, variant, "weak", None, a.out, a.device, a.threads))
        jobs += [(a.world, variant, "strong", s, a.out, a.device, a.threads) for s in a.init_seeds]
    procs = len(jobs) if a.device != "cpu" else 1
    with mp.get_context("spawn").Pool(procs) as pool:
        for line in pool.imap_unordered(one, jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
