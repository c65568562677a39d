"""The token buckets of the public endpoints, on a clock the test moves (no sleeps)."""

from __future__ import annotations

from api.rate_limits import Rate, RateLimiter, retry_after

CLIENT_RATE = Rate(2, 4)
BOOKING_RATE = Rate(1, 2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(
    clock: FakeClock,
    per_client: Rate = CLIENT_RATE,
    per_booking: Rate = BOOKING_RATE,
    max_keys: int = 100,
) -> RateLimiter:
    return RateLimiter(per_client, per_booking, clock=clock, max_keys=max_keys)


def test_a_burst_beyond_the_limit_waits_and_the_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    limits = limiter(clock)
    assert [limits.admit("10.0.0.1") for _ in range(4)] == [0.0] * 4
    assert limits.admit("10.0.0.1") == 0.5  # 2 tokens a second: half a second to the next
    clock.advance(0.5)
    assert limits.admit("10.0.0.1") == 0.0
    assert limits.admit("10.0.0.1") == 0.5
    clock.advance(60)  # refills up to the burst, not beyond
    assert [limits.admit("10.0.0.1") for _ in range(5)] == [0.0] * 4 + [0.5]


def test_clients_and_bookings_have_their_own_buckets() -> None:
    clock = FakeClock()
    limits = limiter(clock)
    assert [limits.admit("10.0.0.1", "bk_a") for _ in range(2)] == [0.0, 0.0]
    assert limits.admit("10.0.0.1", "bk_a") == 1.0  # the booking's bucket is empty
    assert limits.admit("10.0.0.2", "bk_a") == 1.0  # whoever asks
    assert limits.admit("10.0.0.1", "bk_b") == 0.0  # another booking is unaffected
    assert limits.admit("10.0.0.1") == 0.0
    assert limits.admit("10.0.0.1") == 0.5  # now the client's own bucket is empty
    assert limits.admit("10.0.0.2") == 0.0  # another client is unaffected


def test_a_refused_request_takes_no_token_from_any_bucket() -> None:
    clock = FakeClock()
    limits = limiter(clock, per_client=Rate(1, 3), per_booking=Rate(1, 1))
    assert limits.admit("10.0.0.1", "bk_a") == 0.0
    for _ in range(5):
        assert limits.admit("10.0.0.1", "bk_a") == 1.0
    # Only the first request was charged to the client: two tokens are left for other bookings.
    assert [limits.admit("10.0.0.1", f"bk_{n}") for n in range(3)] == [0.0, 0.0, 1.0]


def test_a_rate_of_zero_is_no_limit() -> None:
    clock = FakeClock()
    limits = limiter(clock, per_client=Rate(0, 60), per_booking=Rate(1, 1))
    assert all(limits.admit("10.0.0.1") == 0.0 for _ in range(1000))
    assert limits.admit("10.0.0.1", "bk_a") == 0.0
    assert limits.admit("10.0.0.1", "bk_a") == 1.0


def test_at_most_max_keys_buckets_are_kept_least_recently_used_out_first() -> None:
    clock = FakeClock()
    limits = limiter(clock, per_client=Rate(1, 1), max_keys=3)
    for n in range(10):
        limits.admit(f"10.0.0.{n}", f"bk_{n}")
    assert len(limits.clients) == 3 and len(limits.bookings) == 3
    assert limits.admit("10.0.0.9") == 1.0  # recent: still known, still empty
    assert limits.admit("10.0.0.0") == 0.0  # dropped long ago: starts full again


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert [retry_after(wait) for wait in (0.01, 0.5, 1.0, 1.2, 7.9)] == ["1", "1", "1", "2", "8"]
