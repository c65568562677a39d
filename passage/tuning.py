"""Worker settings shared by the booking worker and the benchmark's floor worker.

One place, so the floor (bench/) runs with exactly the settings Passage's worker runs with.
Chosen by profile on this project's reference machine (2 cores); docs/performance.md says what
each bought.
"""

from __future__ import annotations

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
