"""TRL's GRPOTrainer: its config from GRPOSettings, the trainer with the task's stop strings, its log,
and what w2s changes inside a built trainer. Version-specific, as `trl_compat` is (trl>=1.0,<2)
(whose shared settings mapping it uses): `keep_signal_only` relies on `_generate_and_score_completions` returning the
generation batch as a dict with `advantages` (one per completion), `completion_mask`,
`num_items_in_batch` (the loss mask's token count over all processes) and, with tools,
`tool_mask`. `tests/test_stage3.py` runs it on a real trainer.

`drop_zero_std` (GRPOSettings, default off): a completion whose advantage is 0 carries no
policy-gradient signal; with binary rewards that is every completion of a group whose rewards are
all equal (TRL logs their share as `frac_reward_zero_std`). Such completions leave the loss mask
and the token count it is normalised by, so with the token-normalised losses (`dapo`, w2s's
default; `bnpo`, `cispo`) a step is the mean over the groups that carry a signal instead of being
diluted by the rest: DAPO's dynamic sampling (Yu et al., 2025) without its oversampling, so a step
may have fewer groups. `grpo` and `dr_grpo` average per sequence: there the masked completions
still count in the mean. With beta > 0 a dropped completion also leaves the KL term.
"""

from __future__ import annotations

import warnings
from typing import Sequence

from w2s.training.trl_compat import _common_kwargs, _config


def grpo_config(settings, output_dir: str, stop: Sequence[str] = (), eos_token_id: int | None = None):
    """TRL's GRPOConfig. Stop strings: vLLM's SamplingParams take `stop`; with transformers'
    generate, `grpo_trainer` adds a stopping criterion, and rows that stopped are padded with EOS
    so that TRL's completion mask (which ends at the first EOS) ends there too."""
    from trl import GRPOConfig

    kw = _common_kwargs(settings, output_dir, "grpo")
    # the dataset's extra columns (pseudo_label) must reach the reward functions
    kw.update(remove_unused_columns=False, disable_dropout=True)
    if stop and settings.use_vllm:
        kw["generation_kwargs"] = {"stop": list(stop)}
    elif stop and eos_token_id is not None:
        kw["generation_kwargs"] = {"pad_token_id": eos_token_id}
    return _config(GRPOConfig, kw, settings.extra)


def _stop_criterion(tokenizer, stop: Sequence[str], prompt_len: int):
    """Stop a row once its completion (not its prompt) contains a stop string. transformers' own
    `stop_strings` cannot be used: TRL does not pass the tokenizer to generate(), and its vocabulary
    scan fails on some tokenizers (the toy one)."""
    import torch
    from transformers import StoppingCriteria

    window = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stop) + 4

    class StopStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            tails = tokenizer.batch_decode(input_ids[:, max(prompt_len, input_ids.shape[1] - window):])
            return torch.tensor([any(s in t for s in stop) for t in tails], device=input_ids.device)

    return StopStrings()


def grpo_trainer(model, tokenizer, dataset, reward_funcs, settings, output_dir: str, stop: Sequence[str] = (),
                 peft_config=None, callbacks=()):
    """TRL's GRPOTrainer on a {prompt, pseudo_label} dataset. Stop strings with transformers'
    generate: TRL 1.x offers no hook for stopping criteria, so the model object's `generate` gets
    one (TRL generates with the unwrapped model, this same object; PEFT forwards to it)."""
    from transformers import StoppingCriteriaList
    from trl import GRPOTrainer

    args = grpo_config(settings, output_dir, stop, tokenizer.eos_token_id)
    if stop and not settings.use_vllm:
        generate = model.generate

        def generate_with_stop(*a, **kw):
            prompt_len = (kw.get("input_ids") if kw.get("input_ids") is not None else a[0]).shape[1]
            criteria = StoppingCriteriaList(kw.pop("stopping_criteria", None) or [])
            criteria.append(_stop_criterion(tokenizer, stop, prompt_len))
            return generate(*a, stopping_criteria=criteria, **kw)

        model.generate = generate_with_stop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GRPOTrainer(model=model, reward_funcs=list(reward_funcs), args=args, train_dataset=dataset,
                           processing_class=tokenizer, peft_config=peft_config, callbacks=list(callbacks) or None)


def grpo_log(trainer) -> list[dict]:
    """Per logged step: mean reward and its spread, completion length, clipped share (and KL)."""
    keys = {"reward": "reward", "reward_std": "reward_std", "completions/mean_length": "mean_length",
            "completions/clipped_ratio": "clipped_ratio", "kl": "kl", "entropy": "entropy",
            "frac_reward_zero_std": "zero_std"}   # groups whose rewards are all equal: no signal
    out = []
    for entry in trainer.state.log_history:
        if "reward" in entry and "step" in entry:
            out.append({"step": int(entry["step"]),
                        **{short: float(entry[k]) for k, short in keys.items() if k in entry}})
    return out



def drop_zero_advantage(batch: dict, gather=lambda t: t) -> dict:
    """The generation batch with completions whose advantage is 0 masked out of the loss and of
    `num_items_in_batch` (`gather` sums the count over processes: the trainer's accelerator)."""
    adv = batch["advantages"]
    keep = (adv.reshape(len(adv), -1) != 0).any(dim=1)
    mask = batch["completion_mask"] * keep.unsqueeze(1).to(batch["completion_mask"].dtype)
    loss_mask = mask * batch["tool_mask"] if batch.get("tool_mask") is not None else mask
    return {**batch, "completion_mask": mask, "num_items_in_batch": gather(loss_mask.sum()).sum()}


def keep_signal_only(trainer) -> None:
    """Make `trainer` (a built GRPOTrainer) drop zero-advantage completions from every generation
    batch it scores (`drop_zero_advantage`)."""
    score = trainer._generate_and_score_completions

    def scored(inputs):
        return drop_zero_advantage(score(inputs), trainer.accelerator.gather)

    trainer._generate_and_score_completions = scored
