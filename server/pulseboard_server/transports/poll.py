"""Placeholder until the poll transport lands."""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def poll_endpoint(request: Request) -> Response:
    return JSONResponse({"error": "not_found", "detail": "poll transport not built yet"}, status_code=404)
