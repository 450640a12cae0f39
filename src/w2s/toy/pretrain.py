"""Pretraining of the toy world's weak and strong base models (plain torch loop, fp32, CPU or GPU).

Both models are `LlamaForCausalLM` with tied embeddings and the word/number tokenizer,
trained on the SAME corpus (`w2s.toy.corpus`, the task format held out); the strong model
is bigger and sees more tokens. Each output directory is an ordinary Hugging Face model
directory (safetensors + tokenizer) with a `manifest.json`: config, spec, seed, corpus recipe,
token counts, device, wall time, final loss and the sha256 of every file.

    w2s toy pretrain --out DIR [--seed 0]      # reproduces src/w2s/toy/checkpoints/
    w2s toy pretrain --world v17 --device cuda --out DIR   # v16-v18's shipped models came from a GPU
"""

from __future__ import annotations

import json
import math
import shutil
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from w2s.io import file_sha256, write_json
from w2s.toy.corpus import CorpusRecipe, build_corpus, repeat_doc
from w2s.toy.world import V14_QUESTIONS, WorldConfig, base_corpora, make_splits, split_signatures
from w2s.training.outdir import publish, recover, staging_dir
from w2s.toy.tokenizer import toy_tokenizer
from w2s.threads import default_threads
from w2s.tiny_models import random_llama


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    steps: int
    batch_size: int = 16
    seq_len: int = 512
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    max_positions: int = 1024
    #: tied input/output embeddings. The strong model's are untied: tied, the 16 object nouns
    #: (which only copying can predict) collapsed onto one vector (mean cosine 0.975) and the
    #: model wrote "eggs" for every object (v8); the weak model's stayed apart (0.56)
    tie_embeddings: bool = True
    #: weight decay on the embedding matrices (input and output). v11's strong model has none: with
    #: it, v10's strong object-noun embeddings converged onto one direction (mean cosine 0.71 input,
    #: 0.80 output, against the weak model's 0.45), and at T = 1 its samples wrote a noun the
    #: question does not name 94 % of the time (docs/toy_world.md, world v11)
    decay_embeddings: bool = True
    #: the first `copy_steps` of `steps` read only repeat documents (`corpus.repeat_doc`): v12's
    #: models, and a strong model whose corpus held 16 % repeat tokens, never copied anything from
    #: an earlier problem; a small model forms that copying within ~4M tokens of repeats alone
    copy_steps: int = 0
    #: the constant learning rate of those steps (measured: a 4-layer 128-wide model on short repeats
    #: reached loss 2.7 after 300 steps at 1e-3, 4.2 at 3e-3); the schedule (warmup, cosine)
    #: then runs over the other `steps - copy_steps`
    copy_lr: float = 1e-3
    #: their batches: 32 sequences of 256 tokens (the shape of the measurement above; 8 x 768
    #: at 1e-3 left the strong model at loss 4.35 after 500 steps, still not copying)
    copy_batch_size: int = 32
    copy_seq_len: int = 256
    #: the initialisation (and batch order) seed; None derives it from the corpus seed. Set apart
    #: from the corpus seed because the demo's splits are kept out of corpus seed 0 only
    init_seed: int | None = None

    @property
    def tokens(self) -> int:
        return self.corpus_tokens + self.copy_steps * self.copy_batch_size * self.copy_seq_len

    @property
    def corpus_tokens(self) -> int:
        return (self.steps - self.copy_steps) * self.batch_size * self.seq_len


WEAK = ModelSpec("weak", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=192,
                 steps=1500, batch_size=32, seq_len=256, lr=3e-3)
STRONG = ModelSpec("strong", hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384,
                   steps=2400, batch_size=8, seq_len=768, lr=3e-3, tie_embeddings=False)
