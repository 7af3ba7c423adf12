"""Files over HTTP only to the browser that owns them (issue #9 item 12).

Gradio serves ``/gradio_api/file=<path>`` for anything in its upload folder, its cache or ``allowed_paths``
to whoever asks with the path (and the login, when there is one): one clinician's ECG plot, CT slice or
upload could be fetched from another workstation by its path. This module puts an ASGI middleware in
front of the Gradio app:

- every browser gets an unguessable owner cookie (``dokuei_owner``, 256 bits, HttpOnly, SameSite=Strict);
- a file path the app hands a browser (in the queue's event stream, an API response or an upload's answer)
  is recorded as owned by that browser's cookie at the moment it is sent;
- a file request is served only when its path is owned by the requesting cookie; anything else, another
  browser's file, a guessed path, a URL to proxy, is answered 404 (not 403: nothing says the file exists).

Gradio's run history (saved in the browser, or in a hub bucket a user can connect) is switched off, and
Gradio's cache moves under ``$DOKUEI_HOME`` so that served copies are private (0700) and go with it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COOKIE = "dokuei_owner"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
#: routes that hand out a file by its path or URL; all are checked, whatever their prefix
_FILE_MARKERS = ("/file=", "/file/", "/proxy=")
#: routes that must not answer at all (run history is off; this also covers an older saved page)
_CLOSED_MARKERS = ("/run-history/", "/runs")
MAX_FILES_PER_OWNER = 20_000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class FileOwners:
    """Which owner cookie may fetch which file (real paths); bounded per owner, oldest forgotten first."""

    def __init__(self, max_per_owner: int = MAX_FILES_PER_OWNER) -> None:
        self._owned: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.Lock()
        self._max = max_per_owner

    @staticmethod
    def _key(path: str) -> str:
        return os.path.realpath(path)

    def grant(self, owner: str, path: str) -> None:
        with self._lock:
            owned = self._owned.setdefault(owner, OrderedDict())
            owned[self._key(path)] = None
            owned.move_to_end(self._key(path))
            while len(owned) > self._max:
                owned.popitem(last=False)

    def owns(self, owner: str | None, path: str) -> bool:
        if not owner:
            return False
        with self._lock:
            return self._key(path) in self._owned.get(owner, {})

    def forget(self, owner: str) -> None:
        with self._lock:
            self._owned.pop(owner, None)


def _cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is no owner
                return None
            morsel = jar.get(COOKIE)
            if morsel is not None and _TOKEN.fullmatch(morsel.value):
                return morsel.value
    return None


def _file_target(path: str) -> str | None:
    """The file path (or URL) a file route asks for, or None when the route is not a file route."""
    for marker in _FILE_MARKERS:
        at = path.find(marker)
        if at >= 0:
            return path[at + len(marker):]
    return None


def file_paths(payload: Any) -> list[str]:
    """Every file path in a Gradio payload: ``FileData`` dicts (``{"path": …, "meta": {"_type": …}}``)
    anywhere in the structure, including the diffs of a generator's updates."""
    found: list[str] = []
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            path = node.get("path")
            meta = node.get("meta")
            is_file_data = isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"
            if isinstance(path, str) and (is_file_data or "url" in node or "orig_name" in node):
                found.append(path)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


class OwnerMiddleware:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, owners: FileOwners) -> None:
        self.app = app
        self.owners = owners

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        owner = _cookie(scope)
        fresh = None
        if owner is None:
            owner = fresh = secrets.token_urlsafe(32)
        target = _file_target(path)
        if target is not None and not self.owners.owns(owner, target):
            log.info("file request refused: not owned by this browser")  # the path itself may name a patient
            await _not_found(send)
            return
        if any(marker in path for marker in _CLOSED_MARKERS):
            await _not_found(send)
            return
        is_upload = path.rstrip("/").endswith("/upload")
        watcher = _Watcher(self.owners, owner, is_upload)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if fresh:
                    headers.append((b"set-cookie",
                                    f"{COOKIE}={fresh}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")))
                message["headers"] = headers
                watcher.start(headers)
            elif message["type"] == "http.response.body" and target is None:
                watcher.feed(message.get("body", b""), bool(message.get("more_body")))
            await send(message)

        await self.app(scope, receive, send_wrapper)


class _Watcher:
    """Reads a response as it goes out and grants the file paths in it to the browser it goes to."""

    _MAX_JSON_BYTES = 32 << 20

    def __init__(self, owners: FileOwners, owner: str, is_upload: bool) -> None:
        self.owners, self.owner, self.is_upload = owners, owner, is_upload
        self.kind = ""
        self.buffer = b""

    def start(self, headers: list[tuple[bytes, bytes]]) -> None:
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"").decode("latin-1")
        self.kind = "sse" if "event-stream" in content_type else "json" if "json" in content_type else ""

    def feed(self, chunk: bytes, more: bool) -> None:
        if not self.kind:
            return
        self.buffer += chunk
        if self.kind == "sse":
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    self._grant(line[5:])
        elif not more or len(self.buffer) > self._MAX_JSON_BYTES:
            self._grant(self.buffer)
            self.buffer = b""

    def _grant(self, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            return
        paths = file_paths(payload)
        if self.is_upload and isinstance(payload, list):
            paths += [p for p in payload if isinstance(p, str)]
        for path in paths:
            self.owners.grant(self.owner, path)


async def _not_found(send: Send) -> None:
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": "見つかりません".encode()})


def private_cache(home: Path) -> Path:
    """Point Gradio's cache at ``$DOKUEI_HOME/gradio-cache`` (0700) unless GRADIO_TEMP_DIR is set.

    Must run before the app's components are built: Gradio copies a component's files into the cache it
    reads at that moment and serves only the cache it reads at launch (a mismatch answers 403)."""
    cache = home / "gradio-cache"
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(cache))
    return Path(os.environ["GRADIO_TEMP_DIR"])


def launch_options(home: Path, owners: FileOwners | None = None) -> dict[str, Any]:
    """What ``Blocks.launch`` is given on top of the app's own options: the middleware and no run history.

    Also points Gradio's cache at ``$DOKUEI_HOME/gradio-cache`` (0700) unless GRADIO_TEMP_DIR is set;
    called before gradio is imported, so every Gradio module sees it."""
    from starlette.middleware import Middleware

    private_cache(home)
    return {"app_kwargs": {"middleware": [Middleware(OwnerMiddleware, owners=owners or FileOwners())]},
            "run_history": False}
