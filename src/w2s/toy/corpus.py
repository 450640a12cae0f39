"""The pretraining corpus of the toy world: the same kind of problems in many surface formats,
the task's own format (`Question:` / `Answer:` / `####`) held out.

Three kinds of document (shares set by `CorpusRecipe`):

* problem documents — 2..6 problems (v19: none with a distractor), every problem of a document
  in ONE random surface format (question key `Problem:`/`Q:`/`Task:`..., solution key `Solution:`/`Work:`/..., step layout,
  equation style, final marker `Result: N`/`=> N`/...), so models learn to pick a format up
  from context; most solutions restate each question sentence before its equation (the task's
  solution style, in other separators), and 30 % are keyed by nonsense words (`NOVEL_WORDS`);
  v22-v27 draw a solution plan per problem, v29 one per document (so the context shows it);
* narrative documents — the same stories told with the running total stated after each event;
* arithmetic facts — lists of single operations, one style per document;
* repeat documents (v13 on) — a random list of words and numbers written 2-5 times: the plain
  copying ("induction") that the other kinds never demand beyond one problem, and without which
  no base model copied a key or a final marker from an earlier problem (docs/toy_world.md);
* drill documents (v15 on) — 8-16 one-step problems under one nonsense format: copying the
  previous problem's final marker, demanded ~11 times a document (it then forms on every
  initialisation, not by chance).

Equation styles: `compact` (`12+5=17`, bare number tokens, far from the task), `words`
(`12 plus 5 is 17`), `verbal` (`add 5 to 12 to get 17`) and `spaced` (`12 + 5 = 17`, the
task's own equation style) which is kept to a small share of problem documents (a larger
one of fact documents): removing it altogether starves the weak model (docs/toy_world.md).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace

from w2s.toy.solutions import PLANS, chain, equation_form, restated_steps, story_steps
from w2s.toy.problem import Problem, steps_key
from w2s.toy.world import NAMES, OBJECTS, WorldConfig, sample_problem

BANNED = ("Question", "Answer", "####")

Q_KEYS = ["Problem:", "Q:", "Task:", "Puzzle:", "Exercise:", "Story:"]
A_KEYS = ["Solution:", "A:", "Work:", "Steps:", "Reasoning:", "Sol:"]
FINALS = ["Result: {a}", "So the result is {a}.", "Final: {a}", "=> {a}", "Total: {a}",
          "{N} ends with {a} {obj}."]
STARTS = ["{N} starts with {v} {obj}.", "Start: {v}.", "{N} has {v}.", ""]
LAYOUTS = ["plain", "lines", "numbered", "numbered_lines"]
#: how a restated sentence is joined to its equation / to the skip mark of a distractor
RESTATE_SEPS = [": ", ", so ", " -> ", " gives ", "; "]
SKIP_MARKS = ["skip", "ignore", "not needed", "no change", "irrelevant", "not counted"]
#: nonsense keywords: documents keyed by rare words teach "copy the format from the context"
#: rather than a memorised list of keys (the task's `Question:`/`Answer:` are new to the models)
_SYL = ["ba", "ko", "ri", "zu", "mel", "tan", "vo", "pli", "gra", "dun", "sek", "fo", "lu", "wix", "ny", "quo"]
NOVEL_WORDS = sorted({(a + b + c).capitalize() for a in _SYL[:4] for b in _SYL[6:9] for c in _SYL[11:]})
NOVEL_MARKS = ["@@", "%%", "&&", "~~", "$$", "**", "++", "##", "==", ">>", "<<", "!!", "::", "||"]
#: v12: the share of the other problem documents (familiar keys) that end with a novel final marker
NOVEL_FINALS_SHARE = 0.5
#: versions whose corpus never writes two `#` in a row (v15 writes `#` singly: tags, line numbers)
NO_HASH_RUNS = ("v14", "v15")


def symbol_run(rng: random.Random, version: str, longest: int = 5) -> str:
    """v11's novel final markers: a run of 2-`longest` of one symbol (`@@@@`, `%%%`), so that copying
    a demonstrated run such as the task's `####` is learned; `#` at most 3 times (`####` is banned).
    v14-v15 write no `#` run: v13's strong base copied `@@@@ N` 118 times in 120 but wrote `### N`
    for `#### N` 88 times. v16 has them again: v15's bases never copied a `#` they had only seen
    outside the marker's role (docs/toy_world.md)."""
    marks = [m[0] for m in NOVEL_MARKS if m != "##" or version not in NO_HASH_RUNS]
    sym = rng.choice(marks)
    return sym * rng.randint(2, 3 if sym == "#" else longest)


