"""A word/number-level tokenizer for the toy world, saved as a `PreTrainedTokenizerFast`.

Pieces are GPT-2-like: a word, an integer or one punctuation character, with or without ONE
leading space (" apples", "apples", " 12", "12", " .", "."), "\n" and " ". Every integer
0..MAX_INT is a single token in both variants, so "has 12 apples" is `[" has", " 12", " apples"]`:
the number directly follows its context word, which is what lets a small model copy it by
induction (find the previous " has", take the token after it). An earlier version kept integers
bare with the space as its own token; then the token before EVERY number was the same " ", and
the models copied a random number of the context (docs/toy_world.md, v8). Other pieces come from
a fixed sample of the toy world's texts (problems and pretraining corpus), anything else is <unk>. Decoding
concatenates the pieces, so decode(encode(text)) == text for every text made of known pieces.
The task's answer marker `####` is four `#` tokens, as in real tokenizers: the pretraining corpus
never contains it (it has `## N` among its nonsense final markers), and a dedicated `####` token
would be a word no model has seen, whose embedding only fine-tuning can shape (v9: at SFT lr 3e-4
the models wrote the right chain and then a wrong number after `####`).
A BOS token is prepended (as Llama tokenizers do); padding is on the left.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Iterable

from w2s.toy.corpus import NOVEL_MARKS, NOVEL_WORDS, CorpusRecipe, build_corpus
from w2s.toy.world import WorldConfig, make_splits

MAX_INT = 299
SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
PIECE_PATTERN = r" ?[A-Za-z]+| ?[0-9]+| ?[^A-Za-z0-9\s]|\n| "
_PIECE = re.compile(PIECE_PATTERN)


def pieces(text: str) -> list[str]:
    """Split text the way the tokenizer does (pieces that are not in the vocabulary are <unk>)."""
    return _PIECE.findall(text)


def build_vocab(texts: Iterable[str], max_int: int = MAX_INT) -> list[str]:
    """Specials, then every integer (both variants), then the sample's pieces by frequency."""
    vocab = [SPECIAL["pad_token"], SPECIAL["bos_token"], SPECIAL["eos_token"], SPECIAL["unk_token"],
             "\n", " "]
    vocab += [str(n) for n in range(max_int + 1)] + [f" {n}" for n in range(max_int + 1)]
    counts = Counter(p for t in texts for p in pieces(t) if not p.strip().isdigit())
    known = set(vocab)
    vocab += sorted((p for p in counts if p not in known), key=lambda p: (-counts[p], p))
    return vocab


def build_tokenizer(vocab: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {p: i for i, p in enumerate(vocab)}
    tok = Tokenizer(models.WordLevel(vocab=ids, unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()
    bos = SPECIAL["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, ids[bos])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False,
                                   padding_side="left", model_max_length=1024, **SPECIAL)
    return fast


@functools.lru_cache(maxsize=1)
def _default_vocab() -> tuple[str, ...]:
    """The vocabulary of the shipped checkpoints: integers plus every piece of a fixed sample
    of the world's problems (task format) and of the pretraining corpus."""
    splits = make_splits(seed=12345, sizes={"train_1": 300, "train_2": 0, "test": 0},
                         config=WorldConfig())
    texts = [f"Question: {r['question']}\nAnswer: {r['solution']}" for r in splits["train_1"]]
    texts += build_corpus(CorpusRecipe(n_docs=3000), seed=12345)
    # every nonsense keyword and symbol marker of the corpus, whether or not the sample drew it
    texts += [f"{w}: 1 {w}: 1 {w.lower()}" for w in NOVEL_WORDS] + [f"{m} 1" for m in NOVEL_MARKS]
    return tuple(build_vocab(texts))


def default_vocab() -> list[str]:
    """The vocabulary of the shipped checkpoints: integers plus every piece of a fixed sample
    of the world's problems (task format) and of the pretraining corpus."""
    return list(_default_vocab())


def toy_tokenizer():
    return build_tokenizer(default_vocab())
