"""Training layer on tiny random-init models (CPU): SFT, LoRA + merge, DPO, ORPO, resume,
data errors, DONE semantics. Each trainer has a test that runs it for real, so a TRL upgrade
that breaks our mapping fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from w2s.io import DataError, write_jsonl  # noqa: E402
from w2s.training import (  # noqa: E402
    GRPOSettings,
    LoraSettings,
    PreferenceSettings,
    SFTSettings,
    is_complete,
    merge_adapter,
    read_lineage,
    train_preference,
    train_sft,
)


def _sft_records(n=16):
    return [{"id": str(i), "prompt": f"Question: What is {i} plus 2?\nAnswer:",
             "completion": f" {i} + 2 = {i + 2}\n#### {i + 2}"} for i in range(n)]


def _pref_records(n=8):
    return [{"id": str(i), "prompt": f"Question: What is {i} plus 2?\nAnswer:",
             "chosen": f" {i} + 2 = {i + 2}\n#### {i + 2}", "rejected": f" {i} + 2 = {i + 7}\n#### {i + 7}"}
            for i in range(n)]


def _load(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), use_safetensors=True, dtype=torch.float32)
    return model.eval(), tok


@torch.no_grad()
def _completion_logps(model, tok, pairs):
    """Sum of log p(completion + EOS | prompt) for each (prompt, completion)."""
    out = []
    for prompt, completion in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        full = tok(prompt + completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([full])
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        tgt = ids[0, 1:]
        lp = logp[torch.arange(len(tgt)), tgt][len(p) - 1:]
        out.append(float(lp.sum()))
    return out


def _margin(model_dir, prefs):
    model, tok = _load(model_dir)
    c = _completion_logps(model, tok, [(r["prompt"], r["chosen"]) for r in prefs])
    r = _completion_logps(model, tok, [(r["prompt"], r["rejected"]) for r in prefs])
    return sum(a - b for a, b in zip(c, r)) / len(c)


FAST = dict(learning_rate=3e-3, batch_size=4, max_length=64, save_steps=1000)


# ---------------------------------------------------------------------------------------------
def test_sft_lowers_completion_loss_and_masks_prompt(tiny_model, tmp_path):
    from w2s.training import trl_compat
    from w2s.training.run import load_model, load_tokenizer
    from w2s.training.sft import _dataset

    recs = _sft_records()
    settings = SFTSettings(max_steps=8, **FAST)

    # prompt tokens carry no loss; EOS closes every completion
    tok = load_tokenizer(tiny_model)
    trainer = trl_compat.sft_trainer(load_model(tiny_model, settings), tok, _dataset(recs[:2]), settings,
                                     str(tmp_path / "probe"))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for row, rec in zip(range(2), recs):
        n_prompt = len(tok(rec["prompt"], add_special_tokens=False)["input_ids"])
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        real = labels != -100
        assert not real[:n_prompt].any(), "prompt tokens must carry no loss"
        assert real[n_prompt:].any()
        last = int(real.nonzero().max())
        assert int(ids[last]) == tok.eos_token_id, "EOS appended to the completion"
    del trainer

    base, tok = _load(tiny_model)
    before = _completion_logps(base, tok, [(r["prompt"], r["completion"]) for r in recs])
    out = train_sft(tiny_model, recs, tmp_path / "sft", settings)
    assert is_complete(out) and (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    after_model, _ = _load(out)
    after = _completion_logps(after_model, tok, [(r["prompt"], r["completion"]) for r in recs])
    assert sum(after) > sum(before) + 10, (sum(before), sum(after))

    lin = read_lineage(out)
    assert lin["kind"] == "sft" and lin["global_step"] == 8
    assert lin["base_model"]["path"] == str(Path(tiny_model).resolve())
    assert lin["adapter"] is False and lin["merged"] is False
    assert len(lin["data"]["sha256"]) == 64 and lin["data"]["n_records"] == len(recs)
    assert lin["config"]["learning_rate"] == 3e-3
    assert not (out / "checkpoints").exists()

    # same model, data and config: complete already, returned without retraining
    stamp = (out / "DONE").read_text()
    assert train_sft(tiny_model, recs, tmp_path / "sft", settings) == out
    assert (out / "DONE").read_text() == stamp


def test_cpu_sft_loss_is_trls_loss_without_its_fused_head(tiny_model, tmp_path):
    """On CPU w2s's SFT trainer takes the model's own cross-entropy instead of TRL's fused LM head
    (which costs the toy weak model most of its step there): same loss and same gradients as
    TRL's on the same padded batch, for the same num_items_in_batch."""
    from trl import SFTTrainer

    from w2s.training import trl_compat
    from w2s.training.run import load_model, load_tokenizer
    from w2s.training.sft import _dataset

    settings = SFTSettings(max_steps=1, **FAST)
    tok, recs = load_tokenizer(tiny_model), _sft_records(4)
    ours = trl_compat.sft_trainer(load_model(tiny_model, settings), tok, _dataset(recs), settings, str(tmp_path / "a"))
    trls = SFTTrainer(model=load_model(tiny_model, settings), args=trl_compat.sft_config(settings, str(tmp_path / "b")),
                      train_dataset=_dataset(recs), processing_class=tok)
    assert type(ours) is not SFTTrainer and isinstance(ours, SFTTrainer)
    batch = ours.data_collator([ours.train_dataset[i] for i in range(4)])
    assert (batch["labels"] == -100).any() and (batch["attention_mask"] == 0).any()  # prompt and padding masked
    n_items = int((batch["labels"][:, 1:] != -100).sum())
    losses, grads = [], []
    for trainer in (ours, trls):
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=torch.tensor(n_items))
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_sft_packing_and_padding_free_run(tiny_model, tmp_path):
    recs = _sft_records(12)
    for name, kw in {"packed": dict(packing=True), "pf": dict(padding_free=True)}.items():
        out = train_sft(tiny_model, recs, tmp_path / name, SFTSettings(max_steps=2, **FAST, **kw))
        assert is_complete(out) and read_lineage(out)["global_step"] == 2


