"""`make bench`: Passage, the bare-Temporal floor and a non-durable peer, measured in one run.

Starts its own engine (the `make up` launcher on free ports, a temporary state directory,
`PASSAGE_ENV=development`, bench/engine.py), clears every simulator fault (no latency) and puts the
simulator in load mode (`capacity_scale`), starts the floor's worker as a process of its own on the
same Temporal dev server, warms all three up, then, for each concurrency C:

- Passage: N bookings of 3 items (a flight, a hotel, an optional activity) over the HTTP API, each
  customer polling its booking; during them one signed webhook per booking is delivered (a fresh
  `payment_intent.succeeded` for a confirmed warm-up booking, one in five a redelivery of an event
  already sent); then the histories of the bookings are read from Temporal;
- the floor (bench/floor_workflow.py): the same durable shape with no-op activities;
- the peer (bench/peer.py): the same saga in-process through Passage's own adapters.

Both emulators are emptied before each phase (bench.run.Bench.fresh_emulators). Then the growth
runs (itineraries of 1, 3, 6, 12 items, one at a time) and two open-bookings runs: M bookings left
waiting for the customer to accept a changed price (a timer: the worker's memory per open booking)
and K paid with the 3-D Secure card left waiting for authentication (each re-reads its
PaymentIntent after 10 s, then less and less often up to once a minute: what waiting costs); each
time the worker's memory and CPU are read while they wait, then every one is cancelled. CPU
seconds are read from /proc before and after each phase.

Prints one table, writes the figures and every Passage/floor and Passage/peer ratio (computed from
figures of this run) to bench/results.json, and plots throughput and latency against concurrency
for the three systems to docs/bench.png.

    python -m bench.run [--bookings N] [--concurrency 1,10,50] [--open-bookings M]
                        [--open-3ds K] [--growth 1,3,6,12] [--results PATH] [--plot PATH]

Environment: BENCH_BOOKINGS, BENCH_CONCURRENCY, BENCH_WARMUP, BENCH_OPEN_BOOKINGS, BENCH_OPEN_3DS,
BENCH_OPEN_IDLE_SECONDS, BENCH_GROWTH, BENCH_GROWTH_BOOKINGS, BENCH_POLL_INTERVAL,
BENCH_CAPACITY_SCALE, BENCH_KEEP (keep the state directory and print where it is).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionCount
from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_fixed

from activities.adapters.http_supplier import HttpSupplierClient
from api.schemas.fields import MAX_ITEMS as API_ITEM_LIMIT
from bench import report
from bench.engine import CARD_3DS, CARD_OK, STRIPE_KEY, CpuMeter, Engine, payment_methods, rss_bytes
from bench.floor import FloorWorker, run_floor
from bench.measure import (
    CpuPhase,
    closed_loop,
    latency_ms,
    log,
    mean_history,
    ratio,
    span,
    sum_of,
    throughput,
)
from bench.passage_load import (
    SETTLED,
    BookingRun,
    DirectBookings,
    Item,
    PassageCustomers,
)
from bench.peer import PeerFailed, PeerItem, PeerSaga
from passage.settings import Environment, Settings
from passage.temporal import connect
from worker import make_stripe_gateway
from workflows.model import Money

Json = dict[str, Any]

#: The 3-item shape: a flight, a hotel and an optional activity with room for a long run.
SHAPE = (("fl-aurora-cdg-jfk", False), ("ht-meridian-par-2n", False), ("ac-fjord-kayak", True))
#: Passage's processes, by the launcher's names, and what the table calls the server.
PASSAGE_PROCESSES = ("worker", "temporal", "api", "simulator", "stripe")
#: The share of webhook deliveries that repeat an event already delivered.
REDELIVERY_SHARE = 0.2
#: After a phase's last booking, the trailing work (ledger writes, webhooks) gets this long.
SETTLE_SECONDS = 1.0
OPEN_CONCURRENCY = 50
#: The open bookings are polled until they wait, less often than a checkout page would.
OPEN_POLL_SECONDS = 2.0
REPO_ROOT = Path(__file__).resolve().parents[1]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.replace(" ", "").split(",") if part]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bookings", "-n", type=int, default=int(env("BENCH_BOOKINGS", "200")),
        help="bookings per concurrency, for each of Passage, the floor and the peer",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", "-c", type=_ints, default=_ints(env("BENCH_CONCURRENCY", "1,10,50"))
    )
    parser.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", "20")))
    parser.add_argument(
        "--open-bookings", "-m", type=int, default=int(env("BENCH_OPEN_BOOKINGS", "1000"))
    )
    parser.add_argument(
        "--open-3ds", type=int, default=int(env("BENCH_OPEN_3DS", "100")),
        help="bookings left waiting for 3-D Secure (each polls its PaymentIntent now and then)",
    )  # fmt: skip
    parser.add_argument(
        "--open-idle-seconds", type=float, default=float(env("BENCH_OPEN_IDLE_SECONDS", "20"))
    )
    parser.add_argument("--growth", type=_ints, default=_ints(env("BENCH_GROWTH", "1,3,6,12")))
    parser.add_argument(
        "--growth-bookings", type=int, default=int(env("BENCH_GROWTH_BOOKINGS", "10"))
    )
    parser.add_argument(
        "--poll-interval", type=float, default=float(env("BENCH_POLL_INTERVAL", "0.3")),
        help="seconds between a customer's GET /bookings/{id} (with --follow poll)",
    )  # fmt: skip
    parser.add_argument(
        "--follow", choices=("stream", "poll"), default=env("BENCH_FOLLOW", "stream"),
        help="how a customer follows its booking: the event stream, as the reference checkout "
        "does, or polling GET /bookings/{id}",
    )  # fmt: skip
    parser.add_argument(
        "--capacity-scale", type=int, default=int(env("BENCH_CAPACITY_SCALE", "2000"))
    )
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results.json")
    parser.add_argument("--plot", type=Path, default=REPO_ROOT / "docs" / "bench.png")
    parser.add_argument("--keep", action="store_true", default=bool(env("BENCH_KEEP")))
    args = parser.parse_args(argv)
    if not args.concurrency or min(args.concurrency) < 1 or args.bookings < 1:
        parser.error("--bookings and every --concurrency must be at least 1")
    return args


@dataclass
class Bench:
    """Everything a phase needs: the engine, its clients, the catalogue and the systems."""

    args: argparse.Namespace
    engine: Engine
    floor_worker: FloorWorker
    temporal: Client
    customers: PassageCustomers
    direct: DirectBookings
    peer: PeerSaga
    sim: httpx.AsyncClient
    stripe: httpx.AsyncClient
    cards: dict[str, str]
    prices: dict[str, Json]
    offer_order: list[str]
    webhook_targets: list[tuple[str, str]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(20261201))

    def items(self, count: int) -> list[Item]:
        """An itinerary of `count` items: the 3-item shape first, then the rest of the catalogue."""
        shape = [offer for offer, _ in SHAPE]
        order = shape + [offer for offer in self.offer_order if offer not in shape]
        optional = dict(SHAPE)
        picked = [order[index % len(order)] for index in range(count)]
        return [
            (offer, self.prices[offer], optional.get(offer, offer.startswith("ac-")))
            for offer in picked
        ]

    def passage_meter(self) -> CpuMeter:
        children = self.engine.children()
        pids = {name: children[name] for name in PASSAGE_PROCESSES}
        return CpuMeter({**pids, "load_generator": os.getpid()})

    async def fresh_emulators(self) -> None:
        """A fresh simulator inventory in load mode and an empty Stripe emulator.

        Both emulators keep their whole state in one file rewritten on every change (`make up`
        survives restarts that way), so each write costs in proportion to everything they hold:
        emptied before each phase, they cost the same in the last phase as in the first.
        """
        response = await self.sim.post(
            "/_sim/config", json={"capacity_scale": self.args.capacity_scale}
        )
        response.raise_for_status()
        (await self.stripe.delete("/_config/data")).raise_for_status()
        self.cards = await payment_methods(self.stripe, (CARD_OK, CARD_3DS))


# --- Passage -------------------------------------------------------------------------------------


async def passage_phase(bench: Bench, concurrency: int, n: int, tag: str) -> Json:
    await bench.fresh_emulators()
    card = bench.cards[CARD_OK]
    sent: list[str] = []
    webhooks: list[tuple[int, float, str]] = []

    async def deliver_webhook() -> None:
        if not bench.webhook_targets:
            return
        booking_id, intent_id = bench.rng.choice(bench.webhook_targets)
        again = sent and bench.rng.random() < REDELIVERY_SHARE
        event_id = bench.rng.choice(sent) if again else None
        event_id, status, seconds, outcome = await bench.customers.webhook(
            booking_id, intent_id, event_id
        )
        sent.append(event_id)
        webhooks.append((status, seconds, outcome))

    async def one(index: int) -> BookingRun:
        run = await bench.customers.create(f"{tag}-{index}", bench.items(3), card)
        await asyncio.gather(bench.customers.wait(run), deliver_webhook())
        return run

    with CpuPhase(bench.passage_meter()) as cpu:
        runs, wall = await closed_loop(f"Passage C={concurrency}", n, concurrency, one)
        await asyncio.sleep(SETTLE_SECONDS)
    return await passage_figures(bench, runs, wall, cpu, webhooks)


async def passage_figures(
    bench: Bench,
    runs: list[BookingRun],
    wall: float,
    cpu: CpuPhase | None,
    webhooks: list[tuple[int, float, str]] | None = None,
) -> Json:
    confirmed = [run for run in runs if run.status == "CONFIRMED" and run.latency_seconds]
    engine_span = span(
        (run.created_at.timestamp(), run.confirmed_at.timestamp())
        for run in confirmed
        if run.created_at and run.confirmed_at
    )
    log(f"  reading {len(confirmed)} booking histories from Temporal")
    history = await mean_history(bench.temporal, [run.workflow_id for run in confirmed])
    gets = [seconds for run in runs for seconds in run.get_seconds]
    figures: Json = {
        "bookings": len(runs),
        "confirmed": len(confirmed),
        "not_confirmed": dict(
            Counter(run.status or "not started" for run in runs if run not in confirmed)
        ),
        "problems": [run.problem for run in runs if run.problem][:5],
        "wall_seconds": round(wall, 2),
        "span_seconds": round(engine_span, 3),
        "throughput_per_s": throughput(len(confirmed), engine_span),
        "latency_ms": latency_ms([run.latency_seconds for run in confirmed if run.latency_seconds]),
        "post_ms": latency_ms([run.post_seconds for run in runs if run.post_seconds is not None]),
        "get_ms": latency_ms(gets),
        # The page's first read, right after the POST: the one the API's first ledger row serves.
        "first_get_ms": latency_ms([run.get_seconds[0] for run in runs if run.get_seconds]),
        "gets_per_booking": round(len(gets) / max(len(runs), 1), 1),
        "history": history,
    }
    if webhooks is not None:
        figures["webhook_ms"] = latency_ms([seconds for _, seconds, _ in webhooks])
        figures["webhook_answers"] = dict(
            Counter(f"{status} {outcome}" for status, _, outcome in webhooks)
        )
    if cpu is not None:
        per = cpu.per(len(confirmed))
        figures["cpu_seconds"] = {name: round(value, 2) for name, value in cpu.spent.items()}
        figures["cpu_seconds_per_booking"] = per
        figures["cpu_seconds_per_booking"]["engine"] = sum_of(per, ("worker", "temporal", "api"))
    return figures


# --- the floor and the peer ----------------------------------------------------------------------


async def floor_phase(bench: Bench, concurrency: int, n: int, tag: str) -> Json:
    meter = CpuMeter(
        {
            "worker": bench.floor_worker.pid,
            "temporal": bench.engine.children()["temporal"],
            "load_generator": os.getpid(),
        }
    )
    task_queue = bench.floor_worker.task_queue
    with CpuPhase(meter) as cpu:
        runs, wall = await run_floor(bench.temporal, task_queue, tag, n, concurrency)
        await asyncio.sleep(SETTLE_SECONDS)
    run_span = span((run.started, run.finished) for run in runs)
    log(f"  reading {len(runs)} floor histories from Temporal")
    per = cpu.per(len(runs))
    per["engine"] = sum_of(per, ("worker", "temporal"))
    return {
        "bookings": len(runs),
        "confirmed": sum(1 for run in runs if run.confirmed == 3),
        "wall_seconds": round(wall, 2),
        "span_seconds": round(run_span, 3),
        "throughput_per_s": throughput(len(runs), run_span),
        "latency_ms": latency_ms([run.seconds for run in runs]),
        "history": await mean_history(bench.temporal, [run.workflow_id for run in runs]),
        "cpu_seconds": {name: round(value, 2) for name, value in cpu.spent.items()},
        "cpu_seconds_per_booking": per,
    }


async def peer_phase(bench: Bench, concurrency: int, n: int, tag: str) -> Json:
    await bench.fresh_emulators()
    children = bench.engine.children()
    meter = CpuMeter(
        {"peer": os.getpid(), "simulator": children["simulator"], "stripe": children["stripe"]}
    )
    card = bench.cards[CARD_OK]
    failures: Counter[str] = Counter()

    async def one(index: int) -> tuple[float, float] | None:
        items = [
            PeerItem(f"it_{position}", offer, Money(price["amount"], price["currency"]), optional)
            for position, (offer, price, optional) in enumerate(bench.items(3), start=1)
        ]
        started = time.monotonic()
        try:
            await bench.peer.book(f"peer_{tag}_{index}", items, card, f"cref_{tag}")
        except PeerFailed as failure:
            failures[str(failure)[:80]] += 1
            return None
        return started, time.monotonic()

    with CpuPhase(meter) as cpu:
        results, wall = await closed_loop(f"peer C={concurrency}", n, concurrency, one)
    done = [result for result in results if result is not None]
    run_span = span(done)
    return {
        "bookings": len(results),
        "confirmed": len(done),
        "failed": dict(failures),
        "wall_seconds": round(wall, 2),
        "span_seconds": round(run_span, 3),
        "throughput_per_s": throughput(len(done), run_span),
        "latency_ms": latency_ms([end - start for start, end in done]),
        "cpu_seconds": {name: round(value, 2) for name, value in cpu.spent.items()},
        "cpu_seconds_per_booking": cpu.per(len(done)),
    }


# --- growth and open bookings --------------------------------------------------------------------


async def growth_phase(bench: Bench, size: int, n: int) -> Json:
    await bench.fresh_emulators()
    via_api = size <= API_ITEM_LIMIT
    card = bench.cards[CARD_OK]

    async def one(index: int) -> BookingRun:
        tag = f"growth{size}-{index}"
        if via_api:
            return await bench.customers.book(tag, bench.items(size), card)
        return await bench.direct.book(tag, bench.items(size), card)

    runs, wall = await closed_loop(f"growth {size} items", n, 1, one)
    figures = await passage_figures(bench, runs, wall, None)
    figures["items"] = size
    events = (figures["history"] or {}).get("events")
    figures["history_events_per_item"] = None if events is None else round(events / size, 1)
    figures["via"] = "api" if via_api else "temporal (over the API's item limit)"
    return figures


@dataclass(frozen=True)
class Wait:
    """How a booking is left open: what it waits for and how it is made to."""

    name: str
    status: str
    card: str
    #: Minor units taken off the first item's shown price: the quote then differs from it.
    price_offset: int = 0


#: Waiting for the customer to accept a changed price: a timer, nothing polled.
PRICE_WAIT = Wait("price acceptance", "AWAITING_PRICE_ACCEPTANCE", CARD_OK, price_offset=100)
#: Waiting for 3-D Secure: holds and an authorization in place, the PaymentIntent re-read every
#: 10 s (workflows/booking.py PAYMENT_POLL_SECONDS) until the customer authenticates.
PAYMENT_WAIT = Wait("3-D Secure", "AWAITING_PAYMENT_ACTION", CARD_3DS)


async def visible_count(client: Client, query: str, expected: int) -> WorkflowExecutionCount:
    """Temporal's count of `query`, re-read for a few seconds while it is below `expected`.

    Visibility is eventually consistent: a customer may see a booking waiting (the ledger) a
    moment before its search attribute is counted, most of all on a loaded machine.
    """
    retrying = AsyncRetrying(
        retry=retry_if_result(lambda count: count.count < expected),
        wait=wait_fixed(0.5),
        stop=stop_after_delay(15),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    count: WorkflowExecutionCount = await retrying(client.count_workflows, query)
    return count


async def open_phase(bench: Bench, m: int, wait: Wait) -> Json:
    """M bookings left waiting: the worker's memory, what waiting costs, then all cancelled."""
    await bench.fresh_emulators()
    worker = bench.engine.children()["worker"]
    rss_before = rss_bytes(worker)
    card = bench.cards[wait.card]
    items = bench.items(3)
    offer, price, optional = items[0]
    items[0] = (offer, {**price, "amount": price["amount"] - wait.price_offset}, optional)

    def waiting(view: Json) -> bool:
        return view["status"] == wait.status or view["status"] in SETTLED

    async def one(index: int) -> BookingRun:
        run = await bench.customers.create(f"open-{index}", items, card)
        await bench.customers.wait(run, waiting, interval=OPEN_POLL_SECONDS)
        return run

    label = f"{m} bookings left waiting for {wait.name}"
    runs, submit_wall = await closed_loop(label, m, OPEN_CONCURRENCY, one)
    open_runs = [run for run in runs if run.status == wait.status]
    # Counted by Temporal when the memory is read: a wait may have timed out meanwhile.
    still_open = await visible_count(
        bench.temporal, f'BookingStatus="{wait.status}"', len(open_runs)
    )
    rss_open = rss_bytes(worker)
    idle_seconds = bench.args.open_idle_seconds
    log(f"  {still_open.count} bookings wait for {wait.name}; {idle_seconds:.0f} s of waiting")
    with CpuPhase(bench.passage_meter()) as idle:
        await asyncio.sleep(idle_seconds)
    rss_idle = rss_bytes(worker)
    idle_rate = {name: round(value / idle_seconds, 3) for name, value in idle.spent.items()}

    async def cancel(index: int) -> tuple[int, float, str]:
        return await bench.customers.cancel(open_runs[index])

    cancels, cancel_wall = await closed_loop("cancels", len(open_runs), OPEN_CONCURRENCY, cancel)
    rss_after = rss_bytes(worker)
    mib = 1024 * 1024
    return {
        "waiting_for": wait.name,
        "bookings": m,
        "waiting": len(open_runs),
        "waiting_when_measured": still_open.count,
        "not_waiting": dict(
            Counter(run.status or "not started" for run in runs if run not in open_runs)
        ),
        "problems": [run.problem for run in runs if run.problem][:5],
        "submit_seconds": round(submit_wall, 1),
        "worker_rss_mib_before": round(rss_before / mib, 1),
        "worker_rss_mib_open": round(rss_open / mib, 1),
        "worker_rss_mib_open_after_idle": round(rss_idle / mib, 1),
        "worker_rss_mib_after_cancel": round(rss_after / mib, 1),
        "worker_rss_kib_per_open_booking": round(
            (rss_idle - rss_before) / 1024 / max(still_open.count, 1), 1
        ),
        "idle_seconds": idle_seconds,
        "idle_cpu_seconds_per_second": idle_rate,
        "idle_cpu_ms_per_second_per_open_booking": {
            name: round(1000 * value / max(still_open.count, 1), 3)
            for name, value in idle_rate.items()
        },
        "cancel_ms": latency_ms([seconds for _, seconds, _ in cancels]),
        "cancel_seconds": round(cancel_wall, 1),
        "cancel_answers": dict(Counter(f"{status} {state}" for status, _, state in cancels)),
    }


