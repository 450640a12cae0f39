"""The toy world: seeded GSM8K-style multi-step word problems with exact integer answers.

A problem is a *step list* — a start value followed by 2..6 operations
(`add k`, `sub k`, `double`, `triple`, `half`) applied to one person's stock of one kind of
object — rendered as a short story with distractor sentences (numbers that play no part),
plus a chain-of-thought solution in the task format:

    Question: Mia has 12 apples. Leo has 30 apples. She buys 5 more apples.
    She doubles her apples. She gives away 7 apples. How many apples does Mia have now?
    Answer: Mia has 12 apples. Leo has 30 apples: skip. She buys 5 more apples: 12 + 5 = 17.
    She doubles her apples: 17 * 2 = 34. She gives away 7 apples: 34 - 7 = 27.
    #### 27

Difficulty is set by `WorldConfig` (number of steps, operand size, value cap, distractors).
`evaluate_steps` is an independent evaluator of the step list (it shares no code with the
generator); `check_solution` re-derives the answer from the equations of a solution text.

Splits (`make_splits`) are seeded per item — `test[i]` depends only on the world seed and `i`
— so the test split is the same for a given seed whatever the train sizes; questions are
unique across the three splits.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass

from w2s.toy.problem import Problem, steps_key
from w2s.toy.solutions import forms_rng, leave_out_rng, plan_of, solution_text

# --------------------------------------------------------------------------- lexicon

NAMES = [("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Sam", "he"), ("Zoe", "she"),
         ("Max", "he"), ("Ella", "she"), ("Ben", "he"), ("Lily", "she"), ("Tom", "he"),
         ("Nora", "she"), ("Jack", "he"), ("Ruby", "she"), ("Owen", "he"), ("Ivy", "she"),
         ("Noah", "he"), ("Emma", "she"), ("Liam", "he"), ("Anna", "she"), ("Paul", "he")]
OBJECTS = ["apples", "marbles", "stickers", "coins", "books", "pencils", "cards", "shells",
           "stamps", "cookies", "eggs", "balloons", "candies", "beads", "toys", "flowers"]
POSSESSIVE = {"she": "her", "he": "his"}

OPS = ("add", "sub", "double", "triple", "half")
#: world versions (each designed and measured in docs/toy_world.md). v10: one form per equation
#: (every number published before v11); v11: forms drawn per equation (`12 + 5` or `5 + 12`) and
#: symbol-run markers in the corpus; v12: document-only markers; v13: repeat documents (copying);
#: v14: operands <= 20, step-like distractors, no `#` run; v15-v19: v14's questions, other corpora;
#: v20: v19's corpus and models, each distractor of a gold solution skipped or left out; v21: v19's
#: corpus and models, each gold solution in one of three plans; v22: v21's task, a corpus whose
#: documents mix the three plans; v23: v21's task, v19's weak base and v22's strong base; v24: v23
#: with a weak base one size up (its own, on v22's corpus); v25: v21's task, new bases on a corpus
#: whose stories are solved with distractors (told, never computed); v26: v25's strong base, v19's weak;
#: v27: v21's task, new bases on a corpus a quarter of whose documents solve distractors in any plan;
#: v28: v25's strong base, v27's weak; v29: v27's weak base, a new strong one on v27's corpus solved in one
#: plan per document.
VERSIONS = ("v10", "v11", "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23",
            "v24", "v25", "v26", "v27", "v28", "v29")
#: the largest add/sub operand when a config sets none: v14's arithmetic is a fifth of v13's facts
V14_QUESTIONS = VERSIONS[VERSIONS.index("v14"):]   # the versions that ask v14's questions
#: versions that take base models from other versions (a role not named: the version's own)
SHARED_BASES = {"v20": {"weak": "v19", "strong": "v19"}, "v21": {"weak": "v19", "strong": "v19"},
                "v23": {"weak": "v19", "strong": "v22"}, "v24": {"strong": "v22"},
                "v26": {"weak": "v19", "strong": "v25"}, "v28": {"weak": "v27", "strong": "v25"},
                "v29": {"weak": "v27"}}
MAX_OPERAND = dict.fromkeys(V14_QUESTIONS, 20)

# Question sentences per operation. {S}: subject (pronoun or name), {s}: lower-case pronoun,
# {pos}: possessive, {k}: operand, {obj}: object noun.
# One template per operation: richer surfaces (several templates per operation, connectives
# such as "Next," / "After that,", seven distractor kinds) made the step -> sentence pointer too
# hard for the toy models (docs/toy_world.md, runs v1-v4).
Q_START = ["{N} has {v} {obj}."]
Q_OPS = {
    "add": ["{S} buys {k} more {obj}."],
    "sub": ["{S} gives away {k} {obj}."],
    "double": ["{S} doubles {pos} {obj}."],
    "triple": ["{S} triples {pos} {obj}."],
    "half": ["{S} halves {pos} {obj}."],
}
Q_DISTRACTORS = ["{N2} has {k} {obj}.", "{N} is {k} years old.", "{N2} buys {k} {obj2}."]
#: v14: also distractors that read like a step of the problem but happen to someone else, so that
#: using one (or skipping the real step beside it) is a plan-level error a model can make
Q_DISTRACTORS_V14 = Q_DISTRACTORS + ["{N2} buys {k} more {obj}.", "{N2} gives away {k} {obj}."]
Q_FINAL = ["How many {obj} does {N} have now?"]


@dataclass(frozen=True)
class WorldConfig:
    """Difficulty knobs. Every value that can appear stays within 0..max_value."""

    min_steps: int = 2            # operations after the start value
    max_steps: int = 5
    min_start: int = 2
    max_start: int = 99
    max_operand: int | None = None  # operand of add / sub; None: the version's (MAX_OPERAND, else 99)
    max_value: int = 99           # cap on every intermediate value (the tokenizer covers 0..299)
    max_distractors: int = 2      # 0..max_distractors distractor sentences per question
    ops: tuple[str, ...] = OPS
    version: str = "v10"

    def __post_init__(self):
        if self.version not in VERSIONS:
            raise ValueError(f"unknown toy world version {self.version!r}; known: {', '.join(VERSIONS)}")
        if self.max_operand is None:  # frozen: resolved once, so world.json records the number
            object.__setattr__(self, "max_operand", MAX_OPERAND.get(self.version, 99))
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError("need 1 <= min_steps <= max_steps")
        if not 0 <= self.min_start <= self.max_start <= self.max_value:
            raise ValueError("need 0 <= min_start <= max_start <= max_value")
        if unknown := set(self.ops) - set(OPS):
            raise ValueError(f"unknown ops {sorted(unknown)}; known: {OPS}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ops"] = list(self.ops)
        if d["version"] == "v10":  # v10's world.json (and every cache keyed by it) as before versions
            del d["version"]
        return d


def base_version(world: str, which: str) -> str:
    """The version whose pretrained `which` ("weak" or "strong") base model `world` uses."""
    return SHARED_BASES.get(world, {}).get(which, world)


def base_corpora(world: str) -> tuple[str, ...]:
    """The versions whose pretraining corpora `world`'s base models read (a world's splits are
    kept apart from each of them)."""
    return tuple(sorted({base_version(world, "weak"), base_version(world, "strong")}))


# --------------------------------------------------------------------------- generator

def _apply(op: str, value: int, k: int | None) -> int:
    return {"add": lambda: value + k, "sub": lambda: value - k, "double": lambda: 2 * value,
            "triple": lambda: 3 * value, "half": lambda: value // 2}[op]()


def _valid_ops(cfg: WorldConfig, v: int) -> list[str]:
    ok = []
    for op in cfg.ops:
        if op == "add" and v + 1 <= cfg.max_value:
            ok.append(op)
        elif op == "sub" and v >= 1:
            ok.append(op)
        elif op == "double" and 0 < 2 * v <= cfg.max_value:
            ok.append(op)
        elif op == "triple" and 0 < 3 * v <= cfg.max_value:
            ok.append(op)
        elif op == "half" and v >= 2 and v % 2 == 0:
            ok.append(op)
    return ok


def sample_steps(rng: random.Random, cfg: WorldConfig) -> tuple[list[list], list[int]]:
    """A random step list and its values (computed by the generator, checked elsewhere)."""
    n = rng.randint(cfg.min_steps, cfg.max_steps)
    v = rng.randint(cfg.min_start, cfg.max_start)
    steps, values = [["start", v]], [v]
    for _ in range(n):
        op = rng.choice(_valid_ops(cfg, v) or ["add"])
        if op == "add":
            k = rng.randint(1, max(1, min(cfg.max_operand, cfg.max_value - v)))
            steps.append([op, k])
        elif op == "sub":
            k = rng.randint(1, min(cfg.max_operand, v))
            steps.append([op, k])
        else:
            k = None
            steps.append([op])
        v = _apply(op, v, k)
        values.append(v)
    return steps, values


def _fmt(template: str, **kw) -> str:
    return template.format(**kw)


def sample_problem(rng: random.Random, cfg: WorldConfig) -> Problem:
    name, pron = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    steps, values = sample_steps(rng, cfg)
    others = [n for n, _ in NAMES if n != name]
    pos = POSSESSIVE[pron]
    # Slots first (steps in order, distractors at random places after the start), so a step
    # that follows a distractor about someone else names its subject instead of "he"/"she".
    slots: list[int | None] = list(range(len(steps)))
    for _ in range(rng.randint(0, cfg.max_distractors)):
        slots.insert(rng.randint(1, len(slots)), None)
    sentences: list[tuple[str, int | None]] = []
    prev_distractor = False
    for i in slots:
        if i is None:
            t = rng.choice(Q_DISTRACTORS_V14 if cfg.version in V14_QUESTIONS else Q_DISTRACTORS)
            k = rng.randint(2, 60 if "years" in t else min(cfg.max_value, max(cfg.max_operand, 12)))
            text = _fmt(t, N=name, N2=rng.choice(others), Pos=pos.capitalize(), k=k, obj=obj,
                        obj2=rng.choice([o for o in OBJECTS if o != obj]))
            sentences.append((text, None))
            prev_distractor = True
            continue
        step = steps[i]
        if i == 0:
            text = _fmt(rng.choice(Q_START), N=name, v=step[1], obj=obj)
        else:
            templates = Q_OPS[step[0]]
            if prev_distractor:
                templates = [t for t in templates if t.startswith("{S}")]
                subj = name
            else:
                subj = rng.choice([pron.capitalize(), pron.capitalize(), name])
            t = rng.choice(templates)
            if not t.startswith("Then "):
                rng.choice([""])  # a retired connector draw: it still consumes the generator, and every
                #                   seeded dataset (and the shipped models' corpus) depends on that
            text = _fmt(t, S=subj, s=pron, pos=pos, k=step[1] if len(step) > 1 else "", obj=obj)
        sentences.append((text, i))
        prev_distractor = False
    final = _fmt(rng.choice(Q_FINAL), obj=obj, N=name)
    return Problem(name, pron, obj, steps, values, sentences, final)


# --------------------------------------------------------------------------- independent checks

def evaluate_steps(steps: list) -> int:
    """Evaluate a step list independently of the generator (raises on a malformed list)."""
    if not steps or steps[0][0] != "start":
        raise ValueError("a step list starts with ['start', value]")
    acc = int(steps[0][1])
    for step in steps[1:]:
        op = step[0]
        if op == "add":
            acc = acc + int(step[1])
        elif op == "sub":
            acc = acc - int(step[1])
        elif op == "double":
            acc = acc * 2
        elif op == "triple":
            acc = acc * 3
        elif op == "half":
            if acc % 2:
                raise ValueError(f"half of odd value {acc}")
            acc = acc // 2
        else:
            raise ValueError(f"unknown op {op!r}")
        if acc < 0:
            raise ValueError("negative value")
    return acc


_EQ = re.compile(r"(-?\d+) ([-+*/]) (\d+) = (-?\d+)")


def check_solution(solution: str) -> int | None:
    """Re-derive the final answer from a task-format solution: every equation must be true
    and chain from the previous result (an operand of `+` and `*`, the left side of `-` and `/`:
    v11 writes `5 + 12`); the `#### N` line must equal the last result.
    Returns the answer, or None if the solution is inconsistent."""
    m = re.search(r"####\s*(-?\d+)", solution)
    if not m:
        return None
    prev = None
    for a, sym, b, r in _EQ.findall(solution[:m.start()]):
        a, b, r = int(a), int(b), int(r)
        true = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[sym]
        if true != r or (prev is not None and a != prev and not (sym in "+*" and b == prev)):
            return None
        prev = r
    ans = int(m.group(1))
    return ans if prev is None or prev == ans else None


# --------------------------------------------------------------------------- splits

SPLITS = ("train_1", "train_2", "test", "dev")
#: no dev split unless asked for: the shipped models' corpus is kept apart from the default splits
DEFAULT_SIZES = {"train_1": 2000, "train_2": 2000, "test": 500, "dev": 0}


def problem_record(p: Problem, split: str, i: int, forms: random.Random | None = None,
                   leave_out: random.Random | None = None, plan: str = "restate") -> dict:
    return {"id": f"toy-{split}-{i}", "question": p.question, "answer": str(p.answer),
            "solution": solution_text(p, forms, leave_out, plan), "steps": p.steps, "n_steps": len(p.steps) - 1}


def n_distractors(record: dict) -> int:
    """Distractor sentences in a problem record's question: its sentences beyond the start and the
    operations (every question sentence ends in `.`, the final question in `?`; no number has a
    point). The operations are the step list's or, in a record without one (a run's question
    files), the gold solution's equations: one each, in every version."""
    steps = len(record["steps"]) if "steps" in record else 1 + record["solution"].split("####")[0].count(" = ")
    return record["question"].count(".") - steps


