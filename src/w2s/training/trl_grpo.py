"""TRL's GRPOTrainer beyond its config: what w2s changes inside a built trainer. Version-specific,
as `trl_compat` is (trl>=1.0,<2): it relies on `_generate_and_score_completions` returning the
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