# --- the run -------------------------------------------------------------------------------------


def ratios(results: Json) -> Json:
    """Every Passage/floor and Passage/peer ratio, from the figures of this run."""
    out: Json = {}
    for key, passage in results["passage"].items():
        floor, peer = results["floor"][key], results["peer"][key]
        for other_name, other in (("floor", floor), ("peer", peer)):
            prefix = f"passage_over_{other_name}"
            out[f"{prefix}_throughput_{key}"] = ratio(
                passage["throughput_per_s"], other["throughput_per_s"]
            )
            for q in ("p50", "p95", "p99"):
                out[f"{prefix}_latency_{q}_{key}"] = ratio(
                    passage["latency_ms"][q], other["latency_ms"][q]
                )
        for measure in ("events", "bytes", "activities", "workflow_tasks"):
            out[f"passage_over_floor_history_{measure}_{key}"] = ratio(
                (passage["history"] or {}).get(measure), (floor["history"] or {}).get(measure)
            )
        p_cpu, f_cpu = passage["cpu_seconds_per_booking"], floor["cpu_seconds_per_booking"]
        out[f"passage_over_floor_cpu_worker_{key}"] = ratio(p_cpu["worker"], f_cpu["worker"])
        out[f"passage_over_floor_cpu_server_{key}"] = ratio(p_cpu["temporal"], f_cpu["temporal"])
        out[f"passage_over_floor_cpu_engine_{key}"] = ratio(p_cpu["engine"], f_cpu["engine"])
        out[f"passage_over_peer_cpu_engine_{key}"] = ratio(
            p_cpu["engine"], peer["cpu_seconds_per_booking"]["peer"]
        )
    return out


