"""Shipped toy checkpoints (hash-checked loading) and a tiny pretraining smoke test."""

from __future__ import annotations

import json
import shutil

import pytest

from w2s.toy import CHECKPOINTS, CheckpointError, checkpoint_path, verify_checkpoint


@pytest.mark.parametrize("which", ["weak", "strong"])
def test_shipped_checkpoint_loads_and_matches_manifest(which):
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    path = checkpoint_path(which)
    manifest = json.loads((path / "manifest.json").read_text())
    assert {"config", "seed", "corpus_recipe", "files", "tokens_seen", "wall_s"} <= set(manifest)
    assert "model.safetensors" in manifest["files"] and "tokenizer.json" in manifest["files"]
    tok = AutoTokenizer.from_pretrained(path)
    assert isinstance(tok, PreTrainedTokenizerFast)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == manifest["params"]
    assert model.config.vocab_size == len(tok)
    for n in (0, 57, 299):
        assert len(tok(str(n), add_special_tokens=False).input_ids) == 1


def test_strong_is_bigger_and_pretrained_longer():
    weak = json.loads((checkpoint_path("weak") / "manifest.json").read_text())
    strong = json.loads((checkpoint_path("strong") / "manifest.json").read_text())
    assert strong["params"] > 3 * weak["params"]
    # more pretraining compute (params x tokens); the weak model sees about as many tokens
    assert strong["params"] * strong["tokens_seen"] > 3 * weak["params"] * weak["tokens_seen"]
    assert strong["corpus_recipe"] == weak["corpus_recipe"]


def test_tampering_is_detected(tmp_path):
    copy = tmp_path / "weak"
    shutil.copytree(CHECKPOINTS / "weak", copy)
    verify_checkpoint(copy)
    with open(copy / "tokenizer.json", "a") as f:
        f.write(" ")
    with pytest.raises(CheckpointError, match="sha256"):
        verify_checkpoint(copy)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        verify_checkpoint(copy)
    with pytest.raises(ValueError):
        checkpoint_path("medium")


def test_pretrain_smoke(tmp_path):
    """20 optimizer steps of a micro model on a micro corpus: the full save/manifest path."""
    from transformers import AutoModelForCausalLM

    from w2s.toy.corpus import CorpusRecipe
    from w2s.toy.pretrain import ModelSpec, pretrain

    spec = ModelSpec("weak", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, steps=20,
                     batch_size=2, seq_len=64, warmup_steps=5)
    paths = pretrain(tmp_path, seed=0, which=("weak",), recipe=CorpusRecipe(n_docs=40),
                     specs={"weak": spec}, log=lambda s: None, threads=1)
    manifest = verify_checkpoint(paths["weak"])
    assert manifest["steps"] == 20 and manifest["spec"]["hidden_size"] == 16
    assert manifest["corpus"]["n_docs"] == 40
    model = AutoModelForCausalLM.from_pretrained(paths["weak"])
    assert model.config.num_hidden_layers == 1