SPECS = {"weak": WEAK, "strong": STRONG}
#: each world version's model specs (v10's reproduce the shipped checkpoints)
SPECS_BY_WORLD = {"v10": SPECS, "v11": {"weak": WEAK, "strong": replace(STRONG, decay_embeddings=False)},
                  "v12": {"weak": replace(WEAK, decay_embeddings=False), "strong": replace(STRONG, decay_embeddings=False)}}
#: v13's strong model first reads 700 batches of repeat documents (copying), then v12's 2400
SPECS_BY_WORLD["v13"] = {"weak": SPECS_BY_WORLD["v12"]["weak"],
                         "strong": replace(SPECS_BY_WORLD["v12"]["strong"], steps=3100, copy_steps=700)}
#: v14 changes the world (operands, distractors, no `#` runs), v15-v19 the corpus: not the models
SPECS_BY_WORLD.update(dict.fromkeys(V14_QUESTIONS, SPECS_BY_WORLD["v13"]))
#: v24's weak model one size up (v19's weak slipped on two of five additions): 3 layers, width 80
SPECS_BY_WORLD["v24"] = {"weak": replace(SPECS_BY_WORLD["v13"]["weak"], num_layers=3, hidden_size=80,
                                         intermediate_size=240), "strong": SPECS_BY_WORLD["v13"]["strong"]}
#: v25's weak model between v22's (2 x 64) and v24's (3 x 80): 3 layers at width 64
SPECS_BY_WORLD["v25"] = {"weak": replace(SPECS_BY_WORLD["v13"]["weak"], num_layers=3),
                         "strong": SPECS_BY_WORLD["v13"]["strong"]}
#: v27's weak model between v19's (2 x 64) and v25's (3 x 64): 2 layers at width 80
SPECS_BY_WORLD["v27"] = {"weak": replace(SPECS_BY_WORLD["v13"]["weak"], hidden_size=80, intermediate_size=240),
                         "strong": SPECS_BY_WORLD["v13"]["strong"]}
SPECS_BY_WORLD["v29"] = SPECS_BY_WORLD["v27"]   # its weak model is v27's (world.SHARED_BASES)
SEED_OFFSET = {"weak": 1, "strong": 2}
DEFAULT_RECIPE = CorpusRecipe(n_docs=22000)
#: each world version's corpus (docs/toy_world.md): v11 draws equation forms and symbol-run final
#: markers, and keys more documents by nonsense words (format copying from context)
RECIPES = {"v10": DEFAULT_RECIPE,
           "v11": CorpusRecipe(n_docs=22000, share_novel_keys=0.4, world=WorldConfig(version="v11")),
           "v12": CorpusRecipe(n_docs=22000, share_novel_keys=0.4, world=WorldConfig(version="v12")),
           # v12's documents (as many of each kind) and a fifth as many repeat documents (~16 % of tokens)
           "v13": CorpusRecipe(n_docs=27500, share_novel_keys=0.4, world=WorldConfig(version="v13"), share_problems=0.48,
                               share_narrative=0.12, share_facts=0.2, share_repeat=0.2)}
RECIPES["v14"] = replace(RECIPES["v13"], world=WorldConfig(version="v14"))
# v14's documents (as many of each kind), 4-8 problems a document, drill documents, `#` written singly
RECIPES["v15"] = replace(RECIPES["v13"], world=WorldConfig(version="v15"), n_docs=30250, problems_per_doc=(4, 8),
                         share_drill=0.1, share_hash_singles=0.5)