def test_lora_sft_merge_matches_adapter(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    recs = _sft_records(8)
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, targets="q,k,v,o,gate,up,down")
    out = train_sft(tiny_model, recs, tmp_path / "adapter",  # default: an adapter, no merged copy
                    SFTSettings(max_steps=4, lora=lora, **{**FAST, "learning_rate": 1e-2}))
    assert (out / "adapter_config.json").exists() and not (out / "config.json").exists()
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert set(cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert cfg["base_model_name_or_path"] == str(Path(tiny_model).resolve())
    lin = read_lineage(out)
    assert lin["adapter"] is True and lin["base_model"]["path"] == str(Path(tiny_model).resolve())
    assert lin["adapter_base"]["path"] == str(Path(tiny_model).resolve())

    merged = merge_adapter(out, tmp_path / "merged")
    assert is_complete(merged) and read_lineage(merged)["kind"] == "merge"

    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), use_safetensors=True).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        adapter_logits = PeftModel.from_pretrained(base, str(out)).eval()(ids).logits
        merged_logits = _load(merged)[0](ids).logits
    assert not torch.allclose(base_logits, adapter_logits, atol=1e-3), "adapter must have learned something"
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)

    # merge=True: a full model dir directly
    out2 = train_sft(tiny_model, recs, tmp_path / "merged_direct",
                     SFTSettings(max_steps=4, lora=lora, merge=True, **{**FAST, "learning_rate": 1e-2}))
    assert (out2 / "model.safetensors").exists() and not (out2 / "adapter_config.json").exists()
    assert read_lineage(out2)["merged"] is True
    with torch.no_grad():
        torch.testing.assert_close(_load(out2)[0](ids).logits, merged_logits, atol=1e-4, rtol=1e-4)


