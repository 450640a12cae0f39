"""The weak-to-strong method as a DAG of stages: only the graph, its cache keys and the files
each stage reads and writes. Every stage is a call to one function of `w2s.steps`.

Names of models in the report: weak, strong_fewshot, full_weak, gold_sft,
stage1_iter{i}_{weak,icl,hybrid}, m_plus (= the last iteration's `stage1.m_plus` model, hybrid
by default, an alias of its eval), m_pro_dpo, m_pro_orpo, m_rl (Stage III: the round chosen on
dev, else the last; models/m_rl links to models/stage3_round{r}).

With a dev split (`data.dev`), every model is also scored greedily on it (`eval_dev/NAME.json`):
the numbers settings are chosen by. Test is scored by `eval/NAME.json` only.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

from w2s import steps
from w2s.io import read_records, write_json, write_jsonl
from w2s.pipeline.run_config import RunConfig
from w2s.pipeline.dag import Stage, StageContext
from w2s.report import ModelRef

Q_GOLD, Q_UNLABELED, Q_HIDDEN, Q_TEST = ("data/questions/gold.jsonl", "data/questions/unlabeled.jsonl",
                                         "data/questions/hidden_gold.jsonl", "data/questions/test.jsonl")
Q_DEV = "data/questions/dev.jsonl"  # only when data.dev is set
D_WEAK, D_ICL = "data/d_weak.jsonl", "data/d_icl.jsonl"
D_ICL_SAMPLES = "data/icl_samples.jsonl"  # only with stage1.selection: confidence

@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """What an eval stage scores: a trained model (its stage), or a base model used as is
    (the weak floor without fine-tuning, the strong model few-shot)."""

    model_stage: str | None = None
    base: str | None = None        # "weak" | "strong"
    fewshot: bool = False


class W2SStages:
    """Builds the stage list for one config. Stage functions close over `self`."""

    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.task = steps.make_task(cfg.task)
        self.stages: list[Stage] = []
        self.models: dict[str, ModelRef] = {}   # report name -> where its model and scores live
        self.evals: dict[str, EvalSpec] = {}    # report name -> what its eval stage generates with

    # ---- helpers -------------------------------------------------------------
    def add(self, name, fn, deps=(), params=None, outputs=(), kind="data", always=False):
        self.stages.append(Stage(name, fn, list(deps), {"task": self.cfg.task, **(params or {})},
                                 list(outputs), kind, always))

    def sampling(self, n: int = 1, temperature: float = 0.0, top_p: float = 1.0):
        from w2s.generation import SamplingConfig

        return SamplingConfig(max_new_tokens=self.cfg.generation.max_new_tokens,
                              temperature=temperature if n > 1 or temperature else 0.0,
                              top_p=top_p, top_k=0, n=n, stop=tuple(self.task.stop), seed=self.cfg.seed)

    def backend(self, role: str = "strong") -> str:
        """The generation backend for a role's model: `weak.backend` may override it for the weak one."""
        return (self.cfg.weak.backend if role == "weak" else None) or self.cfg.generation.backend

    def gen_params(self, role: str = "strong", **extra) -> dict:
        from w2s.generation import SPEED_ONLY_OPTIONS

        g = self.cfg.generation
        return {"backend": self.backend(role), "max_new_tokens": g.max_new_tokens, "seed": self.cfg.seed,
                "options": {k: v for k, v in g.options.items() if k not in SPEED_ONLY_OPTIONS}, **extra}

    def generate(self, ctx: StageContext, model: str, prompts: list[dict], sampling, out: str,
                 role: str = "strong") -> dict:
        records = steps.generate_file(model, prompts, sampling, ctx.path(out), partial=ctx.work_path(),
                                      backend=self.backend(role), label=self.label(model),
                                      **self.cfg.generation.options)
        return {"n": len(records)}

    def label(self, model: str) -> str:
        """How records name a model: relative to the run directory when it lives there, so a
        run's files are the same wherever the directory is (or is moved to)."""
        path = Path(model)
        return str(path.relative_to(self.run_dir)) if path.is_relative_to(self.run_dir) else model

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

    def train(self, ctx: StageContext, kind: str, model: str, data: Path, out_stage: str, settings: dict,
              empty_reason: str | None = None) -> dict:
        return steps.train(kind, model, data, ctx.path(f"models/{out_stage}"), settings, launcher=self.cfg.launcher,
                           job_file=ctx.work_path(".job", suffix=".json"), empty_reason=empty_reason)

    def strong_sft_stage(self, name: str, data_stage: str, data_rel: str, report_name: str | None):
        def fn(ctx):
            settings = {"seed": self.cfg.seed, **self.cfg.strong.train}
            if self.cfg.strong.lora is not None:
                settings["lora"] = dict(self.cfg.strong.lora)
            return self.train(ctx, "sft", self.base("strong"), ctx.path(data_rel), name, settings,
                              empty_reason=f"{name}: {data_rel} is empty (nothing selected)")

        self.add(name, fn, deps=[data_stage] + self.base_deps("strong"),
                 params={"strong": self.cfg.strong.model, "train": self.cfg.strong.train,
                         "lora": self.cfg.strong.lora, "seed": self.cfg.seed},
                 outputs=[f"models/{name}"], kind="train")
        if report_name:
            self.add_model(report_name, EvalSpec(model_stage=name))

    def role_of(self, spec: EvalSpec) -> str:
        return "weak" if spec.base == "weak" or spec.model_stage == "weak_sft" else "strong"

    def add_model(self, report_name: str, spec: EvalSpec) -> None:
        self.evals[report_name] = spec
        self.models[report_name] = ModelRef(spec.model_stage, report_name)

    # ---- the graph -------------------------------------------------------------
    def build(self) -> list[Stage]:
        """Data, the weak model and both Stage I columns, then each part of the method in turn."""
        cfg = self.cfg
        data = {k: v for k, v in dataclasses.asdict(cfg.data).items()
                if not (k in ("dev", "limit_dev") and v is None)}  # runs without dev keep their keys
        self.add("load_data", self.load_data, params={"data": data, "contents": _data_hashes(cfg.data)},
                 outputs=[Q_GOLD, Q_UNLABELED, Q_HIDDEN, Q_TEST] + ([Q_DEV] if cfg.data.dev else []))

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
        if "weak" in cfg.baselines:
            self.add_model("weak", EvalSpec(model_stage="weak_sft") if cfg.weak.finetune else EvalSpec(base="weak"))

        self.add("weak_answers", self.zero_shot_fn(self.weak_model(), D_WEAK, role="weak"), deps=weak_deps,
                 params=self.gen_params("weak"), outputs=[D_WEAK], kind="generate")
        self.add("icl_answers", self.icl_answers, deps=["weak_answers"] + self.base_deps("strong"),
                 params=self.gen_params(strong=cfg.strong.model, shots=cfg.stage1.shots),
                 outputs=[D_ICL], kind="generate")
        s1 = cfg.stage1
        if s1.selection == "confidence":  # the strong model's k in-context samples: its vote shares
            self.add("icl_samples", self.icl_samples, deps=["weak_answers"] + self.base_deps("strong"),
                     params=self.gen_params(strong=cfg.strong.model, shots=s1.shots, k=s1.confidence_samples,
                                            temperature=s1.confidence_temperature),
                     outputs=[D_ICL_SAMPLES], kind="generate")
        m_plus = self.add_stage1()
        if cfg.stage2.enabled:
            self.add_stage2(m_plus)
        if cfg.stage3.enabled:
            self.add_stage3(m_plus)
        self.add_baselines()
        self.add_evals_and_report()
        return dependencies_first(self.stages)

    def add_stage1(self) -> str:
        """Stage I: select, then train the ORIGINAL strong model, each iteration regenerating
        both columns with the previous iteration's models. Returns M_plus's stage."""
        cfg = self.cfg
        iters = cfg.stage1.iterations
        prev_gen = {"weak": "weak_answers", "icl": "icl_answers"}
        gen_files = {"weak": D_WEAK, "icl": D_ICL}
        for i in range(1, iters + 1):
            if i > 1:
                for col in ("weak", "icl"):
                    src_stage = f"sft_iter{i - 1}_{col}"
                    out = f"data/iter{i}/gen_{col}.jsonl"
                    self.add(f"regen_iter{i}_{col}", self.zero_shot_fn(self.model_dir(src_stage), out),
                             deps=[src_stage], params=self.gen_params(), outputs=[out], kind="generate")
                    prev_gen[col], gen_files[col] = f"regen_iter{i}_{col}", out
            sel = f"select_iter{i}"
            outs = [f"data/iter{i}/{v}.jsonl" for v in ("weak", "icl", "hybrid")] + [f"data/iter{i}/summary.json"]
            self.add(sel, self.select_fn(i, gen_files["weak"], gen_files["icl"]),
                     deps=[prev_gen["weak"], prev_gen["icl"], "load_data"] + self.selection_deps(),
                     params=self.selection_params(), outputs=outs)
            variants = set(cfg.stage1.variants) | {cfg.stage1.m_plus}
            if i < iters:
                variants |= {"weak", "icl"}  # they regenerate the next iteration's data
            for v in ("weak", "icl", "hybrid"):
                if v in variants:
                    self.strong_sft_stage(f"sft_iter{i}_{v}", sel, f"data/iter{i}/{v}.jsonl",
                                          f"stage1_iter{i}_{v}")
        m_plus = f"sft_iter{iters}_{cfg.stage1.m_plus}"
        self.models["m_plus"] = ModelRef(m_plus, f"stage1_iter{iters}_{cfg.stage1.m_plus}")  # same model: its eval
        return m_plus

    def add_stage2(self, m_plus: str) -> None:
        """Stage II: M_plus samples, pairs from its votes and the weak answers, DPO/ORPO from M_plus."""
        cfg, s2 = self.cfg, self.cfg.stage2
        self.add("samples", self.samples_fn(m_plus), deps=[m_plus],
                 params=self.gen_params(k=s2.samples, temperature=s2.temperature, top_p=s2.top_p),
                 outputs=["data/samples.jsonl"], kind="generate")
        agreement = {"min_support": s2.min_support, "prefer": s2.prefer} if s2.pairs == "agreement" else {}
        self.add("pairs", self.pairs, deps=["samples", "weak_answers", "load_data"] + ["icl_answers"] * bool(agreement),
                 params={"pairs": s2.pairs, "min_confidence": s2.min_confidence,
                         "flip_confidence": s2.flip_confidence, "max_pairs": s2.max_pairs, "seed": cfg.seed,
                         **agreement},
                 outputs=["data/pairs.jsonl", "data/pairs_summary.json"])
        for m in (["dpo", "orpo"] if s2.method == "both" else [s2.method]):
            name = f"m_pro_{m}"
            self.add(name, self.preference_fn(m, m_plus), deps=["pairs", m_plus],
                     params={"method": m, "train": s2.train, "seed": cfg.seed, "lora": cfg.strong.lora},
                     outputs=[f"models/{name}"], kind="train")
            self.add_model(name, EvalSpec(model_stage=name))

    def stage3_start(self, m_plus: str) -> str:
        """The stage of Stage III's starting policy: `stage3.start`, by default the Stage II model
        when Stage II runs (DPO when it trains both), else M_plus."""
        cfg = self.cfg
        start = cfg.stage3.start
        if start is None:
            start = "m_plus" if not cfg.stage2.enabled else \
                "m_pro_orpo" if cfg.stage2.method == "orpo" else "m_pro_dpo"
        return m_plus if start == "m_plus" else start

    def add_stage3(self, m_plus: str) -> None:
        """Stage III, per round r: the policy samples, pseudo-labels from its samples and the
        weak / in-context answers (no gold), GRPO from the policy; the next round samples from
        the new policy. m_rl = the round with the best greedy dev accuracy, else the last."""
        cfg, s3 = self.cfg, self.cfg.stage3
        policy = self.stage3_start(m_plus)
        rounds = []
        for r in range(1, s3.rounds + 1):
            d = f"data/stage3/round{r}"
            self.add(f"stage3_samples_r{r}", self.stage3_samples_fn(r, policy), deps=[policy, "load_data"],
                     params=self.gen_params(k=s3.samples, temperature=s3.temperature, round=r,
                                            max_questions=s3.max_questions),
                     outputs=[f"{d}/samples.jsonl"], kind="generate")
            self.add(f"stage3_labels_r{r}", self.stage3_labels_fn(r),
                     deps=[f"stage3_samples_r{r}", "weak_answers", "icl_answers", "load_data"],
                     params={"reward": s3.reward, "min_support": s3.min_support, "prefer": s3.prefer,
                             "min_confidence": s3.min_confidence},
                     outputs=[f"{d}/train.jsonl", f"{d}/labels_summary.json"])
            name = f"stage3_round{r}"
            self.add(name, self.stage3_grpo_fn(r, policy), deps=[f"stage3_labels_r{r}", policy],
                     params={"reward": s3.reward, "train": s3.train, "seed": cfg.seed, "lora": cfg.strong.lora,
                             "max_completion_length": cfg.generation.max_new_tokens},
                     outputs=[f"models/{name}"], kind="train")
            if cfg.data.dev:  # greedy dev accuracy of each round's policy: what m_rl is chosen by
                self.add(f"dev_{name}", self.eval_fn(name, EvalSpec(model_stage=name), "eval_dev", Q_DEV, 0),
                         deps=["load_data", name],
                         params=self.gen_params(n=0, temperature=cfg.eval.temperature, model=name, split="dev"),
                         outputs=[f"eval_dev/{name}.json"], kind="eval")
            rounds.append(name)
            policy = name
        # the starting policy's own dev score: did any round beat it?
        self.stage3_start_eval = self.models["m_plus"].eval_name if policy == m_plus else self.stage3_start(m_plus)
        deps = [f"stage3_labels_r{r}" for r in range(1, s3.rounds + 1)] + rounds + \
            ([f"dev_{n}" for n in rounds] + [f"dev_{self.stage3_start_eval}"] if cfg.data.dev else [])
        self.add("m_rl", self.m_rl, deps=deps, params={"rounds": s3.rounds, "reward": s3.reward},
                 outputs=["models/m_rl", "data/stage3/summary.json"], kind="train")
        self.add_model("m_rl", EvalSpec(model_stage="m_rl"))

    def add_baselines(self) -> None:
        cfg = self.cfg
        if "full_weak" in cfg.baselines:
            self.add("full_weak_data", self.full_weak_data, deps=["weak_answers", "load_data"],
                     outputs=["data/full_weak.jsonl"])
            self.strong_sft_stage("full_weak", "full_weak_data", "data/full_weak.jsonl", "full_weak")
        if "gold_sft" in cfg.baselines:
            self.add("gold_sft_data", self.gold_sft_data, deps=["load_data"], outputs=["data/gold_sft.jsonl"])
            self.strong_sft_stage("gold_sft", "gold_sft_data", "data/gold_sft.jsonl", "gold_sft")
        if "strong_fewshot" in cfg.baselines:
            self.add_model("strong_fewshot", EvalSpec(base="strong", fewshot=True))

    def eval_samples(self, report_name: str) -> int:
        """k for a model's test eval: `eval.intermediate_n` for Stage I models that are not M_plus."""
        cfg = self.cfg
        intermediate = report_name.startswith("stage1_") and report_name != self.models["m_plus"].eval_name
        return cfg.eval.intermediate_n if intermediate and cfg.eval.intermediate_n is not None else cfg.eval.n

    def add_evals_and_report(self) -> None:
        """Every model on the test set (and greedily on the dev split, when there is one), then
        the report (rerun every time)."""
        cfg = self.cfg
        eval_stages = []
        splits = [("eval", Q_TEST)] * cfg.eval.test + ([("eval_dev", Q_DEV)] if cfg.data.dev else [])
        for report_name, spec in self.evals.items():
            deps = ["load_data"] + ([spec.model_stage] if spec.model_stage else
                                    ["weak_answers"] * spec.fewshot + self.base_deps(spec.base))
            for split_dir, questions in splits:
                n = self.eval_samples(report_name) if split_dir == "eval" else 0
                stage = f"{'eval' if split_dir == 'eval' else 'dev'}_{report_name}"
                self.add(stage, self.eval_fn(report_name, spec, split_dir, questions, n), deps=deps,
                         params=self.gen_params(self.role_of(spec), n=n, temperature=cfg.eval.temperature,
                                                model=spec.model_stage or f"@{spec.base}_{'fewshot' if spec.fewshot else 'base'}",
                                                shots=cfg.stage1.shots if spec.fewshot else 0,
                                                base=getattr(cfg, spec.base).model if spec.base == "weak" else None,
                                                **({"split": "dev"} if split_dir == "eval_dev" else {})),
                         outputs=[f"{split_dir}/{report_name}.json"], kind="eval")
                eval_stages.append(stage)
        report_deps = eval_stages + [s for s in ("pairs",) if cfg.stage2.enabled] + \
            (["m_rl"] if cfg.stage3.enabled else []) + \
            [f"select_iter{i}" for i in range(1, cfg.stage1.iterations + 1)]
        self.add("report", self.report, deps=report_deps, outputs=["metrics.json", "report.md", "report.html"],
                 kind="report", always=True)

    # ---- stage functions: read files, call one step, write files --------------
    def load_data(self, ctx):
        d, task, cfg = self.cfg.data, self.task, self.cfg
        gold = steps.load_questions(task, d.gold, d.limit_gold, "gold")
        missing = [r["id"] for r in gold if not r.get("solution")]
        if cfg.weak.finetune and missing:
            raise ValueError(f"{d.gold}: question {missing[0]!r} has no gold solution, "
                             f"needed to fine-tune the weak model (weak.finetune: true)")
        unlabeled = steps.load_questions(task, d.unlabeled, d.limit_unlabeled, "unlabeled")
        hidden = {r["id"]: r for r in (steps.load_questions(task, d.hidden_gold, None, "unlabeled")
                                       if d.hidden_gold else unlabeled)}
        hidden_rows = [{k: v for k, v in hidden[r["id"]].items() if k in ("id", "answer", "solution")}
                       for r in unlabeled if r["id"] in hidden]
        test = steps.load_questions(task, d.test, d.limit_test, "test")
        dev = steps.load_questions(task, d.dev, d.limit_dev, "dev") if d.dev else []
        for path, rows in ((d.test, test), (d.dev, dev)):
            if any("answer" not in r for r in rows):
                bad = next(i for i, r in enumerate(rows, 1) if "answer" not in r)
                raise ValueError(f"{path}: row {bad}: no gold answer; a scoring split needs one per question")
        if d.dev:
            write_jsonl(ctx.path(Q_DEV), dev)
        write_jsonl(ctx.path(Q_GOLD), gold)
        # The strong model's view of the unlabeled set: questions only. Gold lives apart.
        write_jsonl(ctx.path(Q_UNLABELED), [{"id": r["id"], "question": r["question"]} for r in unlabeled])
        write_jsonl(ctx.path(Q_HIDDEN), hidden_rows)
        write_jsonl(ctx.path(Q_TEST), test)
        return {"n_gold": len(gold), "n_unlabeled": len(unlabeled), "n_hidden_gold": len(hidden_rows),
                "n_test": len(test), **({"n_dev": len(dev)} if d.dev else {})}

    def tiny_base_fn(self, role: str):
        def fn(ctx):
            from w2s.tiny_models import build_from_spec

            # Pretraining text: the labeled set only (never the unlabeled answers).
            texts = [f"{self.task.prompt(r['question'])}{self.task.completion(r.get('solution', ''))}"
                     for r in self.questions(Q_GOLD)]
            tmp = ctx.path(f"models/.base_{role}.tmp")
            build_from_spec(getattr(self.cfg, role).model, tmp, texts)
            tmp.rename(ctx.path(f"models/base_{role}"))
            return {}
        return fn

    def weak_sft(self, ctx):
        data = ctx.work_path(".train")
        write_jsonl(data, steps.sft_records(self.task, self.questions(Q_GOLD)))
        result = self.train(ctx, "sft", self.base("weak"), data, "weak_sft", {"seed": self.cfg.seed,
                                                                               **self.cfg.weak.train})
        data.unlink(missing_ok=True)
        return result

    def weak_model(self) -> str:
        return self.model_dir("weak_sft") if self.cfg.weak.finetune else self.base("weak")

    def zero_shot_fn(self, model: str, out: str, role: str = "strong"):
        """Answer the unlabeled questions zero-shot with `model` (D_weak, and each iteration's
        regenerated columns)."""
        def fn(ctx):
            prompts = steps.zero_shot_prompts(self.task, self.questions(Q_UNLABELED))
            return self.generate(ctx, model, prompts, self.sampling(), out, role=role)
        return fn

    def fewshot_prompts(self, questions: list[dict], seed_offset: int = 0) -> list[dict]:
        return steps.fewshot_prompts(self.task, questions, read_records(self.run_dir / D_WEAK),
                                     k=self.cfg.stage1.shots, seed=self.cfg.seed + seed_offset,
                                     demo_questions=self.questions(Q_UNLABELED))

    def icl_answers(self, ctx):
        prompts = self.fewshot_prompts(self.questions(Q_UNLABELED))
        return self.generate(ctx, self.base("strong"), prompts, self.sampling(), D_ICL)

    def icl_samples(self, ctx):
        s1 = self.cfg.stage1
        prompts = self.fewshot_prompts(self.questions(Q_UNLABELED))  # the same prompts as D_icl
        return self.generate(ctx, self.base("strong"), prompts,
                             self.sampling(n=s1.confidence_samples, temperature=s1.confidence_temperature),
                             D_ICL_SAMPLES)

    def selection_deps(self) -> list[str]:
        return ["icl_samples"] if self.cfg.stage1.selection == "confidence" else []

    def selection_params(self) -> dict:
        """The strategy and the settings it reads (the cache key changes with them)."""
        s1 = self.cfg.stage1
        extra = {"confidence": {"threshold": s1.confidence_threshold}, "random": {"seed": self.cfg.seed}}
        return {"selection": s1.selection, **extra.get(s1.selection, {})}

    def selection_context(self, ctx) -> dict:
        """What the strategy gets besides the two columns. At every iteration `confidence` counts
        the base strong model's in-context samples (made once) for that iteration's icl answers."""
        s1 = self.cfg.stage1
        if s1.selection == "confidence":
            return {"seed": self.cfg.seed, "icl_samples": read_records(ctx.path(D_ICL_SAMPLES)),
                    "threshold": s1.confidence_threshold}
        return {"seed": self.cfg.seed}

    def select_fn(self, i: int, weak_file: str, icl_file: str):
        def fn(ctx):
            sel, summary = steps.select(self.task, self.questions(Q_UNLABELED), read_records(ctx.path(weak_file)),
                                        read_records(ctx.path(icl_file)), gold=self.questions(Q_HIDDEN),
                                        weak_labels=read_records(ctx.path(D_WEAK)),
                                        strategy=self.cfg.stage1.selection, **self.selection_context(ctx))
            summary = {"iteration": i, **summary}
            steps.write_selection(ctx.path(f"data/iter{i}"), sel, summary)
            return summary
        return fn

    def samples_fn(self, m_plus: str):
        def fn(ctx):
            s2 = self.cfg.stage2
            prompts = steps.zero_shot_prompts(self.task, self.questions(Q_UNLABELED))
            return self.generate(ctx, self.model_dir(m_plus), prompts,
                                 self.sampling(n=s2.samples, temperature=s2.temperature, top_p=s2.top_p),
                                 "data/samples.jsonl")
        return fn

    def pairs(self, ctx):
        s2 = self.cfg.stage2
        built, summary = steps.preference_pairs(
            self.task, self.questions(Q_UNLABELED), read_records(ctx.path(D_WEAK)),
            read_records(ctx.path("data/samples.jsonl")), min_confidence=s2.min_confidence,
            flip_confidence=s2.flip_confidence, max_pairs=s2.max_pairs, seed=self.cfg.seed,
            gold=self.questions(Q_HIDDEN), strategy=s2.pairs,
            # the base strong model's in-context answers (D_icl): its mistakes are less like M_plus's
            # than a fine-tuned icl column's, so agreement with them says more (docs/toy_world.md)
            **({"icl_gens": read_records(ctx.path(D_ICL)), "min_support": s2.min_support,
                "prefer": s2.prefer} if s2.pairs == "agreement" else {}))
        write_jsonl(ctx.path("data/pairs.jsonl"), built)
        write_json(ctx.path("data/pairs_summary.json"), summary)
        return {k: v for k, v in summary.items() if k != "confidences"}

    def preference_fn(self, method: str, m_plus: str):
        def fn(ctx):
            settings = {"seed": self.cfg.seed, **self.cfg.stage2.train, "method": method}
            if self.cfg.strong.lora is not None:
                settings["lora"] = dict(self.cfg.strong.lora)
            return self.train(ctx, "preference", self.model_dir(m_plus), ctx.path("data/pairs.jsonl"),
                              f"m_pro_{method}", settings,
                              empty_reason=f"no preference pairs were built, so m_pro_{method} = M_plus "
                                           "(lower stage2.min_confidence / flip_confidence, or sample more)")
        return fn

    def stage3_samples_fn(self, r: int, policy: str):
        def fn(ctx):
            s3 = self.cfg.stage3
            questions = steps.stage3_questions(self.questions(Q_UNLABELED), s3.max_questions, self.cfg.seed, r)
            return self.generate(ctx, self.model_dir(policy), steps.zero_shot_prompts(self.task, questions),
                                 self.sampling(n=s3.samples, temperature=s3.temperature),
                                 f"data/stage3/round{r}/samples.jsonl")
        return fn

    def stage3_labels_fn(self, r: int):
        def fn(ctx):
            s3, d = self.cfg.stage3, f"data/stage3/round{r}"
            samples = read_records(ctx.path(f"{d}/samples.jsonl"))
            ids = {str(g["id"]) for g in samples}
            questions = [q for q in self.questions(Q_UNLABELED) if q["id"] in ids]
            records, summary = steps.stage3_labels(
                self.task, questions, samples, read_records(ctx.path(D_WEAK)), read_records(ctx.path(D_ICL)),
                reward=s3.reward, gold=self.questions(Q_HIDDEN), min_support=s3.min_support, prefer=s3.prefer,
                min_confidence=s3.min_confidence)
            write_jsonl(ctx.path(f"{d}/train.jsonl"), records)
            write_json(ctx.path(f"{d}/labels_summary.json"), {"round": r, **summary})
            return summary
        return fn

    def stage3_grpo_fn(self, r: int, policy: str):
        def fn(ctx):
            cfg = self.cfg
            settings = {"seed": cfg.seed, "max_completion_length": cfg.generation.max_new_tokens,
                        **cfg.stage3.train, "reward": cfg.stage3.reward, "task": cfg.task}
            if cfg.strong.lora is not None:
                settings["lora"] = dict(cfg.strong.lora)
            return self.train(ctx, "grpo", self.model_dir(policy), ctx.path(f"data/stage3/round{r}/train.jsonl"),
                              f"stage3_round{r}", settings,
                              empty_reason=f"stage3 round {r}: no question got a pseudo-label, so the policy is "
                                           "unchanged (lower stage3.min_support / min_confidence, or sample more)")
        return fn

    def m_rl(self, ctx):
        """Per-round monitor -> data/stage3/summary.json; models/m_rl -> the chosen round's model."""
        import os

        from w2s.io import read_json
        from w2s.training import read_lineage

        rounds = []
        for r in range(1, self.cfg.stage3.rounds + 1):
            name = f"stage3_round{r}"
            dev = ctx.path(f"eval_dev/{name}.json")
            rounds.append({"round": r, **steps.stage3_round_summary(
                read_json(ctx.path(f"data/stage3/round{r}/labels_summary.json")),
                (read_lineage(self.model_dir(name)) or {}).get("grpo_log") or [],
                read_json(dev).get("accuracy") if dev.exists() else None)})
        chosen = steps.choose_round(rounds)
        start_dev = ctx.path(f"eval_dev/{self.stage3_start_eval}.json")
        summary = {"reward": self.cfg.stage3.reward, "start": self.stage3_start("m_plus"),
                   "start_dev_accuracy": read_json(start_dev).get("accuracy") if start_dev.exists() else None,
                   "chosen_round": chosen, "chosen_by": "dev accuracy" if self.cfg.data.dev else "last round",
                   **{k: v for k, v in rounds[chosen - 1].items() if k not in ("round", "reward_curve")},
                   "rounds": rounds}
        link, tmp = ctx.path("models/m_rl"), ctx.path("models/.m_rl.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(f"stage3_round{chosen}", tmp)  # relative: the run directory can move
        os.replace(tmp, link)
        write_json(ctx.path("data/stage3/summary.json"), summary)
        return {"chosen_round": chosen}

    def full_weak_data(self, ctx):
        from w2s.method.selection import full_weak_sft

        recs = full_weak_sft(self.task, self.questions(Q_UNLABELED), read_records(ctx.path(D_WEAK)))
        write_jsonl(ctx.path("data/full_weak.jsonl"), recs)
        return {"n": len(recs)}

    def gold_sft_data(self, ctx):
        unl = {r["id"]: r for r in self.questions(Q_UNLABELED)}
        hidden = [r for r in self.questions(Q_HIDDEN) if r.get("solution") and r["id"] in unl]
        if not hidden:
            raise ValueError("the gold_sft baseline needs gold solutions for the unlabeled questions "
                             "(data.hidden_gold, or solutions inside data.unlabeled)")
        recs = steps.sft_records(self.task, [{**r, "question": unl[r["id"]]["question"]} for r in hidden])
        write_jsonl(ctx.path("data/gold_sft.jsonl"), recs)
        return {"n": len(recs)}

    def eval_fn(self, report_name: str, spec: EvalSpec, split_dir: str = "eval", split: str = Q_TEST,
                n: int | None = None):
        def fn(ctx):
            questions = self.questions(split)
            model = self.model_dir(spec.model_stage) if spec.model_stage else self.base(spec.base)
            prompts = self.fewshot_prompts(questions, seed_offset=1) if spec.fewshot else None
            g = self.cfg.generation
            k = self.cfg.eval.n if n is None else n
            metrics = steps.evaluate(self.task, model, questions, prompts=prompts, n=k,
                                     temperature=self.cfg.eval.temperature,
                                     max_new_tokens=g.max_new_tokens,
                                     backend=self.backend(self.role_of(spec)), seed=self.cfg.seed,
                                     out_path=ctx.path(f"{split_dir}/{report_name}.json"),
                                     progress=True, model_label=self.label(model), **g.options)
            return {k: metrics.get(k) for k in ("n", "accuracy", "k", "pass@k", "maj@k") if k in metrics}
        return fn

    def report(self, ctx):
        from w2s.report import collect_metrics, write_report

        metrics = collect_metrics(ctx.run_dir, self.models)
        write_report(ctx.run_dir, metrics)
        return {"models": sorted(metrics["models"])}


def dependencies_first(stages: list[Stage]) -> list[Stage]:
    """The stages in the order they were added, except that each comes after everything it
    depends on (m_rl needs the dev score of a model whose eval stages are added later)."""
    by_name = {s.name: s for s in stages}
    placed: set[str] = set()
    out: list[Stage] = []

    def place(stage: Stage, path: tuple[str, ...] = ()) -> None:
        if stage.name in placed:
            return
        if stage.name in path:
            raise ValueError(f"stage graph has a cycle: {' -> '.join(path + (stage.name,))}")
        for d in stage.deps:
            if d in by_name:
                place(by_name[d], path + (stage.name,))
        placed.add(stage.name)
        out.append(stage)

    for stage in stages:
        place(stage)
    return out


def _data_hashes(data) -> dict:
    """Content hashes of the local data files, so that editing a file in place reruns what depends on it."""
    from w2s.io import file_sha256

    out = {}
    for name in ("gold", "unlabeled", "test", "hidden_gold", "dev"):
        p = getattr(data, name)
        if p and Path(p).is_file():
            out[name] = file_sha256(p)
    return out


@lru_cache(maxsize=32)
def _read_cached_impl(path: str, mtime: float) -> tuple:
    return tuple(read_records(path))


def _read_cached(path: str) -> list[dict]:
    p = Path(path)
    return [dict(r) for r in _read_cached_impl(path, p.stat().st_mtime if p.exists() else 0.0)]


def build_stages(cfg: RunConfig, run_dir: Path) -> tuple[list[Stage], dict[str, ModelRef]]:
    """The stage list (topological order) and the models the report scores."""
    b = W2SStages(cfg, run_dir)
    return b.build(), b.models
