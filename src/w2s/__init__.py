"""w2s: weak-to-strong reasoning (Yang, Ma, Liu, 2024) on real models and a toy world.

`import w2s` stays light: torch, transformers, TRL and vLLM are imported only where used.
"""

__version__ = "0.1.0"