def test_dpo_raises_margin_reference_is_start(tiny_model, tmp_path, monkeypatch):
    import w2s.training.preference as pref_mod

    prefs = _pref_records()
    loaded = []
    real_load = pref_mod.load_model

    def spy(path, *a, **k):
        m = real_load(path, *a, **k)
        loaded.append((str(path), m))
        return m

    monkeypatch.setattr(pref_mod, "load_model", spy)
    start_weights = {k: v.clone() for k, v in _load(tiny_model)[0].state_dict().items()}
    before = _margin(tiny_model, prefs)
    out = train_preference(tiny_model, prefs, tmp_path / "dpo",
                           PreferenceSettings(method="dpo", beta=0.1, sft_weight=0.5, max_steps=8,
                                              **{**FAST, "learning_rate": 3e-3}))
    after = _margin(out, prefs)
    assert after > before + 1.0, (before, after)

    # the reference is the starting model, a frozen copy that training did not touch
    assert len(loaded) == 1 and loaded[0][0] == str(tiny_model)
    ref = loaded[0][1]
    assert not any(p.requires_grad for p in ref.parameters())
    for k, v in ref.state_dict().items():
        if k in start_weights:
            torch.testing.assert_close(v, start_weights[k])
    lin = read_lineage(out)
    assert lin["kind"] == "dpo" and lin["reference"] == {"model": str(Path(tiny_model).resolve()),
                                                         "how": "frozen copy"}
    assert lin["config"]["sft_weight"] == 0.5


def test_dpo_lora_reference_is_adapter_disabled(tiny_model, tmp_path):
    prefs = _pref_records()
    before = _margin(tiny_model, prefs)
    out = train_preference(tiny_model, prefs, tmp_path / "dpo_lora",
                           PreferenceSettings(method="dpo", max_steps=6, merge=True,
                                              lora=LoraSettings(r=8, alpha=16, dropout=0.0),
                                              **{**FAST, "learning_rate": 1e-2}))
    assert _margin(out, prefs) > before + 0.5
    lin = read_lineage(out)
    assert lin["reference"]["how"].startswith("adapter disabled") and lin["merged"] is True


def test_dpo_from_an_adapter_continues_it_against_itself(tiny_model, tmp_path):
    """M_plus kept as an adapter: DPO trains that adapter on, against a frozen copy of it. The
    first step's loss is computed before any update, with policy == reference: exactly log 2
    for every pair. Against the bare base (the adapter disabled) it would not be, because
    M_plus's adapter moved the log-probabilities (checked below)."""
    import math

    lora = LoraSettings(r=4, alpha=8, dropout=0.0)
    m_plus = train_sft(tiny_model, _sft_records(8), tmp_path / "m_plus",
                       SFTSettings(max_steps=4, lora=lora, **{**FAST, "learning_rate": 3e-2}))
    assert (m_plus / "adapter_config.json").exists()
    prefs = _pref_records()
    out = train_preference(m_plus, prefs, tmp_path / "dpo",
                           PreferenceSettings(method="dpo", beta=0.5, max_steps=1, lora=lora, batch_size=8,
                                              max_length=64, learning_rate=1e-3, save_steps=1000))
    lin = read_lineage(out)
    assert lin["train_loss"] == pytest.approx(math.log(2), abs=1e-5), "the reference is not M_plus"
    assert lin["reference"] == {"model": str(m_plus.resolve()),
                                "how": "frozen copy of the starting adapter (TRL's 'ref' adapter)"}
    # one adapter over the ORIGINAL base (what vLLM serves), no reference copy saved beside it
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(Path(tiny_model).resolve())
    assert lin["adapter_base"]["path"] == str(Path(tiny_model).resolve())
    assert not (out / "ref").exists() and not (out / "model.safetensors").exists()
    # the test has teeth: M_plus's adapter is far from the base on these pairs
    from w2s.models import load_causal_lm

    base, tok = _load(tiny_model)
    plus = load_causal_lm(m_plus, dtype=torch.float32).eval()
    pairs = [(r["prompt"], r["chosen"]) for r in prefs]
    assert max(abs(a - b) for a, b in zip(_completion_logps(base, tok, pairs), _completion_logps(plus, tok, pairs))) > 0.5


