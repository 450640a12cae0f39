"""Stage III rewards for label-free RL (GRPO), one config key: `stage3.reward`.

Each registered reward is a plain function with TRL's reward-function signature,

    fn(prompts, completions, pseudo_label, *, task, finished=None, **kwargs) -> list[float]

and names its pseudo-label rule (`fn.pseudo_label_rule`, a `w2s.method.pseudo_labels.RULES`
key): the pipeline computes the labels OFFLINE, before training, into the dataset column
`pseudo_label`. A completion's reward then depends on that completion and its own row only,
never on the other completions in its batch: TRL scores each process's local slice of a group,
so an in-batch vote would see partial groups on several GPUs.

Completions are graded like test answers: cut at the task's stop strings, the task's answer
format and equivalence (`bind` passes the strict task, `task.strict()`, as the evaluation scores). An unfinished completion (cut by the length limit,
`finished[i]` False) earns 0, as a truncated sample never votes.

`bind(name, task, eos_token_ids)` gives the callable handed to TRL (task bound, `finished` read
from the completion's token ids).
"""

from __future__ import annotations

from typing import Callable, Sequence

from w2s.method import pseudo_labels  # noqa: F401  (registers the label rules rewards name)
from w2s.method.registry import REWARDS
from w2s.tasks.base import Task


def _reward(name: str, rule: str):
    """Register a reward under `name`, with the pseudo-label rule whose labels it reads."""
    def deco(fn: Callable) -> Callable:
        fn.pseudo_label_rule = rule
        return REWARDS.register(name)(fn)
    return deco


def label_match(completions: Sequence[str], pseudo_label: Sequence[str], grader: Task,
                finished: Sequence[bool] | None = None) -> list[float]:
    """1.0 where a finished completion's final answer (by `grader`) is equivalent to its row's
    pseudo-label."""
    out = []
    for i, (text, label) in enumerate(zip(completions, pseudo_label, strict=True)):
        if finished is not None and not finished[i]:
            out.append(0.0)
            continue
        answer = grader.extract_answer(grader.clean_response(text))
        out.append(1.0 if answer and label and grader.equivalent(answer, label) else 0.0)
    return out


@_reward("agreement", rule="agreement")
def agreement(prompts, completions, pseudo_label, *, task: Task, finished=None, **kwargs) -> list[float]:
    """Ours: 1 when the completion's final answer equals the question's pseudo-label, an answer
    given by the weak model or by the in-context strong model AND supported by at least
    `stage3.min_support` of the policy's `stage3.samples` samples (`stage3.prefer` picks when both
    qualify); questions without such an answer are left out of training. It is the paper's
    final-answer consistency (Stage I) and its vote confidence (Stage II) turned into an RL
    reward: the method's agreement signal, not the policy's own majority.

    Pseudo-labels: `w2s.method.pseudo_labels.agreement_labels`."""
    return label_match(completions, pseudo_label, task, finished)


@_reward("majority", rule="majority")
def majority(prompts, completions, pseudo_label, *, task: Task, finished=None, **kwargs) -> list[float]:
    """TTRL (Zuo et al., 2025, test-time RL) and SRT (Shafayat et al., 2025, "Can Large Reasoning
    Models Self-Train?"): 1 when the completion's final answer equals the majority answer of the
    policy's own `stage3.samples` samples, kept only when the majority's share is at least
    `stage3.min_confidence` (the confidence floor of SCRL-style variants). Needs no weak model; SRT
    reports it tracks gold-reward RL early and then collapses into confident wrong answers.

    Pseudo-labels: `w2s.method.pseudo_labels.majority_labels`."""
    return label_match(completions, pseudo_label, task, finished)


@_reward("relabel", rule="relabel")
def relabel(prompts, completions, pseudo_label, *, task: Task, finished=None, **kwargs) -> list[float]:
    """Re-labelling (Shi et al., 2025, arXiv 2503.04249): 1 when the completion's final answer
    equals the fine-tuned strong model's confident majority on a question Stage I discarded (the
    weak and in-context answers disagreed); Stage I's kept questions are not trained on again.

    Pseudo-labels: `w2s.method.pseudo_labels.relabel_labels`."""
    return label_match(completions, pseudo_label, task, finished)


# self_certainty (Intuitor) is not here: it needs the policy's logits over each completion,
# which a TRL reward function does not receive (a second forward pass per batch).


def bind(name: str, task: Task, eos_token_ids: Sequence[int] = (), strict: bool = True,
         seed: int | None = None) -> Callable:
    """The reward `name` as TRL calls it: task bound (its strict form unless `strict` is False:
    rewarded answers are the ones the test scores), and a completion counted as finished when it
    ends with an EOS token or contains one of the task's stop strings. `seed` (the run's) reaches
    the reward as a keyword when given (the `random` control's coin)."""
    fn = REWARDS.get(name, "stage3.reward").obj
    eos = set(eos_token_ids)
    task = (task.strict() or task) if strict else task

    def reward(prompts, completions, pseudo_label, completion_ids=None, **kwargs):
        finished = None
        if completion_ids is not None:
            finished = [bool(ids) and ids[-1] in eos or any(s in text for s in task.stop)
                        for ids, text in zip(completion_ids, completions, strict=True)]
        seeded = {"seed": seed} if seed is not None else {}
        return fn(prompts, completions, pseudo_label, task=task, finished=finished, **seeded, **kwargs)

    reward.__name__ = name  # TRL logs rewards/<name>/mean
    return reward