# v15's copying demand (4-8 problems, drill documents); `#` runs of 2-3 in the marker's role, as v13's
RECIPES["v16"] = replace(RECIPES["v15"], world=WorldConfig(version="v16"), share_hash_singles=0.0)
# v16 and markers of two runs (`##@@`): what follows a run's end is copied, not a rule
RECIPES["v17"] = replace(RECIPES["v16"], world=WorldConfig(version="v17"), share_two_runs=0.5)
# v17 and three times as many arithmetic-fact documents (the others keep their counts)
RECIPES["v18"] = replace(RECIPES["v17"], world=WorldConfig(version="v18"), n_docs=41250, share_facts=0.6)
# v18 with no distractor in any solved problem: skipping one is learned from the task, not the corpus
RECIPES["v19"] = replace(RECIPES["v18"], world=WorldConfig(version="v19"), solved_distractors=False)
# v21's task on v19's corpus with the three plans mixed within documents
RECIPES["v22"] = replace(RECIPES["v19"], world=WorldConfig(version="v22"), mixed_plans=True)
# v24's weak base reads v22's corpus (the same recipe: the same documents). v20, v21, v23 take both
# models from other versions (`world.SHARED_BASES`) and have no corpus of their own
RECIPES["v24"] = RECIPES["v22"]
# v22's corpus with stories solved with distractors (told, never computed) and the other plans without
RECIPES["v25"] = replace(RECIPES["v22"], world=WorldConfig(version="v25"), story_distractors=True)
# v22's corpus with a quarter of its problem and drill documents solving distractors in any plan
RECIPES["v27"] = replace(RECIPES["v22"], world=WorldConfig(version="v27"), distractor_docs=0.25)
# v27's corpus with each problem and drill document solved in one plan (the context shows the plan)
RECIPES["v29"] = replace(RECIPES["v27"], world=WorldConfig(version="v29"), mixed_plans=False, document_plans=True)
#: the world seed whose train_1 / train_2 / test problems are kept out of the corpus
EXCLUDE_WORLD_SEED = 0


def corpus_signatures(recipe: CorpusRecipe | None = None, seed: int = 0, world: str = "v10") -> set:
    """Question texts and step lists of every problem in the pretraining corpus (seed, recipe) or,
    given a world, in every corpus its base models read (`world.base_corpora`):
    `make_splits(..., exclude=...)` keeps them out of a dataset (a few seconds a corpus to rebuild)."""
    used: set = set()
    held_out = _held_out_splits()
    # dict.fromkeys: a recipe two bases share (v24's weak and strong read v22's corpus) is built once
    for r in [recipe] if recipe else dict.fromkeys(RECIPES[w] for w in base_corpora(world)):
        build_corpus(r, seed=seed, exclude=held_out, used=used)
    return used


def _held_out_splits() -> set:
    """Question texts and step lists of the EXCLUDE_WORLD_SEED splits: never in the corpus."""
    return split_signatures(make_splits(EXCLUDE_WORLD_SEED))


def corpus_tokens(tokenizer, docs: list[str]):
    """Documents -> one token stream (<s> doc </s> <s> doc </s> ...)."""
    import torch

    enc = tokenizer(docs, add_special_tokens=True).input_ids  # <s> prepended
    eos = tokenizer.eos_token_id
    flat = [t for ids in enc for t in (*ids, eos)]
    return torch.tensor(flat, dtype=torch.long)


def build_model(spec: ModelSpec, tokenizer, seed: int):
    return random_llama(tokenizer, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                        num_layers=spec.num_layers, num_heads=spec.num_heads, max_positions=spec.max_positions,
                        seed=seed, tie_embeddings=spec.tie_embeddings, rope_theta=10000.0)


