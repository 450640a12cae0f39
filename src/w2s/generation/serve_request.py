"""What a completions request may ask, checked before it reaches the model: every field's type
and range (sampling through the one check, `check_sampling`), the served model's name, prompts
that are text, and fields this server does not offer refused by name (not silently ignored).
Each problem is a BadRequest naming the field, with its HTTP status."""

from __future__ import annotations

import json
import math

from w2s.generation.sampling import SamplingConfig

#: what a request may carry; other OpenAI fields are refused unless their value means "off"
SUPPORTED = frozenset({"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "stop", "seed",
                       "user"})
OFF = {"stream": (False, None), "echo": (False, None), "logprobs": (None,), "best_of": (1, None),
       "suffix": (None,), "presence_penalty": (0, None), "frequency_penalty": (0, None), "logit_bias": (None,)}
#: defaults for the request bounds (make_server / `w2s serve` options change them)
DEFAULT_MAX_N = 64
MAX_CHOICES = 1024   # most completions one request may ask for (prompts x n)
MAX_STOP_STRINGS = 16


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


#: Defaults for the request bounds (make_server / `w2s serve` options change them).
DEFAULT_MAX_N = 64
#: Most completions one request may ask for (prompts x n).
MAX_CHOICES = 1024
DEFAULT_MAX_BODY_BYTES = 8 << 20
MAX_STOP_STRINGS = 16
#: Seconds a client may stall while sending a request (or idle on a kept-alive connection).
SOCKET_TIMEOUT = 30.0


def _integer(body: dict, key: str, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON 1e3 arrives as a float
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{key}' must be an integer, got {json.dumps(value)[:40]}")
    return value


def _real(body: dict, key: str, default: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"'{key}' must be a finite number, got {json.dumps(value)[:40]}")
    return float(value)


def parse_completion_request(body: dict, served_name: str, *, context: int | None = None,
                             max_n: int = DEFAULT_MAX_N) -> tuple[list[str], SamplingConfig, int | None]:
    """Validate an OpenAI completions request; returns (prompts, sampling, seed). Every
    malformed or out-of-range field is a BadRequest naming it."""
    unsupported = [k for k in body if k not in SUPPORTED and body[k] not in OFF.get(k, ())]
    if unsupported:
        raise BadRequest(f"unsupported field(s): {', '.join(sorted(unsupported))[:200]} (this server answers "
                         f"{', '.join(sorted(SUPPORTED))}; streaming, logprobs, echo and best_of are not offered)")
    model = body.get("model")
    if model not in (served_name, None):
        raise BadRequest(f"model {str(model)[:100]!r} not found; this server serves {served_name!r}", 404)
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("'prompt' must be a string or a non-empty list of strings")
    for i, p in enumerate(prompts):
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") is valid JSON but no text
            raise BadRequest(f"'prompt' (index {i}) holds a lone UTF-16 surrogate: not text") from None
    stop = body.get("stop") or ()
    stop = [stop] if isinstance(stop, str) else stop
    if (not isinstance(stop, (list, tuple)) or len(stop) > MAX_STOP_STRINGS
            or not all(isinstance(x, str) and x for x in stop)):
        raise BadRequest(f"'stop' must be a non-empty string or a list of at most {MAX_STOP_STRINGS} "
                         "non-empty strings")
    max_tokens, n = _integer(body, "max_tokens", 16), _integer(body, "n", 1)
    if max_tokens < 1 or (context is not None and max_tokens > context):
        limit = f"between 1 and the model's context of {context} tokens" if context else ">= 1"
        raise BadRequest(f"'max_tokens' must be {limit}, got {max_tokens}")
    if not 1 <= n <= max_n:
        raise BadRequest(f"'n' must be between 1 and {max_n}, got {n}")
    if len(prompts) * n > MAX_CHOICES:
        raise BadRequest(f"at most {MAX_CHOICES} completions per request (prompts x n), "
                         f"got {len(prompts)} x {n}")
    top_k = _integer(body, "top_k", 0)
    try:
        sampling = SamplingConfig(max_new_tokens=max_tokens, temperature=_real(body, "temperature", 1.0),
                                  top_p=_real(body, "top_p", 1.0), top_k=max(0, top_k),  # -1 = off
                                  n=n, stop=tuple(stop))
    except BadRequest:
        raise
    except ValueError as e:  # the one sampling check (w2s.generation.sampling.check_sampling)
        field, _, rule = str(e).partition(": ")
        raise BadRequest(f"'{field}' {rule}") from None
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not -2**63 <= seed < 2**64):
        raise BadRequest("'seed' must be a 64-bit integer")
    return prompts, sampling, seed
