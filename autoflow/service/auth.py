"""Bearer tokens with scopes.

``autoflow tokens create --scope SCOPE --name NAME`` prints a random token once; the
store keeps only its SHA-256 (a token is 256 random bits, so a fast hash is enough: there
is nothing to guess). Every route but ``/healthz`` and ``/readyz`` (and the pages that
hold no data: ``/``, ``/docs``, ``/openapi.json``) needs ``Authorization: Bearer TOKEN``:
401 without a valid one, 403 when its scope does not cover the route.

A verified token is remembered for ``TOKEN_CACHE_S`` seconds, so a revocation takes
effect within that time.

Scopes: ``admin`` covers everything; ``executor`` reads, long-polls decisions, reports
job events and node heartbeats and failures; ``submitter`` reads, submits, cancels and
asks what-ifs; ``reader`` reads.
"""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool

COVERS = {
    "admin": {"admin", "executor", "submitter", "reader"},
    "executor": {"executor", "reader"},
    "submitter": {"submitter", "reader"},
    "reader": {"reader"},
}


def require(scope: str):
    """A FastAPI dependency: the caller's token must cover ``scope``."""

    async def check(request: Request) -> dict:  # async: no thread hop for a cached token
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "missing bearer token (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        service = request.app.state.service
        token = token.strip()
        who = service.cached(token)
        if who is None:  # not seen lately: the store is asked, off the event loop
            who = await run_in_threadpool(service.who, token)
        if who is None:
            raise HTTPException(401, "invalid or revoked token",
                                headers={"WWW-Authenticate": "Bearer"})
        if scope not in COVERS.get(who["scope"], set()):
            raise HTTPException(403, f"token {who['name']!r} has scope {who['scope']!r}; "
                                     f"this route needs {scope!r}")
        request.state.token = who
        return who

    return check