def train_model(spec: ModelSpec, tokenizer, stream, seed: int, log: Callable[[str], None] = print,
                threads: int | None = None, device: str = "cpu") -> tuple:
    """Train one model on a token stream (its first `spec.copy_steps` batches on repeat documents);
    returns (model on the CPU, stats). fp32 on any device (a GPU run differs from a CPU run in the
    last bits, so the shipped checkpoints reproduce on the device their manifest names)."""
    import torch

    threads = threads or default_threads()
    torch.set_num_threads(threads)
    model = build_model(spec, tokenizer, seed).to(device)
    # Tokens the corpus never uses (the task's `Question` and `Answer`; integers past the
    # world's range) are kept out of the softmax. With tied embeddings they would otherwise all
    # receive the same "never predict" gradient and collapse onto ONE vector (measured: cosine 1.00
    # between `Question`, `Answer` and `####` in v7), so a few-shot prompt could not tell the
    # question key from the answer key. Masked, they keep distinct random embeddings, as new words.
    copy_stream = repeat_tokens(tokenizer, spec, seed) if spec.copy_steps else stream[:0]
    absent = (torch.bincount(torch.cat([stream, copy_stream]), minlength=len(tokenizer)) == 0).to(device)
    chunks, copy_chunks = _chunks(stream, spec.seq_len), _chunks(copy_stream, spec.copy_seq_len)
    assert len(copy_chunks) >= spec.copy_steps * spec.copy_batch_size, "too few repeat documents for the copy steps"
    n_chunks = len(chunks)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_chunks, generator=g)
    opt = _optimizer(model, spec)
    model.train()
    t0 = time.time()
    losses: list[float] = []
    pos = 0
    for step in range(spec.steps):
        if step < spec.copy_steps:
            x = copy_chunks[step * spec.copy_batch_size:(step + 1) * spec.copy_batch_size]
        else:
            x = chunks[[order[(pos + j) % n_chunks].item() for j in range(spec.batch_size)]]
            pos += spec.batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(spec, step)
        x = x.to(device)
        logits = model(input_ids=x).logits[:, :-1].masked_fill(absent, float("-inf"))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == spec.steps:
            dt = time.time() - t0
            log(f"[{spec.name}] step {step + 1}/{spec.steps} loss {sum(losses[-50:]) / len(losses[-50:]):.4f} "
                f"lr {lr_at(spec, step):.2e} {_tokens_after(spec, step + 1) / dt:.0f} tok/s {dt:.0f}s")
    model.eval().to("cpu")
    stats = {"device": device, "steps": spec.steps, "tokens_seen": spec.tokens,
             "epochs": round(spec.corpus_tokens / len(stream), 3),
             "wall_s": round(time.time() - t0, 1), "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
             "params": sum(p.numel() for p in model.parameters()), "threads": threads,
             "tokens_absent_from_corpus": int(absent.sum()),
             "noun_embedding_cosine": noun_embedding_cosine(model, tokenizer)}
    return model, stats


def _optimizer(model, spec: ModelSpec):
    """AdamW, weight decay on matrices (on the embeddings only if `spec.decay_embeddings`)."""
    import torch

    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    decayed = [p.dim() >= 2 and (spec.decay_embeddings or id(p) not in embeddings) for p in model.parameters()]
    decay = [p for p, d in zip(model.parameters(), decayed) if d]
    no_decay = [p for p, d in zip(model.parameters(), decayed) if not d]
    return torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=spec.lr, betas=(0.9, 0.95), eps=1e-8)


def lr_at(spec: ModelSpec, step: int) -> float:
    """`copy_lr` for the copy steps, then warmup and cosine to `min_lr_ratio` over the rest."""
    if step < spec.copy_steps:
        return spec.copy_lr
    step -= spec.copy_steps
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    t = (step - spec.warmup_steps) / max(1, spec.steps - spec.copy_steps - spec.warmup_steps)
    return spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _tokens_after(spec: ModelSpec, steps: int) -> int:
    copy = min(steps, spec.copy_steps)
    return copy * spec.copy_batch_size * spec.copy_seq_len + (steps - copy) * spec.batch_size * spec.seq_len


def _chunks(stream, seq_len: int):
    n = len(stream) // seq_len
    return stream[: n * seq_len].view(n, seq_len)


def repeat_tokens(tokenizer, spec: ModelSpec, seed: int):
    """Repeat documents (fresh draws, seeded) for `spec.copy_steps` batches, as one token stream."""
    import random

    import torch

    rng, parts, have = random.Random(f"toy-repeat:{seed}"), [], 0
    need = spec.copy_steps * spec.copy_batch_size * spec.copy_seq_len
    while have < need:
        parts.append(corpus_tokens(tokenizer, [repeat_doc(rng, long_share=0.0) for _ in range(200)]))
        have += len(parts[-1])
    return torch.cat(parts)


