"""A model's config.json is checked against its safetensors headers before anything is allocated
(issue 19 item 4): hostile sizes are one line naming the field; real checkpoints of every common
architecture, sharded ones and LoRA adapters pass."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from w2s import models
from w2s.io import DataError
from w2s.models import check_model_config, implied_parameter_count, load_causal_lm, stored_parameter_count

TOY = Path(models.__file__).parent / "toy" / "checkpoints"


def _copy_with(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _no_allocation(monkeypatch):
    """Fail the test if transformers is asked to build the model (the check must come first)."""
    import transformers

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before its config was checked")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.mark.parametrize("field, value, says", [
    ("hidden_size", -64, "hidden_size = -64: expected a positive whole number"),
    ("vocab_size", 1e11, "vocab_size = 100000000000.0: expected a whole number"),
    ("num_hidden_layers", 1e12, "num_hidden_layers = 1000000000000.0: expected a whole number"),
    ("num_hidden_layers", 10**12, "num_hidden_layers = 1000000000000: larger than any model's"),
    ("num_attention_heads", 0, "num_attention_heads = 0: expected a positive whole number"),
    ("intermediate_size", "384", 'intermediate_size = "384": expected a whole number'),
    ("num_key_value_heads", True, "num_key_value_heads = true: expected a whole number"),
])
def test_non_positive_or_non_integer_sizes_are_one_line_naming_the_field(tmp_path, monkeypatch, field, value, says):
    model = _copy_with(TOY / "weak", tmp_path / "m", **{field: value})
    _no_allocation(monkeypatch)
    with pytest.raises(DataError) as e:
        load_causal_lm(model)
    assert str(e.value).startswith(f"{model / 'config.json'}: {says}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("field, value", [("num_hidden_layers", 100_000), ("vocab_size", 10**8),
                                          ("intermediate_size", 10**9), ("hidden_size", 100_000)])
def test_sizes_the_weights_cannot_hold_are_refused_naming_the_field(tmp_path, monkeypatch, field, value):
    model = _copy_with(TOY / "weak", tmp_path / "m", **{field: value})
    _no_allocation(monkeypatch)
    with pytest.raises(DataError, match=rf"config.json: {field} = {value}: the config implies at least "
                                        r"[\d,]+ parameters, but the weights hold 169,280"):
        load_causal_lm(model)


def test_the_vllm_backend_checks_the_config_before_starting_an_engine(tmp_path, monkeypatch):
    from w2s.generation import vllm

    monkeypatch.setattr(vllm, "require_vllm", lambda: None)
    monkeypatch.setattr(vllm, "Engine", lambda *a: pytest.fail("an engine was started"))
    model = _copy_with(TOY / "strong", tmp_path / "m", num_hidden_layers=100_000)
    with pytest.raises(DataError, match="num_hidden_layers = 100000"):
        vllm.VLLMBackend(str(model))


def test_quantized_checkpoints_get_room_for_packed_weights(tmp_path):
    # GPTQ-style: 8 parameters per stored int32, so the files hold ~1/8 of the config's count
    over = _copy_with(TOY / "strong", tmp_path / "plain", intermediate_size=384 * 40)
    with pytest.raises(DataError, match="intermediate_size"):
        check_model_config(over)
    check_model_config(_copy_with(over, tmp_path / "quantized", quantization_config={"bits": 4}))


def test_damaged_weights_files_are_named(tmp_path):
    model = _copy_with(TOY / "weak", tmp_path / "m")
    (model / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    with pytest.raises(DataError, match=r"model.safetensors: is a git-lfs pointer"):
        check_model_config(model)
    (model / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(DataError, match=r"model.safetensors: not a safetensors file"):
        check_model_config(model)


@pytest.mark.parametrize("name", ["weak", "strong"])
def test_the_toy_checkpoints_pass_and_their_count_is_exact(name):
    check_model_config(TOY / name)
    from safetensors import safe_open

    with safe_open(str(TOY / name / "model.safetensors"), "pt") as f:
        assert stored_parameter_count(TOY / name) == sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)


@pytest.mark.parametrize("model_type, extra", [
    ("llama", {}), ("qwen2", {}), ("mistral", {}), ("gemma", {"head_dim": 16}),
    ("gemma2", {"head_dim": 32}), ("phi3", {"pad_token_id": 0}), ("qwen3", {"head_dim": 32}),
    ("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2}),
    ("qwen2_moe", {"num_experts": 4, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64}),
    ("gpt2", {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128}),
])
def test_real_architectures_saved_by_transformers_pass(tmp_path, model_type, extra):
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {**SMALL, **extra} if model_type != "gpt2" else {"vocab_size": 300, **extra}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kwargs))
    real = sum(p.numel() for p in model.parameters())
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert implied_parameter_count(config) <= real  # a lower bound, for every family
    check_model_config(tmp_path / "m")
    # and sharded: the index's shards are counted together
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert stored_parameter_count(tmp_path / "sharded") == stored_parameter_count(tmp_path / "m")
    check_model_config(tmp_path / "sharded")


def test_a_missing_shard_is_left_to_transformers(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **SMALL)).save_pretrained(
        tmp_path / "m", max_shard_size="20KB")
    next((tmp_path / "m").glob("model-00001-*.safetensors")).unlink()
    assert stored_parameter_count(tmp_path / "m") is None
    check_model_config(tmp_path / "m")


def test_tiny_models_and_lora_adapters_pass(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    check_model_config(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "lora")
    assert models.is_adapter_dir(tmp_path / "lora")
    check_model_config(tmp_path / "lora")
    assert load_causal_lm(tmp_path / "lora") is not None
    # an adapter whose (local) base has a hostile config is refused through the adapter
    bad = _copy_with(Path(tiny_model), tmp_path / "bad_base", num_hidden_layers=100_000)
    cfg = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": str(bad)}))
    with pytest.raises(DataError, match="num_hidden_layers = 100000"):
        check_model_config(tmp_path / "lora")


def test_hub_names_and_dirs_without_config_are_left_to_transformers(tmp_path):
    check_model_config("Qwen/Qwen2.5-0.5B")
    check_model_config(tmp_path)


def test_w2s_generate_with_a_hostile_config_is_one_line_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from w2s.cli import _register, app

    _register()
    model = _copy_with(TOY / "weak", tmp_path / "m", num_hidden_layers=100_000)
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "q0", "question": "Jack has 2 apples. How many?", "answer": "2"}) + "\n")
    result = CliRunner().invoke(app, ["generate", "-m", str(model), "-i", str(questions), "-t", "toy",
                                      "-o", str(tmp_path / "g.jsonl"), "--max-new-tokens", "4", "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {model / 'config.json'}: num_hidden_layers = 100000: the config implies at least 4,096,062,464 "
        "parameters, but the weights hold 169,280; fix config.json or use the weights it belongs to"]
    assert not (tmp_path / "g.jsonl").exists()
