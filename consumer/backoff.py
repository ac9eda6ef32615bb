"""How long to wait before trying again: the one exponential backoff of delivery, checkpoints and dead letters."""

from __future__ import annotations

import random

# 2**30 times any base is past every cap: the exponent stops there so that a long outage never overflows a float.
_MAX_DOUBLINGS = 30


def exponential(attempt: int, base_seconds: float, cap_seconds: float) -> float:
    """`base_seconds` doubled `attempt` times (attempt 0: the base), at most `cap_seconds`."""
    return min(cap_seconds, base_seconds * 2.0 ** min(attempt, _MAX_DOUBLINGS))


def full_jitter(attempt: int, base_seconds: float, cap_seconds: float) -> float:
    """A random wait up to `exponential`: retries of many shards against one destination spread out instead of
    arriving together (AWS architecture blog, "Exponential Backoff And Jitter")."""
    return random.uniform(0, exponential(attempt, base_seconds, cap_seconds))  # noqa: S311 - not for security
