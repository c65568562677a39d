"""Rate limits of the public checkout endpoints: in-process token buckets per client and booking.

A request to `/bookings...` takes one token from its client's bucket (keyed by the peer address
uvicorn reports; `python -m api` does not trust `X-Forwarded-For`, so behind a proxy all clients
share the proxy's bucket until uvicorn is told to trust it) and, when the path names a
booking, one from that booking's bucket. When either is empty the answer is 429 in the one error
shape with `Retry-After` (whole seconds until a token is back), and neither bucket is charged.
Webhooks, staff and health endpoints are not limited here.

Buckets live in this process only (one API process = one set of limits) and at most `max_keys` of
each kind are kept, least recently used first out: a flood of made-up ids or addresses costs
bounded memory, and a dropped key merely starts again with a full bucket.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from passage.settings import Settings

Clock = Callable[[], float]


@dataclass(frozen=True)
class Rate:
    """`per_second` tokens come back each second, up to `burst`; `per_second <= 0` is no limit."""

    per_second: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0 or self.burst <= 0


@dataclass
class TokenBucket:
    """A bucket that starts full; `wait(now)` is 0 when a token is there, else seconds to wait."""

    rate: Rate
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.rate.burst), self.tokens + elapsed * self.rate.per_second)
        self.updated = max(self.updated, now)

    def wait(self, now: float) -> float:
        self.refill(now)
        # A hair under 1 (float refill) counts as a whole token.
        return 0.0 if self.tokens >= 1 - 1e-9 else (1 - self.tokens) / self.rate.per_second

    def take(self) -> None:
        self.tokens -= 1


@dataclass
class BucketSet:
    """Buckets of one rate by key, at most `max_keys` of them (least recently used out first)."""

    rate: Rate
    max_keys: int
    _buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def get(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, float(self.rate.burst), now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """Per-client and per-booking limits; `clock` is monotonic seconds (tests pass their own)."""

    def __init__(
        self,
        per_client: Rate,
        per_booking: Rate,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._clock = clock
        self.clients = BucketSet(per_client, max_keys)
        self.bookings = BucketSet(per_booking, max_keys)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = time.monotonic) -> RateLimiter:
        return cls(
            Rate(settings.rate_limit_client_per_second, settings.rate_limit_client_burst),
            Rate(settings.rate_limit_booking_per_second, settings.rate_limit_booking_burst),
            clock=clock,
            max_keys=settings.rate_limit_max_keys,
        )

    def admit(self, client: str, booking_id: str | None = None) -> float:
        """Take a token from each bucket that applies and return 0, or return the seconds to wait.

        All or nothing: a refused request takes no token from any bucket.
        """
        now = self._clock()
        buckets = []
        if not self.clients.rate.unlimited:
            buckets.append(self.clients.get(client, now))
        if booking_id is not None and not self.bookings.rate.unlimited:
            buckets.append(self.bookings.get(booking_id, now))
        wait = max((bucket.wait(now) for bucket in buckets), default=0.0)
        if wait > 0:
            return wait
        for bucket in buckets:
            bucket.take()
        return 0.0


def retry_after(wait: float) -> str:
    """`Retry-After` in whole seconds, never 0 (a client told 0 retries at once and fails again)."""
    return str(max(1, math.ceil(wait)))
