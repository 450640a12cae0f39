"""ORPO (Hong, Lee, Thorne, 2024) on plain transformers `Trainer`, for TRL releases that no
longer ship an ORPO trainer. `trl_compat.orpo_trainer` uses TRL's when it exists.

    L = NLL(chosen) - beta * log sigmoid( log odds(chosen) - log odds(rejected) )
    odds(y|x) = P / (1 - P),  log P = mean token log-prob of the completion   (paper, eq. 4-7)

Completion-only: prompt tokens carry no loss; EOS is appended to both completions. No
reference model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments


def orpo_fallback_args(kwargs: dict[str, Any], extra: dict[str, Any]) -> TrainingArguments:
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    args = TrainingArguments(**{k: v for k, v in {**kwargs, **(extra or {})}.items() if k in names})
    args.orpo_beta = float(kwargs.get("beta", 0.1))
    args.orpo_max_length = int(kwargs.get("max_length") or 1024)
    return args


def _tokenize(tok, prompt: str, completion: str, max_length: int) -> tuple[list[int], list[int]]:
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    full = tok(prompt + completion, add_special_tokens=False)["input_ids"]
    n = 0
    while n < min(len(p), len(full)) and p[n] == full[n]:  # common prefix: merges at the boundary
        n += 1
    ids = (full + [tok.eos_token_id])[:max_length]
    labels = [-100] * min(n, len(ids)) + ids[n:]
    return ids, labels


class _Collator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        seqs = [(r["chosen_ids"], r["chosen_labels"]) for r in rows] + \
               [(r["rejected_ids"], r["rejected_labels"]) for r in rows]
        width = max(len(s) for s, _ in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, lab) in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            labels[i, :len(lab)] = torch.tensor(lab)
            mask[i, :len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class ORPOFallbackTrainer(Trainer):
    def __init__(self, model, args, train_dataset, processing_class, peft_config=None, callbacks=None):
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        tok = processing_class
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        max_len = args.orpo_max_length

        def encode(ex):
            c_ids, c_lab = _tokenize(tok, ex["prompt"], ex["chosen"], max_len)
            r_ids, r_lab = _tokenize(tok, ex["prompt"], ex["rejected"], max_len)
            return {"chosen_ids": c_ids, "chosen_labels": c_lab, "rejected_ids": r_ids, "rejected_labels": r_lab}

        ds = train_dataset.map(encode, remove_columns=train_dataset.column_names)
        args.remove_unused_columns = False
        self.beta = args.orpo_beta
        super().__init__(model=model, args=args, train_dataset=ds, processing_class=tok,
                         data_collator=_Collator(tok.pad_token_id), callbacks=callbacks)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        logits = model(**inputs).logits[:, :-1].float()
        target = labels[:, 1:]
        mask = target != -100
        logp = torch.gather(F.log_softmax(logits, -1), 2, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        mean_logp = (logp * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        half = labels.shape[0] // 2
        chosen, rejected = mean_logp[:half], mean_logp[half:]
        nll = -chosen.mean()
        # log odds = log p - log(1 - p), with log(1 - exp(x)) computed stably
        log_odds = (chosen - rejected) - (torch.log1p(-torch.exp(chosen).clamp(max=1 - 1e-7))
                                          - torch.log1p(-torch.exp(rejected).clamp(max=1 - 1e-7)))
        loss = nll - self.beta * F.logsigmoid(log_odds).mean()
        return (loss, {"log_odds": log_odds}) if return_outputs else loss
