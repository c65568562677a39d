"""Worker settings shared by the booking worker and the benchmark's floor worker.

One place, so the floor (bench/) runs with exactly the settings Passage's worker runs with.
Chosen by profile on this project's reference machine (2 cores); docs/performance.md says what
each bought.
"""

from __future__ import annotations

import compileall
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from passage.serialization_context import skip_unused_serialization_contexts

#: A tenth of the worker's CPU went to resolving payload contexts nothing uses (see the module).
skip_unused_serialization_contexts()

#: The saga's pure modules (data types, rules, activity specs), imported once per worker instead
#: of once per booking: the sandbox re-executing them was a tenth of the worker's CPU. They do
#: no I/O and read no clock (the workflow passes `now` in), and every test runs them under the
#: strict default sandbox. `workflows.booking` itself stays sandboxed.
PASSTHROUGH_MODULES = (
    "workflows.calls",
    "workflows.contracts",
    "workflows.model",
    "workflows.operator_view",
    "workflows.saga",
    "workflows.search",
    "workflows.state",
)

#: Keyword arguments for `temporalio.worker.Worker` beyond the task queue, workflows and activities.
WORKER_OPTIONS: dict[str, Any] = {
    "workflow_runner": SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    ),
}


def cache_sandbox_bytecode(workflows: Sequence[type]) -> None:
    """Write the bytecode of the workflows' modules, which the sandbox imports for every run.

    The sandbox imports a workflow's module afresh for each new workflow run, and with
    PYTHONDONTWRITEBYTECODE (set on these machines) Python caches no bytecode: every booking
    compiled workflows/booking.py from source, 14 % of the worker's CPU (docs/performance.md).
    Python still reads bytecode under that setting. Only stale or missing files are written; a
    read-only install (an image compiled at build) is left as it is.
    """
    for workflow in workflows:
        source = getattr(sys.modules[workflow.__module__], "__file__", None)
        if source is None:
            continue
        try:
            compileall.compile_dir(Path(source).parent, maxlevels=0, quiet=2)
        except OSError:
            continue
