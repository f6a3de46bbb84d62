"""The generic retry layer: Retry-After first, jittered exponential, caps; never really sleeps."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from fakes import FakeClock

from connector.errors import AuthError, PermanentError, RateLimited, TokenRefused, TransientError
from connector.http.gate import RetryAfterGate
from connector.http.retry import RetryPolicy, call_with_retry, parse_retry_after


class Script:
    """Raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def run(fn, policy, clock, **kwargs):
    return call_with_retry(fn, policy, sleep=clock.sleep, clock=clock, **kwargs)


def test_backoff_doubles_from_base_up_to_the_cap_without_jitter():
    policy = RetryPolicy(base_s=1, cap_s=10, jitter=0)
    rng = random.Random(0)

    assert [policy.backoff(n, rng) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_jitter_only_ever_shortens_the_step_by_at_most_its_fraction():
    policy = RetryPolicy(base_s=4, cap_s=4, jitter=0.25)
    rng = random.Random(1)

    waits = [policy.backoff(3, rng) for _ in range(500)]

    assert all(3.0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) > 100


def test_retry_after_wins_when_longer_than_the_backoff():
    policy = RetryPolicy(base_s=1, cap_s=30, jitter=0)
    rng = random.Random(0)

    assert policy.wait_for(1, RateLimited("slow down", retry_after=45), rng) == 45
    assert policy.wait_for(4, TransientError("503", retry_after=2), rng) == 8
    assert policy.wait_for(1, TransientError("reset"), rng) == 1


def test_five_transient_failures_then_success_returns_the_result():
    clock = FakeClock(50.0)
    fn = Script(*(TransientError("503") for _ in range(5)))

    assert run(fn, RetryPolicy(max_attempts=6, jitter=0), clock) == "ok"
    assert fn.calls == 6
    assert clock.sleeps == [1, 2, 4, 8, 16]


def test_past_the_attempt_cap_the_last_transient_error_is_raised_itself():
    clock = FakeClock(50.0)
    errors = [TransientError(f"503 #{n}") for n in range(1, 5)]
    fn = Script(*errors)

    with pytest.raises(TransientError) as caught:
        run(fn, RetryPolicy(max_attempts=3), clock)

    assert caught.value is errors[2]
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


def test_a_renewed_token_refused_is_retried_and_an_auth_error_only_when_every_attempt_is():
    clock = FakeClock(50.0)
    assert run(Script(TokenRefused("401 again")), RetryPolicy(jitter=0), clock) == "ok"

    refused = Script(*(TokenRefused(f"401 again #{n}") for n in range(1, 4)))
    with pytest.raises(AuthError, match="401 again #3, in every attempt") as caught:
        run(refused, RetryPolicy(max_attempts=3, jitter=0), clock)
    assert isinstance(caught.value.__cause__, TokenRefused)
    assert refused.calls == 3


def test_rate_limited_is_not_retried_before_retry_after():
    clock = FakeClock(50.0)
    fn = Script(RateLimited("429", retry_after=2))

    run(fn, RetryPolicy(base_s=0.1, jitter=1.0), clock, rng=random.Random(3))

    assert clock.sleeps[0] >= 2


def test_stops_when_the_next_wait_would_pass_the_total_time_budget():
    clock = FakeClock(50.0)
    fn = Script(*(TransientError("503") for _ in range(10)))

    with pytest.raises(TransientError):
        run(fn, RetryPolicy(max_attempts=10, max_total_s=20, base_s=4, cap_s=60, jitter=0), clock)

    assert clock.sleeps == [4, 8]  # the next 16 s would end 28 s after the start
    assert fn.calls == 3


def test_time_spent_inside_attempts_counts_against_the_budget():
    clock = FakeClock(50.0)

    def slow_failure() -> str:
        clock.now += 15
        raise TransientError("read timeout")

    with pytest.raises(TransientError):
        run(slow_failure, RetryPolicy(max_attempts=10, max_total_s=40, base_s=1, jitter=0), clock)

    assert clock.sleeps == [1, 2]


def test_permanent_errors_are_never_retried():
    clock = FakeClock(50.0)
    fn = Script(PermanentError("400"))

    with pytest.raises(PermanentError):
        run(fn, RetryPolicy(), clock)

    assert fn.calls == 1
    assert clock.sleeps == []


def test_on_retry_hears_each_attempt_its_wait_and_the_error():
    clock = FakeClock(50.0)
    first, second = TransientError("a"), RateLimited("b", retry_after=9)
    heard: list[tuple[int, float, TransientError]] = []

    run(
        Script(first, second),
        RetryPolicy(jitter=0),
        clock,
        on_retry=lambda n, wait, err: heard.append((n, wait, err)),
    )

    assert heard == [(1, 1, first), (2, 9, second)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_total_s": 0},
        {"base_s": -1},
        {"base_s": 5, "cap_s": 1},
        {"jitter": 1.5},
    ],
)
def test_nonsense_policies_are_refused(kwargs):
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(**kwargs)