async def warm_up(bench: Bench) -> None:
    count = bench.args.warmup
    log(f"warming up: {count} bookings each through Passage, the floor and the peer")
    await bench.fresh_emulators()
    runs, _ = await closed_loop(
        "warm-up Passage",
        count,
        min(5, count),
        lambda i: bench.customers.book(f"warmup-{i}", bench.items(3), bench.cards[CARD_OK]),
    )
    bench.webhook_targets = [
        (run.booking_id, run.payment_intent_id)
        for run in runs
        if run.status == "CONFIRMED" and run.booking_id and run.payment_intent_id
    ]
    if not bench.webhook_targets:
        raise RuntimeError(f"no warm-up booking was confirmed: {[r.problem for r in runs]}")
    await run_floor(bench.temporal, bench.floor_worker.task_queue, "warmup", count, min(5, count))
    await peer_phase(bench, min(5, count), count, "warmup")


async def bench_main(args: argparse.Namespace, engine: Engine, floor_worker: FloorWorker) -> Json:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400, keepalive_expiry=2)
    timeout = httpx.Timeout(60.0)
    # The engine's children run on the defaults; only the codec key is the launcher's own.
    settings = Settings(
        env=Environment.DEVELOPMENT,
        temporal_address=engine.temporal_address,
        codec_key=engine.kept("codec_key"),
        task_queue=Settings.model_fields["task_queue"].default,
    )
    # Histories and the floor: plain payloads (bare Temporal); direct bookings: Passage's codec.
    temporal = await Client.connect(engine.temporal_address)
    passage_temporal = await connect(settings)
    gateway = make_stripe_gateway(STRIPE_KEY, engine.stripe)
    async with (
        httpx.AsyncClient(base_url=engine.api, timeout=timeout, limits=limits) as api,
        httpx.AsyncClient(base_url=engine.simulator, timeout=timeout, limits=limits) as sim,
        httpx.AsyncClient(base_url=engine.stripe, timeout=timeout, auth=(STRIPE_KEY, "")) as sh,
        # The peer's own client, configured as the worker configures its own (worker.py).
        httpx.AsyncClient(
            base_url=engine.simulator, timeout=settings.supplier_timeout_seconds
        ) as peer_http,
    ):
        try:
            (await sim.delete("/_sim/faults")).raise_for_status()  # no fault: no latency either
            offers = (await sim.get("/offers")).json()
            bench = Bench(
                args=args,
                engine=engine,
                floor_worker=floor_worker,
                temporal=temporal,
                customers=PassageCustomers(api, args.poll_interval, args.follow),
                direct=DirectBookings(passage_temporal, settings.task_queue, args.poll_interval),
                peer=PeerSaga(HttpSupplierClient(peer_http), gateway),
                sim=sim,
                stripe=sh,
                cards={},
                prices={offer["offer_id"]: offer["price"] for offer in offers},
                offer_order=[offer["offer_id"] for offer in offers],
            )
            await warm_up(bench)
            results: Json = {"passage": {}, "floor": {}, "peer": {}, "growth": {}}
            for concurrency in args.concurrency:
                key = f"c{concurrency}"
                n = args.bookings
                log(f"C={concurrency}: Passage, {n} bookings of 3 items over HTTP")
                results["passage"][key] = await passage_phase(bench, concurrency, n, key)
                log(f"C={concurrency}: the floor, {n} workflows")
                results["floor"][key] = await floor_phase(bench, concurrency, n, key)
                log(f"C={concurrency}: the peer, {n} in-process sagas")
                results["peer"][key] = await peer_phase(bench, concurrency, n, key)
                log(report.phase_line(results, key))
            for size in args.growth:
                log(f"growth: {args.growth_bookings} bookings of {size} item(s), one at a time")
                results["growth"][f"items_{size}"] = await growth_phase(
                    bench, size, args.growth_bookings
                )
            for key, count, wait in (
                ("open_bookings", args.open_bookings, PRICE_WAIT),
                ("open_3ds", args.open_3ds, PAYMENT_WAIT),
            ):
                if count:
                    log(f"open bookings: {count} left waiting for {wait.name}")
                    results[key] = await open_phase(bench, count, wait)
            results["ratios"] = ratios(results)
            return results
        finally:
            await gateway.aclose()


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # so the engine and the floor worker are stopped on the way out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="passage-bench-"))
    engine = Engine(root)
    floor_worker: FloorWorker | None = None
    started = time.monotonic()
    load_before = os.getloadavg()
    log(
        f"{args.bookings} bookings per concurrency {args.concurrency}, growth {args.growth}, "
        f"{args.open_bookings} open bookings; state in {root}"
    )
    try:
        took = engine.start()
        log(f"engine ready in {took:.1f} s at {engine.api}")
        floor_worker = FloorWorker(
            engine.temporal_address, f"bench-floor-{os.getpid()}", root / "floor-worker.log"
        )
        floor_worker.start()
        results = asyncio.run(bench_main(args, engine, floor_worker))
    except Exception as err:
        log(f"bench failed: {type(err).__name__}: {err}\n{engine.tail()}")
        engine.kill_everything()
        return 2
    finally:
        if floor_worker is not None:
            floor_worker.stop()
        if engine.process is not None and engine.process.poll() is None:
            engine.stop()
    results["meta"] = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            # Anything else running on the machine takes CPU from the three systems measured.
            "load_average_before": [round(value, 2) for value in load_before],
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "parameters": {
            "bookings_per_concurrency": args.bookings,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "open_bookings": args.open_bookings,
            "open_3ds": args.open_3ds,
            "open_idle_seconds": args.open_idle_seconds,
            "growth": args.growth,
            "growth_bookings": args.growth_bookings,
            "poll_interval_seconds": args.poll_interval,
            "follow": args.follow,
            "capacity_scale": args.capacity_scale,
            "shape": [offer for offer, _ in SHAPE],
        },
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results), flush=True)
    report.plot(results, args.plot)
    log(f"wrote {args.results} and {args.plot}")
    if args.keep:
        print(f"state kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def entry() -> None:
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # sdk-python issue 300: avoid a crash at interpreter exit


if __name__ == "__main__":
    entry()
