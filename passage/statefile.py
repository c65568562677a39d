"""A dev service's state kept in one file, replaced atomically on every save.

The supplier simulator and the Stripe emulator keep their state in memory; under `make up` they
also keep it in the state directory so a restart of their process (or of the launcher) loses no
hold, booking or PaymentIntent. Every save writes the whole snapshot to a temporary file next to
the target, fsyncs it and renames it over the old one, so a crash at any moment leaves either the
previous snapshot or the new one, never a torn file.

`make up` keeps them, its logs and the keys it generates in one state directory
(`state_dir_from_env`), which the staff CLI also reads for the keys in development.

The format is pickle: the file is written and read by the same trusted process on a developer's
machine, and it carries the services' own objects (dataclasses, localstripe resources) as they are.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def state_dir_from_env(environ: Mapping[str, str]) -> Path:
    """`PASSAGE_STATE_DIR`, or `.passage` in the working directory, as an absolute path."""
    return Path(environ.get("PASSAGE_STATE_DIR") or ".passage").resolve()


class StateFile:
    """Where one service keeps its snapshot.

    Args:
        path: The snapshot file; its directory is created on the first save.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Any | None:
        """The last snapshot saved, or None when there is none yet."""
        try:
            with self.path.open("rb") as snapshot:
                return pickle.load(snapshot)
        except FileNotFoundError:
            return None

    def save(self, state: Any) -> None:
        """Replace the snapshot with `state`, durably, before returning."""
        self.save_pickled(self.pickled(state))

    @staticmethod
    def pickled(state: Any) -> bytes:
        """`state` as `save_pickled` writes it: taken apart from the write, so a service can
        capture one consistent moment and leave the disk to another thread."""
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def save_pickled(self, data: bytes) -> None:
        """Replace the snapshot with one made by `pickled`, durably, before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with partial.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        # The rename itself is durable only once the directory entry is on disk.
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
