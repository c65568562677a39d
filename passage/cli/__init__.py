"""`passage`: the command line of support staff and operators (typer + rich).

    passage bookings list [--status S] [--email E] [--supplier S] [--created-from T]
                          [--created-to T] [--limit N] [--cursor C] [--all]
    passage bookings show ID
    passage bookings retry ID [--note ..]
    passage bookings resolve ID --note ..
    passage bookings cancel ID [--note ..] [--force]
    passage bookings reset ID [--to STEP] [--note ..]
    passage check [--booking ID]
    passage replay [--booking ID | --since T | --query Q] [--limit N]
    passage migrate upgrade|downgrade|current [REVISION] [--database-url URL]

Every command takes `--json`: exactly one JSON document on stdout (for the booking commands the
staff API's own answer, as in the API's /docs; for `list` `{"bookings", "next_cursor"}`), and a
failure as `{"error": {...}, "exit_code": N}` on stderr (passage.cli.output). Without it: rich
tables, and for `show` and every steering command the booking's timeline (status, items, money
in major units, payment, and the audit trail with who, when and the note).

Exit status (passage.cli.exits): 0 done; 1 refused or failed (the API's 404/409, a broken
invariant, a history that is not deterministic, a plain `cancel` that needs `--force`); 2 usage
or configuration (bad arguments, no staff key, a refused staff key, an unsafe or invalid config
file, input the API calls invalid, a missing setting); 3 unavailable (nothing answered, or a 5xx
or 429: try again later).

The booking commands go through the staff HTTP API with a staff key from the environment or a
config file, never a flag (passage.cli.staff_access); plain `cancel` versus `cancel --force` is
explained in passage.cli.bookings. `check`, `replay` and `migrate` work on the engine directly,
configured like the worker, and need no staff key (passage.cli.engine). Each command demands only
the settings it uses and, outside development (`PASSAGE_ENV`), exits 2 naming the one missing.
"""

from passage.cli.app import build_app, main

__all__ = ["build_app", "main"]
