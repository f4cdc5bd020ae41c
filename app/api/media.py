"""`/media`: the local storage folder over HTTP, object keys only."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope


class MediaFiles(StaticFiles):
    """StaticFiles that never serves a dot-segment (the storage's `.blobs` and temp files):
    only what an object key can name is reachable, as with the S3 backend. Every answer says
    `X-Content-Type-Options: nosniff`: a browser never runs a stored object as HTML or
    script, whatever its bytes."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """404 for any path with a segment starting with a dot."""
        if any(segment.startswith(".") for segment in path.replace("\\", "/").split("/")):
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
