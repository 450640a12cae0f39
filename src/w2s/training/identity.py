"""An untrained LoRA adapter: what training on an empty set writes when a run keeps adapters.

LoRA's own initialisation is the identity (B = 0, A random), so a freshly initialised adapter
IS the base model, unchanged, at the size of an adapter: a Stage I iteration that selected
nothing costs megabytes, not a full copy of a 70B model, and is served like every other adapter
of the run (one vLLM engine per base). A is random as PEFT draws it, so a later stage that
continues this adapter (Stage II from such an M_plus) can train it. Built on the meta device:
no weight of the base is read."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from w2s.io import check_output
from w2s.training import lineage as lin
from w2s.training import outdir as od
from w2s.training import trl_compat


def untrained_adapter(base: str | os.PathLike, out_dir: str | os.PathLike, lora, reason: str, seed: int = 0) -> Path:
    """Write the identity LoRA adapter (settings `lora`) over `base` to `out_dir`, with lineage
    saying why; built beside `out_dir` and swapped in complete, like every model w2s writes."""
    import torch
    from accelerate import init_empty_weights
    from peft import get_peft_model
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from w2s.models import load_tokenizer

    out = Path(out_dir)
    check_output(out, is_dir=True, models=[base])
    od.recover(out)
    od.check_replaceable(out)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(base)))
    peft_model = get_peft_model(model, trl_compat.lora_config(lora))
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, meta in get_peft_model_state_dict(peft_model).items():
        tensor = torch.zeros(meta.shape, dtype=torch.float32)
        if "lora_A" in name:  # PEFT's default draw: kaiming-uniform with a = sqrt(5)
            bound = 1 / math.sqrt(meta.shape[1])
            tensor.uniform_(-bound, bound, generator=generator)
        tensors[name] = tensor
    tmp = od.fresh_stage(out, "identity")
    save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = peft_model.peft_config["default"]
    bp = Path(base)
    config.base_model_name_or_path = str(bp.resolve()) if bp.exists() else str(base)
    config.save_pretrained(str(tmp))
    load_tokenizer(base).save_pretrained(str(tmp))
    lin.write_lineage(tmp, {"kind": "identity_adapter", "base_model": lin.describe_model(base), "adapter": True,
                            "adapter_base": lin.describe_model(base), "untrained": True, "reason": reason,
                            "lora": lora.model_dump() if hasattr(lora, "model_dump") else dict(lora),
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    lin.mark_done(tmp)
    return od.publish(tmp, out)
