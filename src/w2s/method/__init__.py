"""The paper's data logic as pure functions over records: no model, no disk.

selection  full weak SFT set; Stage I final-answer-consistency selection (weak/icl/hybrid)
fewshot    k-shot in-context prompts from the weak model's outputs
voting     majority vote over samples, answers grouped by equivalence
pairs      Stage II preference pairs (the paper's confidence rule)
metrics    grading, accuracy, pass@k, maj@k, PGR, selection and pair diagnostics
pseudo_labels  Stage III label rules (agreement, majority, relabel) and their diagnostics
rewards    Stage III rewards (TRL reward functions reading the pseudo-label column)
controls   oracle and null controls (gold pairs, gold and random rewards): NOT label-free
registry   the plug-in registries: SELECTION, PAIRS, REWARDS, LABEL_RULES
"""

from w2s.method import controls, fewshot, metrics, pairs, pseudo_labels, rewards, selection, voting  # noqa: F401

__all__ = ["controls", "fewshot", "metrics", "pairs", "pseudo_labels", "rewards", "selection", "voting"]
