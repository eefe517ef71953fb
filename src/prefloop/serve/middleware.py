"""ASGI middleware every request passes through: the body limit, JSON bodies, security headers.

Both are plain ASGI (not ``BaseHTTPMiddleware``) so that they see the body as it arrives and
touch streamed responses (the export) without buffering them.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The annotation page loads only its own script and stylesheet and talks only to this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class BodyLimit:
    """413 for request bodies over ``limit`` bytes, by ``Content-Length`` or, for chunked and
    streamed bodies, by counting the bytes as they arrive (nothing past the limit is read)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def too_large(self) -> HTTPException:
        return HTTPException(413, f"body larger than {self.limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            error = self.too_large()
            await JSONResponse({"detail": error.detail}, error.status_code)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the endpoint's body read: FastAPI passes HTTPExceptions on,
                    # and the app's exception handling answers 413.
                    raise self.too_large()
            return message

        await self.app(scope, counted, send)


class JsonBodies:
    """A request body sent to the API without a JSON ``Content-Type`` is a 422 that says so
    (FastAPI would not parse it and report only that the body is not an object)."""

    def __init__(self, app: ASGIApp, api_prefix: str) -> None:
        self.app, self.api_prefix = app, api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.api_prefix):
            headers = Headers(scope=scope)
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            media = headers.get("content-type", "").partition(";")[0].strip().lower()
            if has_body and not (media == "application/json" or media.endswith("+json")):
                error = {
                    "loc": ["header", "content-type"],
                    "msg": "request bodies are JSON: send Content-Type: application/json",
                    "type": "content_type",
                }
                await JSONResponse({"detail": [error]}, 422)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """CSP, no framing, no MIME sniffing, no referrer on every response; ``no-store`` on the
    API's, which carry tokens (created at ``POST /projects``, ``/annotators``) or private data."""

    def __init__(self, app: ASGIApp, api_prefix: str) -> None:
        self.app, self.api_prefix = app, api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = scope["path"].startswith(self.api_prefix)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if private:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
