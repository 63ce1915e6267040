"""Content-addressed cache of LLM replies (diskcache), so unchanged work is free.

Keys are sha256 over a canonical JSON dump of everything that determines a reply
(SPEC §4); values are the validated reply. The cache never holds credentials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import diskcache

log = logging.getLogger(__name__)

# Bumped when the stored value layout changes; a cache of another format is then rebuilt empty.
FORMAT = 1
_FORMAT_KEY = "__codefactory_format__"
# What reading a damaged or foreign entry can raise (diskcache unpickles values).
_UNREADABLE = (sqlite3.DatabaseError, OSError, ValueError, EOFError, pickle.UnpicklingError, AttributeError,
               ImportError, IndexError, TypeError)


def cache_key(**parts: Any) -> str:
    """sha256 of a canonical dump: key order and whitespace never change the key."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ReplyCache:
    """Validated LLM replies by cache key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.warning: str | None = None
        self._writing = threading.Lock()
        try:
            self._cache = diskcache.Cache(str(directory))
            found = self._cache.get(_FORMAT_KEY)
            if found is None and len(self._cache) > 0:
                found = self._oldest_format()  # written before the marker existed
        except _UNREADABLE as exc:
            # A corrupt or foreign cache costs regeneration, never the run.
            self._rebuild(f"was unreadable ({exc.__class__.__name__})")
            found = None
        if found is not None and found != FORMAT:
            self._rebuild(f"was written in format {found!r}, this version reads format {FORMAT}")
            found = None
        if found is None:
            self._cache.set(_FORMAT_KEY, FORMAT)

    def _rebuild(self, why: str) -> None:
        self.warning = f"cache at {self.directory} {why}; rebuilt it empty (replies will be asked again)"
        log.warning(self.warning)
        if getattr(self, "_cache", None) is not None:
            self._cache.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        self._cache = diskcache.Cache(str(self.directory))

    def _oldest_format(self) -> object:
        """The format of the first entry."""
        for key in self._cache.iterkeys():
            entry = self._cache.get(key)
            return entry.get("format") if isinstance(entry, dict) else "unknown"
        return None

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = self._cache.get(key)
        except _UNREADABLE as exc:
            log.warning("cache read failed for %s: %s", key[:12], exc)
            return None
        if not isinstance(entry, dict) or entry.get("format") != FORMAT or not isinstance(entry.get("reply"), dict):
            return None
        return entry["reply"]

    def put(self, key: str, reply: dict[str, Any]) -> None:
        # diskcache commits each set before returning: a reply is durable before its sample is written.
        # One writer at a time: request threads that write at once wait for SQLite's lock in its busy
        # handler, which sleeps in steps of milliseconds (a quarter of their time with a fast endpoint).
        with self._writing:
            self._cache.set(key, {"format": FORMAT, "reply": reply})

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def close(self) -> None:
        self._cache.close()