def _fill(split: str, n: int, seed: int, cfg: WorldConfig, seen: set) -> list[dict]:
    out = []
    for i in range(n):
        for attempt in range(1000):
            rng = random.Random(f"toy:{seed}:{split}:{i}:{attempt}")
            p = sample_problem(rng, cfg)
            if p.question not in seen and p.signature() not in seen:
                break
        else:  # pragma: no cover - only for absurdly small worlds
            raise ValueError(f"could not draw {n} distinct problems for {split}; widen the world")
        seen.add(p.question)
        seen.add(p.signature())
        key = f"{seed}:{split}:{i}"
        out.append(problem_record(p, split, i, forms_rng(cfg.version, key), leave_out_rng(cfg.version, key),
                                  plan_of(cfg.version, key)))
    return out


def make_splits(seed: int = 0, sizes: dict[str, int] | None = None,
                config: WorldConfig | None = None, exclude: set | None = None) -> dict[str, list[dict]]:
    """train_1 / train_2 / test (and, when its size is set, dev) question records (with gold
    answer, solution, step list).

    The test split is drawn first, so it depends only on (seed, config, its size, exclude);
    train_1 then train_2 avoid every earlier question (text and step-list signature); dev is
    drawn last, so asking for it leaves the other splits as they were.
    `exclude` (question texts and step lists, e.g. `w2s.toy.pretrain.corpus_signatures()`)
    is avoided by every split: decontamination against a pretraining corpus."""
    cfg = config or WorldConfig()
    sz = {**DEFAULT_SIZES, **(sizes or {})}
    seen: set = set(exclude or ())
    out = {}
    for split in ("test", "train_1", "train_2", "dev"):
        out[split] = _fill(split, sz[split], seed, cfg, seen)
    return {s: out[s] for s in SPLITS if s != "dev" or sz["dev"] > 0}


def world_info(seed: int, sizes: dict[str, int], config: WorldConfig, decontaminate: bool = True) -> dict:
    """What `write_splits` records in world.json (compare to decide whether data can be reused)."""
    return {"seed": seed, "sizes": {**DEFAULT_SIZES, **sizes}, "config": config.to_dict(),
            "decontaminated_against_corpus_seed": 0 if decontaminate else None}


def split_signatures(splits: dict[str, list[dict]]) -> set:
    """Question texts and step lists of the splits (kept out of the pretraining corpus)."""
    out: set = set()
    for rs in splits.values():
        for r in rs:
            out.add(r["question"])
            out.add(steps_key(r["steps"]))
    return out
