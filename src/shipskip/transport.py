"""The HTTP transport the provider's client and the sources' fetches use: one TLS context per
process, and a total deadline on each request."""

from __future__ import annotations

import functools
import ssl
import time
from typing import Any

# openai 3 speaks HTTP through httpx2; its transport and exceptions must come from there.
import httpx2 as httpx


class _DeadlineStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, request: httpx.Request, deadline: float, total_s: float):
        self._inner, self._request, self._deadline, self._total_s = inner, request, deadline, total_s

    def __iter__(self) -> Any:
        for chunk in self._inner:
            if time.monotonic() > self._deadline:
                raise httpx.ReadTimeout(f"no whole reply within {self._total_s:g} s", request=self._request)
            yield chunk

    def close(self) -> None:
        self._inner.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client in the process. Building one loads the CA bundle: 25 ms
    of CPU per client, five per panel, while the embedded server starts beside it."""
    return httpx.create_ssl_context()


class DeadlineTransport(httpx.BaseTransport):
    """Gives each request a total deadline.

    httpx's timeouts apply to each read, so a body trickled one byte per second under the
    read timeout would never time out; this transport stops it once the whole call is late.
    """

    def __init__(self, total_s: float) -> None:
        self._inner, self._total_s = httpx.HTTPTransport(verify=_tls_context()), total_s

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self._total_s
        response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _DeadlineStream(response.stream, request, deadline, self._total_s)
        return response

    def close(self) -> None:
        self._inner.close()
