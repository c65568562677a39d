"""`passage bookings ...`: find, read and steer bookings through the staff API.

`cancel` cancels as the customer could: it is refused (exit 1, nothing sent) while the booking is
in a state where only staff may force a cancel (docs/interruptions.md): `NEEDS_ATTENTION` (the
force retries the stuck step first), `COMPENSATING`, or `CONFIRMING`/`CAPTURING` (the force stops
a confirmation half-way; the fees suppliers keep are then the merchant's). `cancel --force` is
the staff force-cancel, accepted in those states too. Both are recorded with the operator and
the note.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from passage.cli import render
from passage.cli.exits import ExitCode, Failure
from passage.cli.options import BookingId, JsonFlag
from passage.cli.output import Output
from passage.cli.staff_access import staff_access
from passage.cli.staff_api import Answer, Json, StaffApi, is_missing_route
from passage.settings import NO_NEEDS, Settings
from workflows.model import BookingStatus

app = typer.Typer(
    help="Find, read and steer bookings (the staff API; needs a staff key).",
    no_args_is_help=True,
)

#: Where a customer's cancel is refused and only a staff force-cancel goes through.
FORCE_ONLY = frozenset(
    {
        BookingStatus.NEEDS_ATTENTION,
        BookingStatus.COMPENSATING,
        BookingStatus.CONFIRMING,
        BookingStatus.CAPTURING,
    }
)

Note = Annotated[str, typer.Option("--note", help="Why; recorded in the audit trail.")]


@app.command("list")
def list_bookings(
    status: Annotated[
        BookingStatus | None,
        typer.Option("--status", case_sensitive=False, help="Only this status."),
    ] = None,
    email: Annotated[str | None, typer.Option(help="Customer e-mail (any case).")] = None,
    supplier: Annotated[str | None, typer.Option(help="Any item's supplier.")] = None,
    created_from: Annotated[
        str | None, typer.Option(help="Created at or after (RFC 3339, e.g. 2026-05-04T10:00:00Z).")
    ] = None,
    created_to: Annotated[str | None, typer.Option(help="Created before (RFC 3339).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="`next_cursor` of a previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Bookings, newest first (from the ledger)."""
    params: dict[str, Any] = {"limit": limit}
    for name, value in (
        ("status", status.value if status else None),
        ("email", email),
        ("supplier", supplier),
        ("created_from", created_from),
        ("created_to", created_to),
        ("cursor", cursor),
    ):
        if value:
            params[name] = value
    bookings: list[Json] = []
    with _session() as api:
        while True:
            page = api.get("/admin/bookings", params=params)
            bookings += page["bookings"]
            if not all_pages or not page.get("next_cursor"):
                break
            params["cursor"] = page["next_cursor"]
    answer = {"bookings": bookings, "next_cursor": page.get("next_cursor")}
    output = Output(as_json)

    def draw(console: Any) -> None:
        console.print(render.bookings_table(bookings))
        more = (
            f"; more with --all or --cursor {answer['next_cursor']}"
            if answer["next_cursor"]
            else ""
        )
        console.print(f"{len(bookings)} booking{'s' if len(bookings) != 1 else ''}{more}")

    output.show(answer, draw)


@app.command()
def show(booking_id: BookingId, as_json: JsonFlag = False) -> None:
    """One booking: status, items, payment and its audit trail (who, when, note)."""
    with _session() as api:
        view = api.get(f"/admin/bookings/{booking_id}")
    _show_view(Output(as_json), Answer(200, view))


@app.command()
def retry(booking_id: BookingId, note: Note = "", as_json: JsonFlag = False) -> None:
    """Retry the step a NEEDS_ATTENTION booking is stuck on, now."""
    _act(booking_id, "retry", note, as_json)


@app.command()
def resolve(
    booking_id: BookingId,
    note: Annotated[str, typer.Option("--note", help="How it was handled (recorded).")],
    as_json: JsonFlag = False,
) -> None:
    """Mark the stuck step as handled by hand; the saga goes on."""
    _act(booking_id, "resolve", note, as_json)


@app.command()
def cancel(
    booking_id: BookingId,
    note: Note = "",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Staff force-cancel: also while stuck (the stuck step is retried), "
            "compensating or confirming.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a booking (refunds per the items' terms once confirmed)."""
    with _session() as api:
        if not force:
            current = api.get(f"/admin/bookings/{booking_id}")
            if current["status"] in FORCE_ONLY:
                raise Failure(
                    ExitCode.FAILED,
                    f"{booking_id} is {current['status']}: a customer could not cancel it now "
                    f"({_why_force(current)}); run again with --force to force the cancellation",
                    code="FORCE_REQUIRED",
                    status=409,
                )
        answer = api.post(f"/admin/bookings/{booking_id}/cancel", {"note": note})
    _show_view(Output(as_json), answer)


@app.command()
def reset(
    booking_id: BookingId,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="STEP",
            help="The step to go back to: PRICE, HOLD, AUTHORIZE, PAYMENT_ACTION, CONFIRM, "
            "CAPTURE or an undo (CANCEL, RELEASE, VOID, REFUND), optionally with an item: "
            "'CONFIRM it_1' (default: the forward step whose failure started the undo).",
        ),
    ] = None,
    note: Note = "",
    as_json: JsonFlag = False,
) -> None:
    """Reset the booking's workflow to the workflow task before a step (after a bug fix).

    For a booking stuck on a bug that a new release fixed: Temporal starts a new run from there
    with the new code; the idempotency keys make sure nothing is charged or booked twice. Use
    `retry` when the outside world was the trouble; a reset is refused (exit 1) for a booking
    that is confirmed, ended, cancelled, or already partly undone (see the README).
    """
    with _session() as api:
        try:
            answer = api.post(f"/admin/bookings/{booking_id}/reset", {"to": to, "note": note})
        except Failure as failure:
            if is_missing_route(failure):
                raise Failure(
                    ExitCode.FAILED,
                    f"the API at {api.base_url} cannot reset bookings (POST "
                    f"/admin/bookings/{{id}}/reset answered {failure.status}): the staff API of "
                    "this release has no reset endpoint yet",
                    code="RESET_UNSUPPORTED",
                    status=failure.status,
                ) from failure
            raise
    _show_view(Output(as_json), answer)


# --- pieces --------------------------------------------------------------------------------------


def _session() -> Any:
    settings = Settings.for_process("passage", NO_NEEDS)
    return StaffApi.opened(staff_access(settings, os.environ))


def _act(booking_id: str, action: str, note: str, as_json: bool) -> None:
    """One staff action (`POST /admin/bookings/{id}/<action>` with the note), then the booking."""
    with _session() as api:
        answer = api.post(f"/admin/bookings/{booking_id}/{action}", {"note": note})
    _show_view(Output(as_json), answer)


def _show_view(output: Output, answer: Answer) -> None:
    def draw(console: Any) -> None:
        console.print(render.booking_timeline(answer.body))

    output.show(answer.body, draw)
    if answer.accepted:
        output.note(
            f"accepted: the booking is still carrying it out "
            f"(passage bookings show {answer.body['booking_id']} to follow)"
        )


def _why_force(view: Json) -> str:
    status = view["status"]
    if status == BookingStatus.NEEDS_ATTENTION:
        attention = view.get("attention") or {}
        step = attention.get("step", "a step")
        return f"it waits for an operator on {step}; a forced cancel retries that step first"
    if status == BookingStatus.COMPENSATING:
        return "it failed and is being undone"
    return (
        "confirmation is in progress; a forced cancel undoes it and the merchant pays "
        "the fees suppliers keep"
    )
