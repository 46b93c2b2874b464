"""Backoff: the delay before a retry, a pure function of the attempt number."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

BackoffKind = Literal["fixed", "exponential", "jitter"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before attempt ``n + 1`` after attempt ``n`` failed.

    ``fixed``: always ``delay``; ``exponential``: ``delay * 2**(n-1)``; ``jitter``: a uniform
    draw in ``[0, exponential]`` ("full jitter"). All capped at ``max_delay`` seconds.
    """

    kind: BackoffKind = "exponential"
    delay: float = 2.0
    max_delay: float = 3600.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential", "jitter"):
            raise ValueError(f"unknown backoff kind {self.kind!r}")
        if not (math.isfinite(self.delay) and math.isfinite(self.max_delay)) or min(
                self.delay, self.max_delay) < 0:
            raise ValueError("backoff delays must be finite and >= 0")

    @classmethod
    def fixed(cls, delay: float) -> Backoff:
        """The same delay before every retry."""
        return cls("fixed", delay)

    @classmethod
    def exponential(cls, delay: float, max_delay: float = 3600.0) -> Backoff:
        """``delay``, then twice that, then four times, ... capped at ``max_delay``."""
        return cls("exponential", delay, max_delay)

    @classmethod
    def jitter(cls, delay: float, max_delay: float = 3600.0) -> Backoff:
        """Exponential with full jitter: spreads the retries of a burst of failures."""
        return cls("jitter", delay, max_delay)

    def seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay in seconds after failed attempt number ``attempt`` (1-based)."""
        if self.kind == "fixed":
            return min(self.delay, self.max_delay)
        exponent = min(max(attempt - 1, 0), 62)
        ceiling = min(self.delay * (2.0**exponent), self.max_delay)
        if self.kind == "exponential":
            return ceiling
        return (rng or random).uniform(0.0, ceiling)

    def to_list(self) -> list[object]:
        return [self.kind, self.delay, self.max_delay]

    @classmethod
    def from_list(cls, raw: object) -> Backoff:
        if not isinstance(raw, list) or len(raw) != 3:
            raise ValueError(f"bad backoff {raw!r}")
        kind, delay, max_delay = raw
        return cls(kind, float(delay), float(max_delay))