def test_orpo_raises_margin(tiny_model, tmp_path):
    prefs = _pref_records()
    before = _margin(tiny_model, prefs)
    out = train_preference(tiny_model, prefs, tmp_path / "orpo",
                           PreferenceSettings(method="orpo", beta=1.0, max_steps=8, **{**FAST, "learning_rate": 3e-3}))
    assert _margin(out, prefs) > before + 1.0
    lin = read_lineage(out)
    assert lin["kind"] == "orpo" and lin["reference"]["model"] is None
    assert lin["orpo_implementation"]


def test_resume_after_crash_continues_global_step(tiny_model, tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise RuntimeError("simulated crash")

    class Steps(TrainerCallback):
        seen: list = []

        def on_step_end(self, args, state, control, **kw):
            self.seen.append(state.global_step)

    recs = _sft_records()
    settings = SFTSettings(max_steps=6, **{**FAST, "save_steps": 2})
    out = tmp_path / "resumable"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sft(tiny_model, recs, out, settings, callbacks=[Crash()])
    assert not is_complete(out)
    # checkpoints live in the staging directory beside OUT (OUT is swapped in only when complete)
    assert len(list(tmp_path.glob(".resumable.w2s-*/checkpoints/checkpoint-2"))) == 1

    steps = Steps()
    train_sft(tiny_model, recs, out, settings, callbacks=[steps])
    assert is_complete(out)
    assert steps.seen[0] == 3 and steps.seen[-1] == 6      # continued, not restarted
    lin = read_lineage(out)
    assert lin["resumed_from"] == "checkpoint-2" and lin["global_step"] == 6


def test_checkpoints_of_other_config_are_not_resumed(tiny_model, tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                raise RuntimeError("crash")

    recs = _sft_records(8)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError):
        train_sft(tiny_model, recs, out, SFTSettings(max_steps=3, **{**FAST, "save_steps": 1}), callbacks=[Crash()])
    train_sft(tiny_model, recs, out, SFTSettings(max_steps=3, seed=7, **{**FAST, "save_steps": 1}))
    assert read_lineage(out)["resumed_from"] is None


def test_bad_data_fails_before_model_loads(tmp_path):
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"id": "1", "prompt": "p", "completion": " c"}, {"id": "2", "prompt": "p"}])
    with pytest.raises(DataError) as e:  # the model path does not even exist: data is checked first
        train_sft(tmp_path / "no-such-model", bad, tmp_path / "out", SFTSettings())
    assert e.value.row == 2 and e.value.field == "completion" and str(bad) in str(e.value)
    assert not (tmp_path / "out").exists()

    prefs = tmp_path / "p.jsonl"
    write_jsonl(prefs, [{"id": "1", "prompt": "p", "chosen": " a", "rejected": 3}])
    with pytest.raises(DataError) as e:
        train_preference(tmp_path / "no-such-model", prefs, tmp_path / "out", PreferenceSettings())
    assert e.value.row == 1 and e.value.field == "rejected"

    with pytest.raises(DataError):
        train_sft(tmp_path / "no-such-model", [], tmp_path / "out", SFTSettings())