def noun_embedding_cosine(model, tokenizer) -> dict:
    """Mean pairwise cosine of the object nouns' input and output embeddings: near 1, the model
    cannot tell the nouns apart and copies a random one (v10's strong model: 0.71 / 0.80)."""
    import torch

    from w2s.toy.world import OBJECTS

    ids = tokenizer.convert_tokens_to_ids([" " + o for o in OBJECTS])
    out = {}
    for side, emb in (("input", model.get_input_embeddings()), ("output", model.get_output_embeddings())):
        e = torch.nn.functional.normalize(emb.weight.detach()[ids], dim=-1)
        n = len(ids)
        out[side] = round(((e @ e.T).sum().item() - n) / (n * n - n), 3)
    return out


def check_pretrain_output(out: Path) -> None:
    """A pretraining output may replace an empty directory or a toy checkpoint (its manifest names
    a `w2s-toy-` model), nothing else."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        ours = json.loads((out / "manifest.json").read_text()).get("name", "").startswith("w2s-toy-")
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise ValueError(f"{out} exists and is not a toy checkpoint (no w2s-toy manifest.json); refusing to "
                         "replace it: choose another --out")


def write_manifest(out: Path, extra: dict) -> dict:
    files = {p.name: file_sha256(p) for p in sorted(out.iterdir()) if p.is_file() and p.name != "manifest.json"}
    manifest = {**extra, "files": files}
    write_json(out / "manifest.json", manifest)
    return manifest


def pretrain(out_dir: str | Path, seed: int = 0, which: tuple[str, ...] = ("weak", "strong"),
             recipe: CorpusRecipe | None = None, specs: dict[str, ModelSpec] | None = None,
             log: Callable[[str], None] = print, threads: int | None = None, world: str = "v10",
             device: str = "cpu") -> dict[str, Path]:
    """Build the corpus (`recipe`, by default the world version's) and pretrain the requested models
    into `out_dir/{weak,strong}`."""
    import torch
    import transformers

    recipe = recipe or RECIPES[world]
    specs = {**SPECS_BY_WORLD[world], **(specs or {})}
    out_dir = Path(out_dir)
    for name in which:  # before any work: never replace what is not a toy checkpoint
        recover(out_dir / name)
        check_pretrain_output(out_dir / name)
    t0 = time.time()
    tokenizer = toy_tokenizer()
    docs = build_corpus(recipe, seed=seed, exclude=_held_out_splits())
    stream = corpus_tokens(tokenizer, docs)
    log(f"corpus: {len(docs)} documents, {len(stream)} tokens, vocab {len(tokenizer)} ({time.time() - t0:.0f}s)")
    paths = {}
    for name in which:
        spec = specs[name]
        init_seed = seed * 1000 + SEED_OFFSET[name] if spec.init_seed is None else spec.init_seed
        model, stats = train_model(spec, tokenizer, stream, seed=init_seed, log=log, threads=threads, device=device)
        out, staging = out_dir / name, staging_dir(out_dir / name, "pretrain")
        if staging.exists():
            shutil.rmtree(staging)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_manifest(staging, {
            "name": f"w2s-toy-{name}", "seed": seed, "spec": asdict(spec),
            "config": json.loads(model.config.to_json_string()),
            "corpus_recipe": recipe.to_dict(),
            "corpus": {"n_docs": len(docs), "n_tokens": int(len(stream)),
                       "excluded_world_seed": EXCLUDE_WORLD_SEED, "vocab_size": len(tokenizer)},
            **stats,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "python": platform.python_version()},
        })
        # swapped in whole, the old model removed only then (a crash leaves one of the two)
        publish(staging, out, complete=lambda d: (d / "manifest.json").is_file())
        log(f"[{name}] saved to {out} ({stats['params']} params, {stats['wall_s']}s)")
        paths[name] = out
    return paths
