"""Run the supplier simulator: `python -m simulator --host 127.0.0.1 --port 8100`.

`--state-file PATH` keeps its state (holds, bookings, stock, faults) in PATH across restarts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from passage.statefile import StateFile
from simulator.app import create_app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--seed", type=int, default=0, help="seeds references and rate faults")
    parser.add_argument(
        "--sweep-interval", type=float, default=1.0, help="seconds between hold-expiry sweeps"
    )
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--state-file",
        type=Path,
        help="load the state from this file at start and save it there after every change "
        "(default: in memory only)",
    )
    args = parser.parse_args(argv)
    app = create_app(
        seed=args.seed,
        sweep_interval_seconds=args.sweep_interval,
        state_file=None if args.state_file is None else StateFile(args.state_file),
    )
    # A short graceful shutdown: calls held back by timeout faults must not delay Ctrl-C.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
