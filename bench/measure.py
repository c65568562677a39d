"""What the benchmark's phases share: the closed-loop driver, percentiles, history sizes, CPU.

A phase runs `n` jobs with at most `concurrency` in flight (a new one starts when one ends, as `C`
customers clicking "Pay" again and again would), and charges each process the CPU it used between
a reading before and one after. History sizes are read from Temporal itself: every event of every
run of the workflow (a booking that continued as new counts all its runs), serialized as the
server stores and sends it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import Client

from bench.engine import CpuMeter

T = TypeVar("T")
Json = dict[str, Any]

#: The marker a local activity leaves in the history (sdk-core), counted as an activity.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- percentiles ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> Json:
    """p50, p95, p99, mean and max of durations given in seconds, in milliseconds."""
    if not seconds:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    ms = [value * 1000 for value in seconds]
    return {
        "count": len(ms),
        "p50": round(percentile(ms, 50), 1),
        "p95": round(percentile(ms, 95), 1),
        "p99": round(percentile(ms, 99), 1),
        "mean": round(sum(ms) / len(ms), 1),
        "max": round(max(ms), 1),
    }


# --- the closed loop -----------------------------------------------------------------------------


async def closed_loop(
    label: str,
    n: int,
    concurrency: int,
    job: Callable[[int], Awaitable[T]],
    progress_seconds: float = 5.0,
) -> tuple[list[T], float]:
    """Run `job(0..n-1)` with at most `concurrency` at once; returns results and wall seconds."""
    gate = asyncio.Semaphore(concurrency)
    done = 0
    started = time.monotonic()

    async def one(index: int) -> T:
        nonlocal done
        async with gate:
            result = await job(index)
        done += 1
        return result

    async def progress() -> None:
        while True:
            await asyncio.sleep(progress_seconds)
            elapsed = time.monotonic() - started
            log(f"  {label}: {done}/{n} done in {elapsed:.0f} s ({done / elapsed:.1f}/s)")

    reporter = asyncio.create_task(progress())
    try:
        results = await asyncio.gather(*(one(index) for index in range(n)))
    finally:
        reporter.cancel()
    return list(results), time.monotonic() - started


# --- CPU of a phase ------------------------------------------------------------------------------


class CpuPhase:
    """CPU seconds each process used while a phase ran (`with CpuPhase(meter) as cpu:`)."""

    def __init__(self, meter: CpuMeter) -> None:
        self.meter = meter
        self._before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def __enter__(self) -> CpuPhase:
        self._before = self.meter.read()
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent = CpuMeter.spent(self._before, self.meter.read())

    def per(self, count: int) -> dict[str, float]:
        """Seconds per unit of work (a booking), by process."""
        return {name: round(value / max(count, 1), 4) for name, value in self.spent.items()}


# --- histories -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryStats:
    """One workflow's history, every run of it: what Temporal stored and replays."""

    events: int
    bytes: int
    activities: int
    workflow_tasks: int
    runs: int
    #: Event type (e.g. `ACTIVITY_TASK_SCHEDULED`) -> (count, serialized bytes).
    by_event_type: dict[str, tuple[int, int]]
    #: Activity name -> how many were scheduled.
    by_activity: dict[str, int]

    @staticmethod
    def of(events: Sequence[HistoryEvent], runs: int = 1) -> HistoryStats:
        by_type: dict[str, tuple[int, int]] = {}
        by_activity: Counter[str] = Counter()
        for event in events:
            name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            count, size = by_type.get(name, (0, 0))
            by_type[name] = (count + 1, size + event.ByteSize())
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                by_activity[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
            elif (
                event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
                and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
            ):
                by_activity["(local activity)"] += 1
        return HistoryStats(
            events=len(events),
            bytes=History(events=list(events)).ByteSize(),
            activities=sum(by_activity.values()),
            workflow_tasks=by_type.get("WORKFLOW_TASK_COMPLETED", (0, 0))[0],
            runs=runs,
            by_event_type=by_type,
            by_activity=dict(by_activity),
        )


async def history_stats(client: Client, workflow_id: str) -> HistoryStats:
    """The history of `workflow_id`'s latest run and of every run it continued from."""
    events: list[HistoryEvent] = []
    runs = 0
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs += 1
        events[:0] = history.events
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
        if run_id is None:
            return HistoryStats.of(events, runs)


async def mean_history(
    client: Client, workflow_ids: Iterable[str], concurrency: int = 8
) -> Json | None:
    """Per-workflow means of `HistoryStats` over `workflow_ids` (None when there are none)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str) -> HistoryStats:
        async with gate:
            return await history_stats(client, workflow_id)

    stats = await asyncio.gather(*(one(workflow_id) for workflow_id in workflow_ids))
    if not stats:
        return None
    count = len(stats)

    def mean(values: Iterable[float]) -> float:
        return round(sum(values) / count, 1)

    means: Json = {
        name: mean(getattr(each, name) for each in stats)
        for name in ("events", "bytes", "activities", "workflow_tasks", "runs")
    }
    types = sorted({name for each in stats for name in each.by_event_type})
    means["by_event_type"] = {
        name: {
            "count": mean(each.by_event_type.get(name, (0, 0))[0] for each in stats),
            "bytes": mean(each.by_event_type.get(name, (0, 0))[1] for each in stats),
        }
        for name in types
    }
    names = sorted({name for each in stats for name in each.by_activity})
    means["by_activity"] = {
        name: mean(each.by_activity.get(name, 0) for each in stats) for name in names
    }
    means["max_events"] = max(each.events for each in stats)
    means["max_bytes"] = max(each.bytes for each in stats)
    means["workflows"] = len(stats)
    return means


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator rounded to 3 places; None when either is missing or zero."""
    if numerator is None or denominator in (None, 0) or math.isnan(numerator):
        return None
    assert denominator is not None
    return round(numerator / denominator, 3)


def throughput(completions: int, seconds: float) -> float:
    return round(completions / seconds, 2) if seconds > 0 else math.nan


def span(intervals: Iterable[tuple[float, float]]) -> float:
    """From the first start to the last end of (start, end) pairs, in the same clock."""
    pairs = list(intervals)
    if not pairs:
        return 0.0
    return max(end for _, end in pairs) - min(start for start, _ in pairs)


def sum_of(values: Mapping[str, float], names: Iterable[str]) -> float:
    return round(sum(values[name] for name in names), 4)
