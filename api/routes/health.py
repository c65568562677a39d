"""Liveness and readiness for `make up`, containers and load balancers."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import StateDep
from api.errors import ApiError, error_responses
from api.schemas.health import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    """Always 200 while the process serves requests."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Temporal answers: the API can serve",
    responses=error_responses(503),
)
async def readyz(state: StateDep) -> Readiness:
    """200 once Temporal answers; 503 before (e.g. while `make up` is still starting it)."""
    if not state.connected or not await state.service.temporal_ready():
        raise ApiError(503, "Temporal is not answering", code="NOT_READY")
    return Readiness(status="ready", temporal="ok")
