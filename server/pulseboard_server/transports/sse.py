"""Placeholder until the sse transport lands."""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def sse_endpoint(request: Request) -> Response:
    return JSONResponse({"error": "not_found", "detail": "sse transport not built yet"}, status_code=404)
