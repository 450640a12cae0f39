"""A preallocated KV cache for the `hf` decode loop (transformers' cache API, 5.x).

transformers' DynamicCache grows every layer's keys and values by concatenation, which copies
the whole cache at every step, and drops finished rows by copying it again. `SlotCache` holds
each layer's keys and values in tensors sized for the whole decode (prompt width + new
tokens): a step writes one column, and the tensors attention reads are views of exactly the
tokens so far, so it computes the same numbers as DynamicCache.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def plain_attention(model) -> bool:
    """Whether transformers gives this model plain (full-attention, growing) cache layers, which
    `SlotCache` replaces; sliding-window and linear-attention layers keep transformers' cache."""
    probe = DynamicCache(config=model.config)
    if not probe.layers:
        return probe.layer_class_to_replicate is DynamicLayer
    return all(type(layer) is DynamicLayer for layer in probe.layers)


class SlotLayer(DynamicLayer):
    """One layer's keys and values, preallocated: (rows, heads, capacity, head_dim). A step
    writes its column at `length`; `keys`/`values` are views of the first `rows` rows and
    `length` columns."""

    def __init__(self, keys, values, rows: int, capacity: int, length: int):
        super().__init__()
        self.k_buf = keys.new_empty((rows, keys.shape[1], capacity, keys.shape[3]))
        self.v_buf = values.new_empty((rows, values.shape[1], capacity, values.shape[3]))
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.rows, self.length = rows, length
        self._views()

    def _views(self) -> None:
        self.keys = self.k_buf[:self.rows, :, :self.length]
        self.values = self.v_buf[:self.rows, :, :self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        """Write the new tokens' keys and values after the cached ones; returns all of them."""
        n, q = self.length, key_states.shape[-2]
        if n + q > self.k_buf.shape[2]:
            raise RuntimeError(f"SlotCache is full: {n} + {q} tokens > capacity {self.k_buf.shape[2]}")
        self.k_buf[:self.rows, :, n:n + q].copy_(key_states)
        self.v_buf[:self.rows, :, n:n + q].copy_(value_states)
        self.length = n + q
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def move(self, dst, src, rows: int) -> None:
        """Rows `src` are copied to rows `dst` (used columns only); then the first `rows` rows
        are the batch."""
        if len(dst):
            n = self.length
            self.k_buf[dst, :, :n] = self.k_buf[src, :, :n]
            self.v_buf[dst, :, :n] = self.v_buf[src, :, :n]
        self.rows = rows
        self._views()


class SlotCache(DynamicCache):
    """A preallocated KV cache for a batch of `rows` sequences of up to `capacity` tokens."""

    @classmethod
    def like(cls, prefilled: DynamicCache, rows: int, capacity: int) -> "SlotCache":
        """An empty cache shaped like a prefilled one (same width), `rows` rows; fill with `put`."""
        cache = cls()
        cache.layers = [SlotLayer(layer.keys, layer.values, rows, capacity, layer.keys.shape[-2])
                        for layer in prefilled.layers]
        return cache

    def batch_select_indices(self, indices) -> None:
        """Keep rows `indices` (row i becomes row indices[i]) copying only the rows that move."""
        moved = (indices != torch.arange(len(indices), device=indices.device)).nonzero().squeeze(1)
        src = indices[moved]
        for layer in self.layers:
            layer.move(moved, src, len(indices))

    def put(self, rows, prefilled: DynamicCache, source) -> None:
        """Rows `rows` (a device tensor) get the prefilled cache's rows `source`."""
        for layer, part in zip(self.layers, prefilled.layers):
            width = part.keys.shape[-2]
            layer.k_buf[rows, :, :width] = part.keys[source]
            layer.v_buf[rows, :, :width] = part.values[source]
