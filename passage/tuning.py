"""Worker settings shared by the booking worker and the benchmark's floor worker.

One place, so the floor (bench/) runs with exactly the settings Passage's worker runs with.
Chosen for this project's reference machine (2 cores); docs/performance.md says what each bought.
"""

from __future__ import annotations

from typing import Any

#: Keyword arguments for `temporalio.worker.Worker` beyond the task queue, workflows and activities.
WORKER_OPTIONS: dict[str, Any] = {}
