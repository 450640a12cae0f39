"""Shipped toy checkpoints (hash-checked loading) and a tiny pretraining smoke test."""

from __future__ import annotations

import json
import shutil

import pytest

from w2s.toy import CHECKPOINTS, RETIRED_CHECKPOINTS, CheckpointError, checkpoint_path, verify_checkpoint
from w2s.toy.world import VERSIONS

#: the worlds whose models are shipped (v15 shipped none; the retired ones are in git history)
SHIPPED_WORLDS = [w for w in VERSIONS if w != "v15" and w not in RETIRED_CHECKPOINTS]


@pytest.mark.parametrize("world", SHIPPED_WORLDS)
@pytest.mark.parametrize("which", ["weak", "strong"])
def test_shipped_checkpoint_loads_and_matches_manifest(which, world):
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    path = checkpoint_path(which, world=world)
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


def test_every_world_ships_its_models_or_names_the_commit_that_holds_them():
    from w2s.toy.world import base_version

    for world in (w for w in VERSIONS if w != "v15"):     # v15 shipped no models
        for which in ("weak", "strong"):
            if base_version(world, which) in RETIRED_CHECKPOINTS:
                assert not (CHECKPOINTS / world).exists()
                with pytest.raises(CheckpointError, match=f"git checkout {RETIRED_CHECKPOINTS[world]} -- "
                                                          f"src/w2s/toy/checkpoints/{world}`"):
                    checkpoint_path(which, world=world)
            else:
                assert (checkpoint_path(which, world=world) / "model.safetensors").exists()
    assert set(RETIRED_CHECKPOINTS).isdisjoint(base_version(w, m) for w in VERSIONS for m in ("weak", "strong")
                                               if w not in RETIRED_CHECKPOINTS)   # no kept world needs one


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
    assert manifest["steps"] == 20 and manifest["spec"]["hidden_size"] == 16 and manifest["device"] == "cpu"
    assert manifest["corpus"]["n_docs"] == 40
    model = AutoModelForCausalLM.from_pretrained(paths["weak"])
    assert model.config.num_hidden_layers == 1