def test_refuses_to_clobber_foreign_directory(tiny_model, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing"):
        train_sft(tiny_model, _sft_records(4), foreign, SFTSettings(max_steps=1, **FAST))
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_settings_validation_and_mapping():
    from w2s.training import trl_compat

    with pytest.raises(ValueError):
        PreferenceSettings(method="ppo")
    with pytest.raises(ValueError):
        LoraSettings(r=0)
    assert LoraSettings(targets="q,v").target_modules == ("q_proj", "v_proj")
    s = SFTSettings(max_steps=7, batch_size=3, grad_accum=2, max_length=99, report_to="tensorboard",
                    extra={"logging_first_step": True})
    cfg = trl_compat.sft_config(s, "/tmp/x")
    assert (cfg.max_steps, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (7, 3, 2)
    assert cfg.max_length == 99 and cfg.completion_only_loss is True
    assert cfg.gradient_checkpointing is False and cfg.bf16 is False and cfg.report_to == ["tensorboard"]
    assert cfg.logging_first_step is True
    d = trl_compat.dpo_config(PreferenceSettings(beta=0.3, sft_weight=0.2), "/tmp/x")
    assert d.beta == 0.3 and list(d.loss_type) == ["sigmoid", "sft"] and list(d.loss_weights) == [1.0, 0.2]
    assert s.to_dict()["max_steps"] == 7 and s.to_dict()["max_length"] == 99  # what lineage.json records


def test_old_setting_names_are_aliases_of_trls():
    from w2s.training.settings import validate_settings

    old = SFTSettings(epochs=2, batch_size=3, grad_accum=5, lr_scheduler="cosine", lr=2e-4,
                      lora={"r": 4, "alpha": 8, "dropout": 0.1, "targets": "q,v"})
    new = SFTSettings(num_train_epochs=2, per_device_train_batch_size=3, gradient_accumulation_steps=5,
                      lr_scheduler_type="cosine", learning_rate=2e-4,
                      lora=LoraSettings(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    assert old == new and old.to_dict()["per_device_train_batch_size"] == 3
    assert PreferenceSettings(precompute_ref=True).precompute_ref_log_probs is True
    with pytest.raises(ValueError, match="given twice"):
        SFTSettings(batch_size=2, per_device_train_batch_size=4)
    # errors name the full key as the user wrote it
    with pytest.raises(ValueError, match=r"^strong\.train\.epochs: must be > 0"):
        validate_settings(SFTSettings, {"epochs": 0}, "strong.train")
    with pytest.raises(ValueError, match=r"^stage2\.train\.lora\.alpha: must be > 0, got -1"):
        validate_settings(PreferenceSettings, {"lora": {"alpha": -1}}, "stage2.train")
    with pytest.raises(ValueError, match=r"^weak\.train\.batchsize: unknown key .*did you mean 'batch_size'"):
        validate_settings(SFTSettings, {"batchsize": 2}, "weak.train")
    with pytest.raises(ValueError, match=r"^s\.warmup_ratio: must be a finite number, got nan"):
        validate_settings(SFTSettings, {"warmup_ratio": float("nan")}, "s")
    with pytest.raises(ValueError, match=r"^s\.num_generations: .*\(6\) must be a multiple of num_generations \(8\)"):
        validate_settings(GRPOSettings, {"batch_size": 6}, "s")
    assert validate_settings(SFTSettings, {"learning_rate": "3e-4"}, "s").learning_rate == 3e-4  # YAML's 3e-4 is a string


def test_every_trl_named_setting_is_a_field_of_trls_config():
    """A setting that is not w2s's own must exist, by that name, in the TRL config it is passed to:
    a TRL rename fails here instead of warning at run time."""
    import dataclasses

    from trl import DPOConfig, GRPOConfig, SFTConfig

    from w2s.training import trl_compat

    orpo = trl_compat._orpo_classes()
    targets = [("sft", SFTSettings, SFTConfig), ("dpo", PreferenceSettings, DPOConfig),
               ("grpo", GRPOSettings, GRPOConfig)] + ([("orpo", PreferenceSettings, orpo[0])] if orpo else [])
    for trainer, settings, config in targets:
        passed = set(trl_compat._trl_named(settings(), trainer)) - {"warmup_ratio"}  # transformers 5: warmup_steps
        missing = passed - {f.name for f in dataclasses.fields(config)}
        assert not missing, f"{config.__name__} has no {sorted(missing)}"
        assert "per_device_train_batch_size" in passed and "lora" not in passed


def test_warmup_ratio_reaches_the_trainer(tmp_path):
    """transformers 5 folded warmup_ratio into a float warmup_steps: the setting must still warm up
    (it was silently dropped with a warning before), in every trainer's config."""
    import torch
    from transformers import get_scheduler

    from w2s.training import trl_compat

    for cfg in (trl_compat.sft_config(SFTSettings(max_steps=100, warmup_ratio=0.1, lr_scheduler="linear"), str(tmp_path)),
                trl_compat.dpo_config(PreferenceSettings(max_steps=100, warmup_ratio=0.1, lr_scheduler="linear"),
                                      str(tmp_path))):
        steps = cfg.get_warmup_steps(100) if hasattr(cfg, "get_warmup_steps") else None
        assert steps == 10 or getattr(cfg, "warmup_ratio", None) == 0.1
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = get_scheduler("linear", opt, num_warmup_steps=cfg.get_warmup_steps(100), num_training_steps=100)
        assert sched.get_last_lr()[0] == 0.0  # starts from 0: a warmup is on
    assert trl_compat.sft_config(SFTSettings(max_steps=100), str(tmp_path)).get_warmup_steps(100) == 0


def test_orpo_fallback_when_trl_has_none(tiny_model, tmp_path, monkeypatch):
    """Insulation: if a TRL release drops ORPO, our implementation of the published loss runs."""
    from w2s.training import trl_compat

    monkeypatch.setattr(trl_compat, "_orpo_classes", lambda: None)
    prefs = _pref_records()
    before = _margin(tiny_model, prefs)
    out = train_preference(tiny_model, prefs, tmp_path / "orpo_fb",
                           PreferenceSettings(method="orpo", beta=1.0, max_steps=8, **{**FAST, "learning_rate": 3e-3}))
    assert _margin(out, prefs) > before + 1.0
    assert read_lineage(out)["orpo_implementation"] == "w2s.training.orpo_fallback"


def test_qlora_is_lora_over_a_4bit_base_and_says_what_it_needs(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="load_in_4bit .*set lora too"):
        SFTSettings(load_in_4bit=True)
    settings = SFTSettings(load_in_4bit=True, lora=LoraSettings(r=4), max_steps=1)
    from w2s.training import trl_compat

    trl_compat.sft_config(settings, str(tmp_path / "ckpt"))  # a w2s setting: never passed to TRL
    # this machine has neither bitsandbytes nor CUDA: one line saying so, before any training
    with pytest.raises(RuntimeError, match=r"load_in_4bit \(QLoRA\) needs (bitsandbytes|a CUDA GPU)"):
        train_sft(tiny_model, _sft_records(4), tmp_path / "qlora", settings)
    assert not any("qlora" in p.name for p in tmp_path.iterdir())  # nothing written, not even a staging dir


def test_an_empty_training_set_with_adapters_writes_the_identity_adapter(tiny_model, tmp_path):
    """A Stage I iteration that selected nothing, in a run that keeps adapters: the model is the
    base, unchanged, written as LoRA's identity adapter (B = 0) at an adapter's size, not as a full
    copy; its random A lets a later stage (DPO from it) train it."""
    from w2s import steps
    from w2s.models import load_causal_lm

    (tmp_path / "empty.jsonl").write_text("")
    settings = {"lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "seed": 0}
    info = steps.train("sft", str(tiny_model), tmp_path / "empty.jsonl", tmp_path / "sft_iter1_weak", settings)
    out = tmp_path / "sft_iter1_weak"
    assert info == {"n_train": 0, "untrained": True} and is_complete(out)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    lin = read_lineage(out)
    assert lin["untrained"] is True and lin["kind"] == "identity_adapter"
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        torch.testing.assert_close(load_causal_lm(out, dtype=torch.float32).eval()(ids).logits,
                                   _load(tiny_model)[0](ids).logits, atol=0, rtol=0)
    prefs = _pref_records()
    before = _margin(tiny_model, prefs)
    dpo = train_preference(out, prefs, tmp_path / "dpo", PreferenceSettings(
        method="dpo", max_steps=6, lora=LoraSettings(r=4, alpha=8, dropout=0.0), **{**FAST, "learning_rate": 1e-2}))
    from w2s.training.merge import merge_adapter

    assert _margin(merge_adapter(dpo, tmp_path / "dpo_merged"), prefs) > before + 0.5
    # merge: true (or no LoRA) keeps the full copy
    steps.train("sft", str(tiny_model), tmp_path / "empty.jsonl", tmp_path / "copy", {**settings, "merge": True})
    assert (tmp_path / "copy" / "model.safetensors").is_file()