def two_runs(rng: random.Random, version: str, longest: int = 5) -> str:
    """v17: two runs of different symbols (`##@@`, `%%%###`): where a run ends, what follows (the
    number or another run) is known only from the context, so the model copies there instead of
    learning that a `#` run ends after the third (v16's bases wrote `### N` for `#### N`)."""
    first = symbol_run(rng, version, longest)
    while (second := symbol_run(rng, version, longest))[0] == first[0]:
        pass
    return first + second


@dataclass(frozen=True)
class CorpusRecipe:
    n_docs: int = 20000
    share_problems: float = 0.6
    share_narrative: float = 0.15
    share_facts: float = 0.25
    #: repeat documents (v13): a random list of words written several times; 0 draws none
    share_repeat: float = 0.0
    #: drill documents (v15): many one-step problems under one nonsense format (`drill_doc`)
    share_drill: float = 0.0
    #: narrative and fact documents that write `#` singly (v15: tags `#Leo`, line numbers `#3`), so
    #: the task marker's token is a pretraining target without any `#` run to learn a length from
    share_hash_singles: float = 0.0
    #: the longest symbol-run final marker of a symbol other than `#` (whose runs stop at 3)
    longest_run: int = 5
    #: symbol-run markers made of two runs (v17, `two_runs`), the share of documents drawing one
    share_two_runs: float = 0.0
    #: solved problems (problem and drill documents) with distractor sentences; v19: none, so the
    #: task's `: skip.` is seen only in its demonstrations and training data (stories keep theirs)
    solved_distractors: bool = True
    #: v22: every problem of a problem or drill document draws its own plan (restated, a chain of
    #: equations, a story with running totals; `solutions.PLANS`), so plans vary within a format
    mixed_plans: bool = False
    #: v25 (with `mixed_plans`): each problem draws its plan first, and a story's problem is drawn
    #: with distractors, told as written and never computed (restated and chained ones have none),
    #: so that the plans differ in how they meet a distractor
    story_distractors: bool = False
    #: v27: the share of problem and drill documents whose problems are drawn with distractors, solved
    #: in whatever plan each draws (the rest have none), so that a distractor does not name the plan
    distractor_docs: float = 0.0
    #: v29: each problem and drill document solves all its problems in one plan (drawn per document), so
    #: the context shows the plan as it shows the final marker (v22-v27 draw a plan per problem)
    document_plans: bool = False
    #: problem documents whose solutions restate each question sentence before its equation
    share_restate: float = 0.85
    #: problem documents keyed by nonsense words / symbol final markers
    share_novel_keys: float = 0.3
    #: equation-style weights in problem documents; `spaced` is the task's style
    eq_styles: tuple[tuple[str, float], ...] = (("compact", 0.3), ("words", 0.2), ("verbal", 0.2),
                                                ("spaced", 0.3))
    #: equation-style weights in arithmetic-fact documents
    fact_styles: tuple[tuple[str, float], ...] = (("compact", 0.3), ("words", 0.3), ("verbal", 0.1),
                                                  ("spaced", 0.3))
    problems_per_doc: tuple[int, int] = (2, 6)
    stories_per_doc: tuple[int, int] = (2, 5)
    facts_per_doc: tuple[int, int] = (20, 50)
    world: WorldConfig = field(default_factory=WorldConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eq_styles"] = [list(x) for x in self.eq_styles]
        d["fact_styles"] = [list(x) for x in self.fact_styles]
        d["world"] = self.world.to_dict()
        for key, default in (("share_repeat", 0), ("share_drill", 0), ("share_hash_singles", 0),
                             ("longest_run", 5), ("share_two_runs", 0), ("solved_distractors", True),
                             ("mixed_plans", False), ("story_distractors", False),
                             ("distractor_docs", 0.0), ("document_plans", False)):
            if d[key] == default:  # older recipes (and their manifests) predate the field
                del d[key]
        return d


# --------------------------------------------------------------------------- equations

def equation(style: str, op: str, a: int, b: int, r: int, forms: random.Random | None = None) -> str:
    """One operation's equation in a style; `forms` (v11) draws its form (`5 + 12`, `17 + 17`) in
    the symbolic styles (`solutions.equation_form`)."""
    if forms is not None and style in ("spaced", "compact", "words"):
        x, sym, y = equation_form(forms, op, a, b)
        if style == "words":
            return f"{x} {dict(zip('+-*/', ('plus', 'minus', 'times', 'divided by')))[sym]} {y} is {r}"
        return f"{x} {sym} {y} = {r}" if style == "spaced" else f"{x}{sym}{y}={r}"
    if style == "spaced":
        sym = {"add": "+", "sub": "-", "double": "*", "triple": "*", "half": "/"}[op]
        return f"{a} {sym} {b} = {r}"
    if style == "compact":
        sym = {"add": "+", "sub": "-", "double": "*", "triple": "*", "half": "/"}[op]
        return f"{a}{sym}{b}={r}"
    if style == "words":
        w = {"add": "plus", "sub": "minus", "double": "times", "triple": "times", "half": "divided by"}[op]
        return f"{a} {w} {b} is {r}"
    if style == "verbal":
        return {"add": f"add {b} to {a} to get {r}", "sub": f"take {b} from {a} to get {r}",
                "double": f"double {a} to get {r}", "triple": f"triple {a} to get {r}",
                "half": f"halve {a} to get {r}"}[op]
    raise ValueError(style)


# --------------------------------------------------------------------------- documents

def _weighted(rng: random.Random, pairs) -> str:
    names, weights = zip(*pairs)
    return rng.choices(names, weights=weights)[0]


def _problem_format(rng: random.Random, recipe: CorpusRecipe) -> dict:
    fmt = {"q_key": rng.choice(Q_KEYS), "a_key": rng.choice(A_KEYS),
           "key_sep": rng.choice([" ", "\n"]), "eq": _weighted(rng, recipe.eq_styles),
           "layout": rng.choice(LAYOUTS), "start": rng.choice(STARTS),
           "final": rng.choice(FINALS), "final_sep": rng.choice([" ", "\n"]),
           "restate": rng.random() < recipe.share_restate, "restate_sep": rng.choice(RESTATE_SEPS),
           "skip": rng.choice(SKIP_MARKS), "keep_distractors": rng.random() < 0.8}
    if rng.random() < recipe.share_novel_keys:
        q, a, f = rng.sample(NOVEL_WORDS, 3)
        fmt["q_key"], fmt["a_key"] = q + ":", a + ":"
        if recipe.world.version == "v10":
            fmt["final"] = rng.choice([f + ": {a}", rng.choice(NOVEL_MARKS) + " {a}", "{a} " + f.lower()])
        else:  # symbol runs the more common novel marker
            fmt["final"] = novel_final(rng, f, recipe)
        fmt["final_sep"] = rng.choice([" ", "\n", "\n"])
    elif recipe.world.version not in ("v10", "v11") and rng.random() < NOVEL_FINALS_SHARE:
        # v12: familiar keys, a marker of this document only: the marker is copied from context
        fmt["final"] = novel_final(rng, rng.choice(NOVEL_WORDS), recipe)
        fmt["final_sep"] = rng.choice([" ", "\n", "\n"])
    return fmt


def novel_final(rng: random.Random, word: str, recipe: CorpusRecipe) -> str:
    """A final marker no other document shares often: `Word: N`, a symbol run (`@@@@ N`), `N word`."""
    # both runs drawn first, as before v17, so that older recipes' corpora stay byte-identical
    run = [symbol_run(rng, recipe.world.version, recipe.longest_run) + " {a}" for _ in range(2)]
    if recipe.share_two_runs and rng.random() < recipe.share_two_runs:
        run[0] = two_runs(rng, recipe.world.version, recipe.longest_run) + " {a}"
    return rng.choice([word + ": {a}", *run, "{a} " + word.lower()])


def render_problem(p: Problem, fmt: dict, forms: random.Random | None = None, plan: str | None = None) -> str:
    """One problem in a document's format; `forms` (v11) draws each equation's form; `plan` (v22,
    one of `solutions.PLANS`) overrides the document's restate-or-chain choice."""
    steps = []
    plan = plan or ("restate" if fmt.get("restate") else "equations")
    if plan in ("restate", "story"):
        render = lambda op, a, b, r: equation(fmt["eq"], op, a, b, r, forms)   # noqa: E731
        steps = (restated_steps(p, render, sep=fmt["restate_sep"], skip=fmt["skip"],
                                keep_distractors=fmt["keep_distractors"]) if plan == "restate" else story_steps(p, render))
        if fmt["layout"].startswith("numbered"):
            steps = [f"Step {j}: {t}" for j, t in enumerate(steps, 1)]
    else:
        if fmt["start"]:
            steps.append(fmt["start"].format(N=p.name, v=p.values[0], obj=p.obj))
        for j, (op, a, b, r) in enumerate(chain(p), 1):
            eq = equation(fmt["eq"], op, a, b, r, forms)
            eq = eq[0].upper() + eq[1:] + "."
            steps.append(f"Step {j}: {eq}" if fmt["layout"].startswith("numbered") else eq)
    body = ("\n" if fmt["layout"].endswith("lines") else " ").join(steps)
    final = fmt["final"].format(a=p.answer, N=p.name, obj=p.obj)
    sep = fmt["key_sep"]
    return f"{fmt['q_key']}{sep}{p.question}\n{fmt['a_key']}{sep}{body}{fmt['final_sep']}{final}"


def _render_all(rng: random.Random, recipe: CorpusRecipe, fmt: dict, forms, n: int, draw, draw_told) -> str:
    """A document's `n` problems in its format; under `mixed_plans` each draws its own plan, and under
    `story_distractors` a story's problem comes from `draw_told` (with distractors); under
    `document_plans` one plan is drawn for all of them."""
    if recipe.document_plans:
        plan = rng.choice(PLANS)
        return "\n\n".join(render_problem(draw(), fmt, forms, plan) for _ in range(n))
    if not recipe.story_distractors:   # problem, then plan: the draws of every older (pinned) corpus
        return "\n\n".join(render_problem(p, fmt, forms, rng.choice(PLANS) if recipe.mixed_plans else None)
                           for p in (draw() for _ in range(n)))
    plans = (rng.choice(PLANS) for _ in range(n))
    return "\n\n".join(render_problem(draw_told() if plan == "story" else draw(), fmt, forms, plan) for plan in plans)


def problem_doc(rng: random.Random, recipe: CorpusRecipe, draw, draw_told) -> str:
    fmt = _problem_format(rng, recipe)
    n = rng.randint(*recipe.problems_per_doc)
    forms = None if recipe.world.version == "v10" else rng
    return _render_all(rng, recipe, fmt, forms, n, _document_draw(rng, recipe, draw, draw_told), draw_told)


def _document_draw(rng: random.Random, recipe: CorpusRecipe, draw, draw_told):
    """v27: a document draws all its problems with distractors with probability `distractor_docs`.
    Nothing is drawn from `rng` without the knob, so every older (pinned) corpus keeps its draws."""
    return draw_told if recipe.distractor_docs and rng.random() < recipe.distractor_docs else draw


def drill_doc(rng: random.Random, recipe: CorpusRecipe, draw_one_step, draw_one_step_told) -> str:
    """v15: 8-16 one-step problems under one nonsense format (keys and final marker of this document
    only): the marker recurs every ~30 tokens, so copying it from the problem before is demanded
    ~11 times a document instead of ~3 (v13/v14's strong bases formed that copying by chance)."""
    fmt = _problem_format(rng, replace(recipe, share_novel_keys=1.0))
    n = rng.randint(8, 16)
    return _render_all(rng, recipe, fmt, rng, n, _document_draw(rng, recipe, draw_one_step, draw_one_step_told),
                       draw_one_step_told)


def narrative_doc(rng: random.Random, recipe: CorpusRecipe, draw) -> str:
    stories = []
    for _ in range(rng.randint(*recipe.stories_per_doc)):
        p = draw()
        out = []
        for text, i in p.sentences:
            if i is None or i == 0:
                out.append(text)
                continue
            r = p.values[i]
            if rng.random() < 0.5:
                out.append(f"{text[:-1]}, so now {p.pronoun} has {r}.")
            else:
                out.append(f"{text} Now {p.pronoun} has {r} {p.obj}.")
        out.append(rng.choice(["In the end, {N} has {a} {obj}.", "So {N} ends up with {a} {obj}.",
                               "That leaves {N} with {a} {obj}."]).format(N=p.name, a=p.answer, obj=p.obj))
        if recipe.share_hash_singles and rng.random() < recipe.share_hash_singles:
            out.append(" ".join("#" + t for t in rng.sample([p.name, rng.choice(NOVEL_WORDS)], rng.randint(1, 2))))
        stories.append(" ".join(out))
    return "\n\n".join(stories)


def facts_doc(rng: random.Random, recipe: CorpusRecipe) -> str:
    style = _weighted(rng, recipe.fact_styles)
    sep = rng.choice(["\n", "\n", ". "])
    cap = recipe.world.max_value
    lines = []
    for _ in range(rng.randint(*recipe.facts_per_doc)):
        op = rng.choice(["add", "sub", "double", "triple", "half"])
        if op == "add":
            a = rng.randint(0, cap - 1)
            b = rng.randint(1, max(1, min(recipe.world.max_operand, cap - a)))
            r = a + b
        elif op == "sub":
            a = rng.randint(1, cap)
            b = rng.randint(1, min(recipe.world.max_operand, a))
            r = a - b
        elif op == "double":
            a, b = rng.randint(1, cap // 2), 2
            r = 2 * a
        elif op == "triple":
            a, b = rng.randint(1, cap // 3), 3
            r = 3 * a
        else:
            r, b = rng.randint(1, cap // 2), 2
            a = 2 * r
        lines.append(equation(style, op, a, b, r, None if recipe.world.version == "v10" else rng))
    if recipe.share_hash_singles and rng.random() < recipe.share_hash_singles:
        lines = [f"#{i} {line}" for i, line in enumerate(lines, 1)]
    return sep.join(lines) + ("." if sep == ". " else "")


#: the pieces of repeat documents: words and numbers of the world (all in the tokenizer, with a leading space)
REPEAT_PIECES = ([str(n) for n in range(100)] + [w.lower() for w in NOVEL_WORDS] + [n for n, _ in NAMES]
                 + list(OBJECTS))


def repeat_doc(rng: random.Random, long_share: float = 0.5) -> str:
    """3-6 blocks, each a random list of pieces written several times (one line each, or `. `-joined): predicting a
    repeat means finding where the current piece occurred before and copying what followed. 1 - `long_share`
    are short lists written many times: with long lists only, a 2-layer model trained on nothing
    else copied only partly after 12M tokens (loss 3.6); short ones form the copying within ~5M."""
    return "\n\n".join(_repeat_block(rng, long_share) for _ in range(rng.randint(3, 6)))


def _repeat_block(rng: random.Random, long_share: float) -> str:
    n, times = ((rng.randint(2, 10), rng.randint(3, 8)) if rng.random() >= long_share
                else (rng.randint(10, 40), rng.randint(2, 4)))
    # a number first: every number is a token with and without its space, at a line's start too
    words = " ".join([str(rng.randint(0, 99))] + [rng.choice(REPEAT_PIECES) for _ in range(n - 1)])
    return rng.choice(["\n", "\n", ". "]).join([words] * times)


def build_corpus(recipe: CorpusRecipe | None = None, seed: int = 0,
                 exclude: set | None = None, used: set | None = None) -> list[str]:
    """`recipe.n_docs` documents, deterministic in (recipe, seed). Problems whose question text or
    step list is in `exclude` (see `world.split_signatures`) are never used; the question text
    and step list of every problem used are added to `used` when given (for decontamination)."""
    recipe = recipe or CorpusRecipe()
    exclude = exclude or set()
    rng = random.Random(f"toy-corpus:{seed}")

    def draw(world: WorldConfig = recipe.world) -> Problem:
        while True:
            p = sample_problem(rng, world)
            if p.question not in exclude and steps_key(p.steps) not in exclude:
                if used is not None:
                    used.update((p.question, steps_key(p.steps)))
                return p

    if recipe.story_distractors and not recipe.mixed_plans:
        raise ValueError("story_distractors needs mixed_plans (each problem draws its plan)")
    if recipe.distractor_docs and (recipe.solved_distractors or recipe.story_distractors):
        raise ValueError("distractor_docs chooses the documents with distractors: it needs solved_distractors "
                         "and story_distractors off")
    if recipe.document_plans and (recipe.mixed_plans or recipe.story_distractors):
        raise ValueError("document_plans draws one plan per document: it needs mixed_plans and story_distractors off")
    solved = recipe.world if recipe.solved_distractors else replace(recipe.world, max_distractors=0)
    one_step = replace(recipe.world, min_steps=1, max_steps=1, max_distractors=1 if recipe.solved_distractors else 0)
    one_step_told = replace(one_step, max_distractors=1)
    kinds = [("problems", recipe.share_problems), ("narrative", recipe.share_narrative),
             ("facts", recipe.share_facts)] + [(k, share) for k, share in (
                 ("repeat", recipe.share_repeat), ("drill", recipe.share_drill)) if share]
    docs = []
    for _ in range(recipe.n_docs):
        kind = _weighted(rng, kinds)
        if kind == "problems":
            doc = problem_doc(rng, recipe, lambda: draw(solved), draw)
        elif kind == "narrative":
            doc = narrative_doc(rng, recipe, draw)
        elif kind == "facts":
            doc = facts_doc(rng, recipe)
        elif kind == "drill":
            doc = drill_doc(rng, recipe, lambda: draw(one_step), lambda: draw(one_step_told))
        else:
            doc = repeat_doc(rng)
        docs.append(doc)
    banned = BANNED + (("##",) if recipe.world.version in NO_HASH_RUNS else ())
    for d in docs:
        if any(b in d for b in banned):  # pragma: no cover - guarded by construction
            raise AssertionError("the task format (or, v14-v15, a `#` run) leaked into the pretraining corpus")
    return docs
