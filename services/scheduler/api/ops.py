"""Liveness and readiness, without a token."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.scheduler.api.deps import ReadinessCheck

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(readiness: ReadinessCheck) -> JSONResponse:
    report = await readiness() if readiness else {"ready": True}
    return JSONResponse(report, status_code=200 if report.get("ready") else 503)
