"""Console sessions, kept on the server: the cookie holds a random session id, never the admin
token; signing out deletes the session, so a copied cookie stops working at once.

One file per session under `DATA_DIR/console-sessions/`, named by the SHA-256 of the id (a
listing of the folder reveals no cookie): every worker process of the app sees the same
sessions (the image runs two). A process-local dict would sign an operator out whenever the
next request reached the other worker. Sessions do not survive the loss of the folder (a new
container without a volume): everyone signs in again, the safe direction."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)
MAX_ID_LENGTH = 128  # ids are 43 characters; anything longer is not one of ours


@dataclass(frozen=True)
class ConsoleSession:
    """An open session: who signed in (a fingerprint of the admin token) and until when."""

    who: str
    expires_at: float


class SessionStore:
    """Open, look up and close console sessions in a folder shared by the app's workers."""

    def __init__(self, folder: Path, clock: Callable[[], float] = time.time) -> None:
        self.folder = folder
        self.clock = clock

    def open(self, *, who: str, expires_at: float) -> str:
        """Create a session and return its id (the cookie's value)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sweep()
        session_id = secrets.token_urlsafe(32)
        path = self._path(session_id)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"who": who, "expires_at": expires_at}, file)
        temporary.replace(path)  # atomic: a reader sees the whole session or none
        return session_id

    def lookup(self, session_id: str) -> ConsoleSession | None:
        """The open session with this id, or None (unknown, closed or expired)."""
        if not session_id or len(session_id) > MAX_ID_LENGTH:
            return None
        path = self._path(session_id)
        try:
            stored = json.loads(path.read_text())
            session = ConsoleSession(who=str(stored["who"]), expires_at=float(stored["expires_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= self.clock():
            path.unlink(missing_ok=True)
            return None
        return session

    def close(self, session_id: str) -> None:
        """End the session (sign-out): its id opens nothing any more, in any worker."""
        if session_id and len(session_id) <= MAX_ID_LENGTH:
            self._path(session_id).unlink(missing_ok=True)

    def _path(self, session_id: str) -> Path:
        return self.folder / hashlib.sha256(session_id.encode()).hexdigest()

    def _sweep(self) -> None:
        """Delete expired sessions (at each sign-in: a handful of files)."""
        now = self.clock()
        for path in self.folder.iterdir():
            try:
                if json.loads(path.read_text())["expires_at"] <= now:
                    path.unlink(missing_ok=True)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a temporary file being written, or already gone
