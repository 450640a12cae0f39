"""YAML for run configs and `--set` values, bounded: safe tags only, nesting depth and the size
an alias expands to are limited BEFORE anything is built, so a hostile file is one clear error
and never a memory blow-up or a RecursionError."""

from __future__ import annotations

import yaml

from w2s.pipeline.config_errors import ConfigError

MAX_DEPTH = 64            # a run config is a few levels deep
MAX_NODES = 100_000       # scalars + collections, counting every alias expansion
MAX_BYTES = 4 << 20


def load_yaml(text: str, where: str):
    """Parse `text` (a config file, or a `--set` value) into plain Python values."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_BYTES >> 20} MiB; a run config is a few KB")
    try:
        _check_depth(text, where)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _check_expanded_size(node, where)
        return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 (SafeLoader: plain values only)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML ({' '.join(str(e).split())})") from None


def _check_depth(text: str, where: str) -> None:
    """The tokenizer is iterative; the composer recurses per nesting level."""
    depth = 0
    opens = (yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken, yaml.BlockMappingStartToken,
             yaml.BlockSequenceStartToken)
    closes = (yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken, yaml.BlockEndToken)
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, opens):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(token, closes):
            depth -= 1


def _check_expanded_size(root: yaml.Node, where: str) -> None:
    """Count nodes as they would be after alias expansion (a shared node counts each time it is
    reached), stopping at the limit: an alias bomb is refused in O(limit) steps."""
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"{where}: expands to more than {MAX_NODES} values (YAML aliases?); "
                              "a run config is a few hundred")
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