def test_init_seed_sets_the_initialisation_apart_from_the_corpus_seed(tmp_path):
    """`ModelSpec.init_seed` replaces the seed derived from the corpus seed (weak: seed * 1000 + 1)
    and nothing else: the same corpus, recorded in the manifest."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from w2s.toy.corpus import CorpusRecipe
    from w2s.toy.pretrain import ModelSpec, pretrain

    spec = ModelSpec("weak", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, steps=3,
                     batch_size=2, seq_len=64, warmup_steps=1)
    weights, manifests = {}, {}
    for name, s in {"derived": spec, "same": replace(spec, init_seed=1), "other": replace(spec, init_seed=7)}.items():
        path = pretrain(tmp_path / name, seed=0, which=("weak",), recipe=CorpusRecipe(n_docs=20),
                        specs={"weak": s}, log=lambda m: None, threads=1)["weak"]
        weights[name], manifests[name] = load_file(path / "model.safetensors"), verify_checkpoint(path)
    emb = "model.embed_tokens.weight"
    assert weights["derived"][emb].equal(weights["same"][emb])
    assert not weights["derived"][emb].equal(weights["other"][emb])
    assert manifests["other"]["spec"]["init_seed"] == 7 and manifests["derived"]["spec"]["init_seed"] is None
    assert manifests["other"]["corpus"] == manifests["derived"]["corpus"]


def test_copy_steps_read_repeat_documents_first_even_with_pieces_the_corpus_lacks(tmp_path):
    """v13's strong model starts on repeat documents; a piece the corpus never uses must not be
    masked out of the softmax then (it was: loss inf, the model destroyed)."""
    import math

    from w2s.toy.corpus import CorpusRecipe
    from w2s.toy.pretrain import ModelSpec, lr_at, pretrain, repeat_tokens
    from w2s.toy.tokenizer import toy_tokenizer

    spec = ModelSpec("weak", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, steps=8,
                     batch_size=2, seq_len=64, warmup_steps=2, copy_steps=4)
    # copy steps at copy_lr, then the warmup starts afresh
    assert [lr_at(spec, i) for i in (0, 3)] == [spec.copy_lr] * 2 and lr_at(spec, 4) == spec.lr / 2
    stream = repeat_tokens(toy_tokenizer(), spec, seed=0)
    assert len(stream) >= 4 * spec.copy_batch_size * spec.copy_seq_len    # copy batches have their own shape
    text = toy_tokenizer().decode(stream[:400].tolist())
    block = text.split("\n\n")[0].removeprefix("<s>")
    lines = block.split("\n") if "\n" in block else block.rstrip(".").split(". ")
    assert len(set(lines)) == 1 and 3 <= len(lines) <= 8 and len(lines[0].split()) <= 10   # a short list, 3-8 times
    paths = pretrain(tmp_path, seed=0, which=("weak",), recipe=CorpusRecipe(n_docs=30), specs={"weak": spec},
                     log=lambda s: None, threads=1)
    manifest = verify_checkpoint(paths["weak"])
    assert math.isfinite(manifest["final_loss"]) and manifest["spec"]["copy_steps"] == 4


def test_each_world_has_its_own_models_and_the_demo_uses_them(tmp_path):
    from w2s.demo import demo_config
    from w2s.tasks import make_task
    from w2s.toy.pretrain import RECIPES, SPECS_BY_WORLD

    v19 = {w: json.loads((checkpoint_path(w, world="v19") / "manifest.json").read_text()) for w in ("weak", "strong")}
    assert checkpoint_path("strong", world="v19") == CHECKPOINTS / "v19" / "strong"
    assert all(m["corpus_recipe"] == json.loads(json.dumps(RECIPES["v19"].to_dict())) for m in v19.values())
    assert v19["strong"]["spec"]["decay_embeddings"] is False and SPECS_BY_WORLD["v19"]["strong"].decay_embeddings is False
    cfg = demo_config(tmp_path, quick=True, world="v19")
    assert cfg["strong"]["model"] == str(CHECKPOINTS / "v19" / "strong")
    assert cfg["task"] == {"name": "toy", "rewrite_markers": False}
    assert make_task(cfg["task"]).rewrite_markers is False
    assert demo_config(tmp_path, quick=True)["task"] == "toy"       # v10: as every published number


def test_pretrain_never_replaces_a_directory_that_is_not_a_toy_checkpoint(tmp_path):
    from w2s.toy.corpus import CorpusRecipe
    from w2s.toy.pretrain import ModelSpec, pretrain

    spec = ModelSpec("weak", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, steps=2,
                     batch_size=2, seq_len=64, warmup_steps=1)
    (tmp_path / "weak").mkdir()
    (tmp_path / "weak" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not a toy checkpoint"):
        pretrain(tmp_path, which=("weak",), recipe=CorpusRecipe(n_docs=10), specs={"weak": spec},
                 log=lambda s: None, threads=1)
    assert (tmp_path / "weak" / "notes.txt").read_text() == "mine"
    (tmp_path / "weak" / "notes.txt").unlink()
    first = pretrain(tmp_path, which=("weak",), recipe=CorpusRecipe(n_docs=10), specs={"weak": spec},
                     log=lambda s: None, threads=1)["weak"]
    again = pretrain(tmp_path, which=("weak",), recipe=CorpusRecipe(n_docs=10), specs={"weak": spec},
                     log=lambda s: None, threads=1)["weak"]      # a toy checkpoint is replaced, whole
    assert first == again and verify_checkpoint(again)["steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weak"]    # no staging left behind


def test_demo_trains_with_another_seed_on_the_same_data_and_sizes_its_dev_split(tmp_path, monkeypatch):
    import yaml

    from w2s import demo
    from w2s.io import read_jsonl

    monkeypatch.setattr(demo, "run_pipeline", lambda cfg, out, quiet=False: None)   # the data and config only
    out = demo.run_demo(tmp_path / "d", seed=3, quick=True, train_seed=7, dev_size=30)
    raw = yaml.safe_load((out / "demo.yaml").read_text())
    assert raw["seed"] == 7 and json.loads((out / "toy_data" / "world.json").read_text())["seed"] == 3
    assert len(read_jsonl(out / "toy_data" / "dev.jsonl")) == 30
    assert len(read_jsonl(out / "toy_data" / "test.jsonl")) == demo.QUICK["sizes"]["test"]
    assert demo.demo_config(tmp_path, seed=3)["seed"] == 3
    harder = demo.run_demo(tmp_path / "h", quick=True, difficulty={"max_steps": 4, "max_distractors": 2})
    world = json.loads((harder / "toy_data" / "world.json").read_text())["config"]
    assert (world["max_steps"], world["max_distractors"], world["min_steps"]) == (4, 2, 2)
    assert max(len(r["steps"]) - 1 for r in read_jsonl(harder / "toy_data" / "train_1.jsonl")) == 4
    with pytest.raises(ValueError, match="dev split's size"):
        demo.run_demo(tmp_path / "e", quick=True, dev_size=0)
