"""The benchmark's report: one Markdown table (pasted as is into docs/performance.md) and a plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Json = dict[str, Any]


def _num(value: float | None, places: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{places}f}"


def _ms(figures: Json, *quantiles: str) -> str:
    return " / ".join(_num(figures[q]) for q in quantiles)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _history(figures: Json, measure: str, places: int = 0, scale: float = 1.0) -> str:
    history = figures.get("history") or {}
    value = history.get(measure)
    return _num(None if value is None else value / scale, places)


def phase_line(results: Json, key: str) -> str:
    """One line of progress once a concurrency's three phases are done."""
    passage, floor, peer = (results[system][key] for system in ("passage", "floor", "peer"))
    return (
        f"{key}: Passage {passage['throughput_per_s']}/s p50 {passage['latency_ms']['p50']} ms, "
        f"floor {floor['throughput_per_s']}/s p50 {floor['latency_ms']['p50']} ms, "
        f"peer {peer['throughput_per_s']}/s p50 {peer['latency_ms']['p50']} ms"
    )


def table(results: Json) -> str:
    """Every figure of the run as one Markdown table: a column per concurrency."""
    keys = list(results["passage"])
    ratios = results["ratios"]
    rows: list[tuple[str, Callable[[str], str]]] = []

    def row(label: str, cell: Callable[[str], str]) -> None:
        rows.append((label, cell))

    def system(name: str) -> Callable[[str], Json]:
        return lambda key: results[name][key]

    passage, floor, peer = system("passage"), system("floor"), system("peer")
    row("bookings/s: Passage", lambda k: _num(passage(k)["throughput_per_s"], 2))
    row("bookings/s: floor (bare Temporal)", lambda k: _num(floor(k)["throughput_per_s"], 2))
    row("bookings/s: peer (no durability)", lambda k: _num(peer(k)["throughput_per_s"], 2))
    row("throughput Passage / floor", lambda k: _x(ratios[f"passage_over_floor_throughput_{k}"]))
    row("throughput Passage / peer", lambda k: _x(ratios[f"passage_over_peer_throughput_{k}"]))
    row(
        "Passage POST → CONFIRMED p50 / p95 / p99 ms (timeline)",
        lambda k: _ms(passage(k)["latency_ms"], "p50", "p95", "p99"),
    )
    row(
        "floor start → result p50 / p95 / p99 ms",
        lambda k: _ms(floor(k)["latency_ms"], "p50", "p95", "p99"),
    )
    row("peer saga p50 / p95 / p99 ms", lambda k: _ms(peer(k)["latency_ms"], "p50", "p95", "p99"))
    row(
        "latency p50 Passage / floor",
        lambda k: _x(ratios[f"passage_over_floor_latency_p50_{k}"]),
    )
    row("latency p50 Passage / peer", lambda k: _x(ratios[f"passage_over_peer_latency_p50_{k}"]))
    row("POST /bookings p50 / p99 ms", lambda k: _ms(passage(k)["post_ms"], "p50", "p99"))
    row("GET /bookings/{id} p50 / p99 ms", lambda k: _ms(passage(k)["get_ms"], "p50", "p99"))
    row(
        "of which the first, right after the POST, p50 / p99 ms",
        lambda k: _ms(passage(k)["first_get_ms"], "p50", "p99"),
    )
    row("webhook p50 / p99 ms", lambda k: _ms(passage(k)["webhook_ms"], "p50", "p99"))
    row(
        "activities / workflow tasks per booking: Passage",
        lambda k: (
            f"{_history(passage(k), 'activities')} / {_history(passage(k), 'workflow_tasks')}"
        ),
    )
    row(
        "activities / workflow tasks per booking: floor",
        lambda k: f"{_history(floor(k), 'activities')} / {_history(floor(k), 'workflow_tasks')}",
    )
    row(
        "history events / KB per booking: Passage",
        lambda k: f"{_history(passage(k), 'events')} / {_history(passage(k), 'bytes', 1, 1000)}",
    )
    row(
        "history events / KB per booking: floor",
        lambda k: f"{_history(floor(k), 'events')} / {_history(floor(k), 'bytes', 1, 1000)}",
    )
    row(
        "CPU s per booking: Passage worker / server / API",
        lambda k: " / ".join(
            _num(passage(k)["cpu_seconds_per_booking"][name], 3)
            for name in ("worker", "temporal", "api")
        ),
    )
    row(
        "CPU s per booking: floor worker / server",
        lambda k: " / ".join(
            _num(floor(k)["cpu_seconds_per_booking"][name], 3) for name in ("worker", "temporal")
        ),
    )
    row(
        "CPU s per booking: peer process",
        lambda k: _num(peer(k)["cpu_seconds_per_booking"]["peer"], 3),
    )
    row(
        "CPU s per booking: simulator / Stripe emulator (Passage run)",
        lambda k: " / ".join(
            _num(passage(k)["cpu_seconds_per_booking"][name], 3) for name in ("simulator", "stripe")
        ),
    )
    row(
        "CPU worker+server(+API) Passage / floor",
        lambda k: _x(ratios[f"passage_over_floor_cpu_engine_{k}"]),
    )
    lines = [
        "| measure | " + " | ".join(f"C={k[1:]}" for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    lines += [f"| {label} | " + " | ".join(cell(k) for k in keys) + " |" for label, cell in rows]
    lines += ["", "| growth (one at a time) | items | via | p50 / p95 ms | events | KB |"]
    lines += ["|---|---|---|---|---|---|"]
    for figures in results["growth"].values():
        lines.append(
            f"| {figures['confirmed']}/{figures['bookings']} confirmed | {figures['items']} "
            f"| {figures['via']} | {_ms(figures['latency_ms'], 'p50', 'p95')} "
            f"| {_history(figures, 'events')} | {_history(figures, 'bytes', 1, 1000)} |"
        )
    opens = [results[key] for key in ("open_bookings", "open_3ds") if results.get(key)]
    if opens:
        lines += [
            "",
            "| bookings left open | " + " | ".join(o["waiting_for"] for o in opens) + " |",
        ]
        lines += ["|---|" + "---|" * len(opens)]
        for label, cell in _open_rows():
            lines.append(f"| {label} | " + " | ".join(cell(held) for held in opens) + " |")
    return "\n".join(lines)


def _open_rows() -> list[tuple[str, Callable[[Json], str]]]:
    def idle(held: Json) -> str:
        rate = held["idle_cpu_seconds_per_second"]
        return " / ".join(str(rate[name]) for name in ("worker", "temporal", "stripe"))

    return [
        (
            "waiting when measured / submitted",
            lambda h: (
                f"{h['waiting_when_measured']} / {h['bookings']} "
                f"(submitted in {h['submit_seconds']} s)"
            ),
        ),
        (
            "worker RSS before / open / after cancel, MiB",
            lambda h: (
                f"{h['worker_rss_mib_before']} / {h['worker_rss_mib_open_after_idle']} / "
                f"{h['worker_rss_mib_after_cancel']}"
            ),
        ),
        ("worker RSS per open booking, KiB", lambda h: str(h["worker_rss_kib_per_open_booking"])),
        ("CPU while they wait, s per s: worker / server / Stripe", idle),
        (
            "cancel p50 / p99 ms (all cancelled in)",
            lambda h: f"{_ms(h['cancel_ms'], 'p50', 'p99')} ({h['cancel_seconds']} s)",
        ),
    ]


def plot(results: Json, path: Path) -> None:
    """Throughput and latency (p50, p99) against concurrency for the three systems, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: CI, a server, a terminal
    from matplotlib import pyplot

    keys = list(results["passage"])
    concurrency = [int(key[1:]) for key in keys]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    systems = (
        ("passage", "Passage", "tab:blue"),
        ("floor", "floor (bare Temporal)", "tab:green"),
        ("peer", "peer (no durability)", "tab:orange"),
    )
    for name, label, colour in systems:
        figures = [results[name][key] for key in keys]
        left.plot(
            concurrency, [f["throughput_per_s"] for f in figures], "o-", color=colour, label=label
        )
        right.plot(
            concurrency, [f["latency_ms"]["p50"] for f in figures], "o-", color=colour,
            label=f"{label} p50",
        )  # fmt: skip
        right.plot(
            concurrency, [f["latency_ms"]["p99"] for f in figures], "o--", color=colour,
            alpha=0.6, label=f"{label} p99",
        )  # fmt: skip
    left.set(xlabel="concurrency (customers in flight)", ylabel="bookings/s", title="Throughput")
    right.set(xlabel="concurrency (customers in flight)", ylabel="ms", title="Latency")
    for axes in (left, right):
        axes.set_xscale("log")
        axes.set_xticks(concurrency, [str(c) for c in concurrency])
        axes.grid(True, alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=8)
    right.legend(fontsize=7, ncol=2)
    parameters = results.get("meta", {}).get("parameters", {})
    figure.suptitle(
        f"make bench: 3-item bookings, {parameters.get('bookings_per_concurrency', '?')} per "
        f"concurrency, {results.get('meta', {}).get('machine', {}).get('cpus', '?')} CPUs",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
