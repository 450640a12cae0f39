"""The weak-to-strong method as a DAG of stages. Each stage is a few lines that call
`w2s.generation`, `w2s.method` and `w2s.training`; no method logic lives here.

Names of models in the report: weak, strong_fewshot, full_weak, gold_sft,
stage1_iter{i}_{weak,icl,hybrid}, m_plus (= the last iteration's hybrid model),
m_pro_dpo, m_pro_orpo.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import lru_cache
from pathlib import Path

from w2s.io import read_records, write_json, write_jsonl
from w2s.pipeline.config import RunConfig
from w2s.pipeline.runner import Stage, StageContext

log = logging.getLogger("w2s.pipeline")

Q_GOLD, Q_UNLABELED, Q_HIDDEN, Q_TEST = ("data/questions/gold.jsonl", "data/questions/unlabeled.jsonl",
                                         "data/questions/hidden_gold.jsonl", "data/questions/test.jsonl")
D_WEAK, D_ICL = "data/d_weak.jsonl", "data/d_icl.jsonl"


class W2SStages:
    """Builds the stage list for one config. Stage functions close over `self`."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        from w2s.tasks import get_task

        task_cfg = cfg.task if isinstance(cfg.task, dict) else {"name": cfg.task}
        task_cfg = dict(task_cfg)
        self.task = get_task(task_cfg.pop("name"), **task_cfg)
        self.task_params = {"task": cfg.task}
        self.stages: list[Stage] = []
        self.models: dict[str, str] = {}  # report name -> model stage name
        self.run_dir: Path | None = None

    # ---- helpers -------------------------------------------------------------
    def add(self, name, fn, deps=(), params=None, outputs=(), kind="data", always=False):
        self.stages.append(Stage(name, fn, list(deps), {**self.task_params, **(params or {})},
                                 list(outputs), kind, always))

    def sampling(self, n: int = 1, temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None):
        from w2s.generation import SamplingConfig

        return SamplingConfig(max_new_tokens=self.cfg.generation.max_new_tokens,
                              temperature=temperature if n > 1 or temperature else 0.0,
                              top_p=top_p, top_k=0, n=n, stop=tuple(self.task.stop),
                              seed=self.cfg.seed if seed is None else seed)

    def gen_params(self, **extra) -> dict:
        g = self.cfg.generation
        return {"backend": g.backend, "max_new_tokens": g.max_new_tokens, "seed": self.cfg.seed,
                # batch size / dtype do not change greedy results in principle; keep them out of the key
                "options": {k: v for k, v in g.options.items() if k not in ("batch_size", "max_batch_tokens")},
                **extra}

    def generate(self, ctx: StageContext, model: str, prompts: list[dict], sampling, out: str,
                 tag: str = "") -> list[dict]:
        from w2s.generation import generate

        partial = ctx.work_path(tag)
        records = generate(model, prompts, sampling, backend=self.cfg.generation.backend,
                           out_path=str(partial), **self.cfg.generation.options)
        write_jsonl(ctx.path(out), records)
        partial.unlink(missing_ok=True)
        return records

    def base(self, role: str) -> str:
        """The weak/strong base model: a hub name or path, or a tiny model this run builds."""
        spec = getattr(self.cfg, role).model
        return self.model_dir(f"base_{role}") if spec.startswith("tiny:") else spec

    def base_deps(self, role: str) -> list[str]:
        return [f"base_{role}"] if getattr(self.cfg, role).model.startswith("tiny:") else []

    def model_dir(self, stage_name: str) -> str:
        return str(self.run_dir / "models" / stage_name)

    def questions(self, rel: str) -> list[dict]:
        return _read_cached(str(self.run_dir / rel))

    def train_sft(self, ctx: StageContext, model: str, records: list[dict], out: str, settings: dict,
                  lora: dict | None):
        from w2s import generation

        generation.unload()  # free the generation model's memory before training
        data_path = ctx.work_path(".train.jsonl")
        write_jsonl(data_path, records)
        kwargs = {"seed": self.cfg.seed, **settings}
        if lora is not None:
            kwargs["lora"] = dict(lora)
        self.train("sft", ctx, model, data_path, ctx.path(out), kwargs)
        data_path.unlink(missing_ok=True)
        return {"n_train": len(records)}

    def train(self, kind: str, ctx: StageContext, model: str, data: Path, out: Path, settings: dict) -> None:
        """Train in-process, or under the configured launcher (multi-GPU) in a subprocess."""
        from w2s.training import launch

        job = {"kind": kind, "model": model, "data": str(data), "out_dir": str(out), "settings": settings}
        if self.cfg.launcher:
            launch.launch_job(self.cfg.launcher, job, ctx.work_path(".job.json"))
        else:
            launch.run_job(job)

    def strong_sft_params(self) -> dict:
        return {"strong": self.cfg.strong.model, "train": self.cfg.strong.train, "lora": self.cfg.strong.lora,
                "seed": self.cfg.seed}

    def strong_sft_stage(self, name: str, data_stage: str, data_rel: str, report_name: str | None):
        def fn(ctx):
            records = read_records(ctx.path(data_rel))
            if not records:  # nothing selected: fine-tuning on an empty set is the identity
                from w2s.training import untrained_copy

                log.warning("%s: %s is empty; the model is the strong base, unchanged", name, data_rel)
                untrained_copy(self.base("strong"), ctx.path(f"models/{name}"), f"{data_rel} is empty")
                return {"n_train": 0, "untrained": True}
            return self.train_sft(ctx, self.base("strong"), records, f"models/{name}", self.cfg.strong.train,
                                  self.cfg.strong.lora)

        self.add(name, fn, deps=[data_stage] + self.base_deps("strong"), params=self.strong_sft_params(),
                 outputs=[f"models/{name}"], kind="train")
        if report_name:
            self.models[report_name] = name

    # ---- the graph -------------------------------------------------------------
    def build(self) -> list[Stage]:
        cfg = self.cfg
        self.add("load_data", self.load_data, params={"data": dataclasses.asdict(cfg.data),
                                                      "contents": _data_hashes(cfg.data)},
                 outputs=[Q_GOLD, Q_UNLABELED, Q_HIDDEN, Q_TEST])

        for role in ("weak", "strong"):  # tiny locally built base models (CPU examples, tests)
            if getattr(cfg, role).model.startswith("tiny:"):
                self.add(f"base_{role}", self.tiny_base_fn(role), deps=["load_data"],
                         params={"spec": getattr(cfg, role).model}, outputs=[f"models/base_{role}"], kind="train")

        # The weak model: fine-tuned on the labeled set (or used as is).
        if cfg.weak.finetune:
            self.add("weak_sft", self.weak_sft, deps=["load_data"] + self.base_deps("weak"),
                     params={"weak": cfg.weak.model, "train": cfg.weak.train, "seed": cfg.seed},
                     outputs=["models/weak_sft"], kind="train")
            weak_deps = ["weak_sft"]
        else:
            weak_deps = ["load_data"] + self.base_deps("weak")
        self.models["weak"] = "weak_sft" if cfg.weak.finetune else "@weak_base"

        self.add("weak_answers", self.weak_answers, deps=weak_deps, params=self.gen_params(),
                 outputs=[D_WEAK], kind="generate")
        self.add("icl_answers", self.icl_answers, deps=["weak_answers"] + self.base_deps("strong"),
                 params=self.gen_params(strong=cfg.strong.model, shots=cfg.stage1.shots),
                 outputs=[D_ICL], kind="generate")

        # Stage I iterations.
        iters = cfg.stage1.iterations
        prev_gen = {"weak": "weak_answers", "icl": "icl_answers"}
        gen_files = {"weak": D_WEAK, "icl": D_ICL}
        for i in range(1, iters + 1):
            if i > 1:
                for col in ("weak", "icl"):
                    src_stage = f"sft_iter{i - 1}_{col}"
                    out = f"data/iter{i}/gen_{col}.jsonl"
                    self.add(f"regen_iter{i}_{col}", self.regen_fn(src_stage, out), deps=[src_stage],
                             params=self.gen_params(), outputs=[out], kind="generate")
                    prev_gen[col], gen_files[col] = f"regen_iter{i}_{col}", out
            sel = f"select_iter{i}"
            outs = [f"data/iter{i}/{v}.jsonl" for v in ("weak", "icl", "hybrid")] + [f"data/iter{i}/summary.json"]
            self.add(sel, self.select_fn(i, gen_files["weak"], gen_files["icl"]),
                     deps=[prev_gen["weak"], prev_gen["icl"], "load_data"], outputs=outs)
            variants = set(cfg.stage1.variants) | {"hybrid"}
            if i < iters:
                variants |= {"weak", "icl"}  # they regenerate the next iteration's data
            for v in ("weak", "icl", "hybrid"):
                if v in variants:
                    self.strong_sft_stage(f"sft_iter{i}_{v}", sel, f"data/iter{i}/{v}.jsonl",
                                          f"stage1_iter{i}_{v}")
        m_plus = f"sft_iter{iters}_hybrid"
        self.models["m_plus"] = m_plus

        # Stage II.
        if cfg.stage2.enabled:
            s2 = cfg.stage2
            self.add("samples", self.samples_fn(m_plus), deps=[m_plus],
                     params=self.gen_params(k=s2.samples, temperature=s2.temperature, top_p=s2.top_p),
                     outputs=["data/samples.jsonl"], kind="generate")
            self.add("pairs", self.pairs, deps=["samples", "weak_answers", "load_data"],
                     params={"min_confidence": s2.min_confidence, "flip_confidence": s2.flip_confidence,
                             "max_pairs": s2.max_pairs, "seed": cfg.seed},
                     outputs=["data/pairs.jsonl", "data/pairs_summary.json"])
            methods = ["dpo", "orpo"] if s2.method == "both" else [s2.method]
            for m in methods:
                name = f"m_pro_{m}"
                self.add(name, self.preference_fn(m, m_plus), deps=["pairs", m_plus],
                         params={"method": m, "train": s2.train, "seed": cfg.seed, "lora": cfg.strong.lora},
                         outputs=[f"models/{name}"], kind="train")
                self.models[name] = name

        # Baselines.
        if "full_weak" in cfg.baselines:
            self.add("full_weak_data", self.full_weak_data, deps=["weak_answers", "load_data"],
                     outputs=["data/full_weak.jsonl"])
            self.strong_sft_stage("full_weak", "full_weak_data", "data/full_weak.jsonl", "full_weak")
        if "gold_sft" in cfg.baselines:
            self.add("gold_sft_data", self.gold_sft_data, deps=["load_data"], outputs=["data/gold_sft.jsonl"])
            self.strong_sft_stage("gold_sft", "gold_sft_data", "data/gold_sft.jsonl", "gold_sft")
        if "strong_fewshot" in cfg.baselines:
            self.models["strong_fewshot"] = "@strong_fewshot"
        if "weak" not in cfg.baselines:
            self.models.pop("weak", None)

        # Evaluation of every model on the test set, then the report.
        eval_stages = []
        for report_name, model_stage in self.models.items():
            if report_name == "m_plus":
                continue  # same model as the last hybrid; the report aliases it
            stage_name = f"eval_{report_name}"
            deps = ["load_data"] + ([model_stage] if not model_stage.startswith("@") else [])
            if model_stage == "@strong_fewshot":
                deps += ["weak_answers"] + self.base_deps("strong")
            if model_stage == "@weak_base":
                deps += self.base_deps("weak")
            self.add(stage_name, self.eval_fn(report_name, model_stage), deps=deps,
                     params=self.gen_params(n=cfg.eval.n, temperature=cfg.eval.temperature,
                                            model=model_stage, shots=cfg.stage1.shots
                                            if model_stage == "@strong_fewshot" else 0,
                                            base=cfg.weak.model if model_stage == "@weak_base" else None),
                     outputs=[f"eval/{report_name}.json"], kind="eval")
            eval_stages.append(stage_name)
        report_deps = eval_stages + [s for s in ("pairs",) if cfg.stage2.enabled] + \
            [f"select_iter{i}" for i in range(1, iters + 1)]
        self.add("report", self.report, deps=report_deps, outputs=["metrics.json", "report.md", "report.html"],
                 kind="report", always=True)
        return self.stages

    # ---- stage functions ---------------------------------------------------
    def load_data(self, ctx):
        d, task = self.cfg.data, self.task

        def load(path, limit, prefix):
            rows = task.load_questions(path, id_prefix=prefix)
            return rows[:limit] if limit else rows

        gold = load(d.gold, d.limit_gold, "gold")
        missing = [r["id"] for r in gold if not r.get("solution")]
        if self.cfg.weak.finetune and missing:
            raise ValueError(f"{d.gold}: question {missing[0]!r} has no gold solution, "
                             f"needed to fine-tune the weak model (weak.finetune: true)")
        unlabeled = load(d.unlabeled, d.limit_unlabeled, "unlabeled")
        hidden = {r["id"]: r for r in (load(d.hidden_gold, None, "unlabeled") if d.hidden_gold else unlabeled)}
        hidden_rows = [{k: v for k, v in hidden[r["id"]].items() if k in ("id", "answer", "solution")}
                       for r in unlabeled if r["id"] in hidden]
        test = load(d.test, d.limit_test, "test")
        if any("answer" not in r for r in test):
            bad = next(i for i, r in enumerate(test, 1) if "answer" not in r)
            raise ValueError(f"{d.test}: row {bad}: no gold answer; the test set needs one per question")
        write_jsonl(ctx.path(Q_GOLD), gold)
        # The strong model's view of the unlabeled set: questions only. Gold lives apart.
        write_jsonl(ctx.path(Q_UNLABELED), [{"id": r["id"], "question": r["question"]} for r in unlabeled])
        write_jsonl(ctx.path(Q_HIDDEN), hidden_rows)
        write_jsonl(ctx.path(Q_TEST), test)
        return {"n_gold": len(gold), "n_unlabeled": len(unlabeled), "n_hidden_gold": len(hidden_rows),
                "n_test": len(test)}

    def tiny_base_fn(self, role: str):
        def fn(ctx):
            from w2s.tiny import build_from_spec

            # Pretraining text: the labeled set only (never the unlabeled answers).
            texts = [f"{self.task.prompt(r['question'])}{self.task.completion(r.get('solution', ''))}"
                     for r in self.questions(Q_GOLD)]
            tmp = ctx.path(f"models/.base_{role}.tmp")
            build_from_spec(getattr(self.cfg, role).model, tmp, texts)
            tmp.rename(ctx.path(f"models/base_{role}"))
            return {}
        return fn

    def weak_sft(self, ctx):
        gold = self.questions(Q_GOLD)
        records = [{"id": r["id"], "prompt": self.task.prompt(r["question"]),
                    "completion": self.task.completion(r["solution"])} for r in gold]
        return self.train_sft(ctx, self.base("weak"), records, "models/weak_sft", self.cfg.weak.train, None)

    def weak_model(self) -> str:
        return self.model_dir("weak_sft") if self.cfg.weak.finetune else self.base("weak")

    def weak_answers(self, ctx):
        unl = self.questions(Q_UNLABELED)
        prompts = [{"id": r["id"], "prompt": self.task.prompt(r["question"])} for r in unl]
        recs = self.generate(ctx, self.weak_model(), prompts, self.sampling(), D_WEAK)
        return {"n": len(recs)}

    def fewshot_prompts(self, questions: list[dict], seed_offset: int = 0) -> list[dict]:
        from w2s.method.fewshot import build_fewshot_prompts

        demos = _join_questions(read_records(self.run_dir / D_WEAK), self.questions(Q_UNLABELED))
        return build_fewshot_prompts(self.task, questions, demos, k=self.cfg.stage1.shots,
                                     seed=self.cfg.seed + seed_offset)

    def icl_answers(self, ctx):
        prompts = self.fewshot_prompts(self.questions(Q_UNLABELED))
        recs = self.generate(ctx, self.base("strong"), prompts, self.sampling(), D_ICL)
        return {"n": len(recs)}

    def regen_fn(self, model_stage: str, out: str):
        def fn(ctx):
            unl = self.questions(Q_UNLABELED)
            prompts = [{"id": r["id"], "prompt": self.task.prompt(r["question"])} for r in unl]
            return {"n": len(self.generate(ctx, self.model_dir(model_stage), prompts, self.sampling(), out))}
        return fn

    def select_fn(self, i: int, weak_file: str, icl_file: str):
        def fn(ctx):
            from w2s.method import metrics, selection

            unl = self.questions(Q_UNLABELED)
            sel = selection.select_consistent(self.task, unl, read_records(ctx.path(weak_file)),
                                              read_records(ctx.path(icl_file)))
            for v in ("weak", "icl", "hybrid"):
                write_jsonl(ctx.path(f"data/iter{i}/{v}.jsonl"), getattr(sel, v))
            summary = {"iteration": i, "n_questions": len(unl), "n_selected": len(sel.ids)}
            hidden = [r for r in self.questions(Q_HIDDEN) if "answer" in r]
            if hidden:  # diagnostics only: how accurate is what the method picked, vs raw weak labels?
                summary.update(metrics.selection_diagnostics(self.task, sel, hidden))
                weak_ok = metrics.correctness_by_id(self.task, read_records(ctx.path(D_WEAK)),
                                                    metrics.golds_of(hidden))
                summary["weak_accuracy"] = metrics.accuracy(bool(v) and v[0] for v in weak_ok.values())
            write_json(ctx.path(f"data/iter{i}/summary.json"), summary)
            return summary
        return fn

    def samples_fn(self, m_plus: str):
        def fn(ctx):
            s2 = self.cfg.stage2
            unl = self.questions(Q_UNLABELED)
            prompts = [{"id": r["id"], "prompt": self.task.prompt(r["question"])} for r in unl]
            recs = self.generate(ctx, self.model_dir(m_plus), prompts,
                                 self.sampling(n=s2.samples, temperature=s2.temperature, top_p=s2.top_p),
                                 "data/samples.jsonl")
            return {"n": len(recs)}
        return fn

    def pairs(self, ctx):
        from w2s.method import metrics, pairs, voting

        s2 = self.cfg.stage2
        unl = self.questions(Q_UNLABELED)
        weak = read_records(ctx.path(D_WEAK))
        samples = read_records(ctx.path("data/samples.jsonl"))
        built = pairs.build_pairs(self.task, unl, weak, samples, min_confidence=s2.min_confidence,
                                  flip_confidence=s2.flip_confidence, max_pairs=s2.max_pairs, seed=self.cfg.seed)
        write_jsonl(ctx.path("data/pairs.jsonl"), built)
        votes = voting.majority_vote(self.task, samples)
        summary = {"n_questions": len(unl), "n_pairs": len(built),
                   "weak_chosen": sum(p.get("weak_side") == "chosen" for p in built),
                   "weak_rejected": sum(p.get("weak_side") == "rejected" for p in built),
                   "confidences": [round(v.confidence, 4) for v in votes.values()]}
        hidden = self.questions(Q_HIDDEN)
        if hidden and any("answer" in r for r in hidden):
            summary.update(metrics.pair_diagnostics(self.task, built, hidden))
        write_json(ctx.path("data/pairs_summary.json"), summary)
        return {k: v for k, v in summary.items() if k != "confidences"}

    def preference_fn(self, method: str, m_plus: str):
        def fn(ctx):
            from w2s import generation

            generation.unload()
            pairs_path = ctx.path("data/pairs.jsonl")
            if not read_records(pairs_path):  # no pairs: preference optimisation is the identity
                from w2s.training import untrained_copy

                log.warning("no preference pairs were built; m_pro_%s = M_plus unchanged (lower "
                            "stage2.min_confidence / flip_confidence, or sample more)", method)
                untrained_copy(self.model_dir(m_plus), ctx.path(f"models/m_pro_{method}"), "no preference pairs")
                return {"n_train": 0, "untrained": True}
            kwargs = {"seed": self.cfg.seed, **self.cfg.stage2.train, "method": method}
            if self.cfg.strong.lora is not None:
                kwargs["lora"] = dict(self.cfg.strong.lora)
            self.train("preference", ctx, self.model_dir(m_plus), pairs_path, ctx.path(f"models/m_pro_{method}"),
                       kwargs)
            return {}
        return fn

    def full_weak_data(self, ctx):
        from w2s.method.selection import full_weak_sft

        recs = full_weak_sft(self.task, self.questions(Q_UNLABELED), read_records(ctx.path(D_WEAK)))
        write_jsonl(ctx.path("data/full_weak.jsonl"), recs)
        return {"n": len(recs)}

    def gold_sft_data(self, ctx):
        unl = {r["id"]: r for r in self.questions(Q_UNLABELED)}
        hidden = [r for r in self.questions(Q_HIDDEN) if r.get("solution")]
        if not hidden:
            raise ValueError("the gold_sft baseline needs gold solutions for the unlabeled questions "
                             "(data.hidden_gold, or solutions inside data.unlabeled)")
        recs = [{"id": r["id"], "prompt": self.task.prompt(unl[r["id"]]["question"]),
                 "completion": self.task.completion(r["solution"])} for r in hidden if r["id"] in unl]
        write_jsonl(ctx.path("data/gold_sft.jsonl"), recs)
        return {"n": len(recs)}

    def eval_fn(self, report_name: str, model_stage: str):
        def fn(ctx):
            from w2s.method.metrics import score_generations

            test = self.questions(Q_TEST)
            if model_stage == "@strong_fewshot":
                model, prompts = self.base("strong"), self.fewshot_prompts(test, seed_offset=1)
            else:
                model = self.base("weak") if model_stage == "@weak_base" else self.model_dir(model_stage)
                prompts = [{"id": r["id"], "prompt": self.task.prompt(r["question"])} for r in test]
            greedy = self.generate(ctx, model, prompts, self.sampling(), f"eval/{report_name}.greedy.jsonl")
            samples = []
            if self.cfg.eval.n > 0:
                samples = self.generate(ctx, model, prompts,
                                        self.sampling(n=self.cfg.eval.n, temperature=self.cfg.eval.temperature),
                                        f"eval/{report_name}.samples.jsonl", tag="-samples")
            scores = score_generations(self.task, test, greedy, samples)
            write_json(ctx.path(f"eval/{report_name}.json"), {"model": model, **scores})
            return scores
        return fn

    def report(self, ctx):
        from w2s.report import collect_metrics, write_report

        metrics = collect_metrics(ctx.run_dir, self.models)
        write_report(ctx.run_dir, metrics)
        return {"models": sorted(metrics["models"])}


def _data_hashes(data) -> dict:
    """Content hashes of the local data files, so that editing a file in place reruns what depends on it."""
    from w2s.io import file_sha256

    out = {}
    for name in ("gold", "unlabeled", "test", "hidden_gold"):
        p = getattr(data, name)
        if p and Path(p).is_file():
            out[name] = file_sha256(p)
    return out


def _join_questions(gens: list[dict], questions: list[dict]) -> list[dict]:
    by_id = {r["id"]: r for r in questions}
    return [{**g, "question": by_id[g["id"]]["question"]} for g in gens if g["id"] in by_id]


@lru_cache(maxsize=32)
def _read_cached_impl(path: str, mtime: float) -> tuple:
    return tuple(read_records(path))


def _read_cached(path: str) -> list[dict]:
    p = Path(path)
    return [dict(r) for r in _read_cached_impl(path, p.stat().st_mtime if p.exists() else 0.0)]


def build_stages(cfg: RunConfig, run_dir: Path) -> tuple[list[Stage], dict[str, str]]:
    b = W2SStages(cfg)
    b.run_dir = Path(run_dir)
    stages = b.build()
    return stages, b.models