NOW = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "server_date", "expected"),
    [
        ("2", None, 2.0),
        (" 120 ", None, 120.0),
        ("0.5", None, 0.5),
        ("-3", None, 0.0),
        ("Wed, 21 Oct 2026 07:28:30 GMT", None, 30.0),
        ("Wed, 21 Oct 2026 07:28:30 GMT", "Wed, 21 Oct 2026 07:28:25 GMT", 5.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", None, 0.0),
        ("soon", None, None),
        ("nan", None, None),
        ("inf", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_retry_after_reads_seconds_or_an_http_date(value, server_date, expected):
    assert parse_retry_after(value, now=NOW, server_date=server_date) == expected


def test_the_policy_observer_hears_every_wait_and_whether_the_server_asked_for_it():
    clock = FakeClock(50.0)
    heard: list[tuple[float, bool]] = []
    policy = RetryPolicy(jitter=0, observer=lambda wait, asked: heard.append((wait, asked)))

    run(Script(TransientError("reset"), RateLimited("429", retry_after=7)), policy, clock)

    assert heard == [(1, False), (7, True)]


def test_the_policy_observer_hears_nothing_when_the_first_attempt_succeeds():
    heard: list[tuple[float, bool]] = []
    policy = RetryPolicy(observer=lambda wait, asked: heard.append((wait, asked)))

    assert run(Script(), policy, FakeClock(0.0)) == "ok"
    assert heard == []


# -- the gate: a Retry-After kept by every request of the client ------------------------------


def test_a_retry_after_on_the_last_attempt_still_holds_the_gate_for_the_next_request():
    clock = FakeClock()
    gate = RetryAfterGate(clock=clock, sleep=clock.sleep)
    policy = RetryPolicy(max_attempts=1, jitter=0)
    with pytest.raises(RateLimited):
        run(Script(RateLimited("429", retry_after=7)), policy, clock, gate=gate)
    assert clock.sleeps == []  # not retried: one attempt only

    assert run(Script(), policy, clock, gate=gate) == "ok"
    assert clock.sleeps == [7]


def test_a_gate_held_past_the_time_budget_fails_the_request_without_sending_it():
    clock = FakeClock()
    gate = RetryAfterGate(clock=clock, sleep=clock.sleep)
    gate.hold(300)
    fn = Script()

    with pytest.raises(RateLimited) as caught:
        run(fn, RetryPolicy(max_total_s=120), clock, gate=gate)

    assert fn.calls == 0
    assert caught.value.retry_after == 300
    assert clock.sleeps == []


def test_a_shorter_hold_never_shortens_a_longer_one():
    clock = FakeClock()
    gate = RetryAfterGate(clock=clock, sleep=clock.sleep)
    gate.hold(10)
    gate.hold(2)
    assert gate.remaining() == 10
    assert gate.wait() == 10
    assert gate.remaining() == 0
