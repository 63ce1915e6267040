"""Content-addressed cache of LLM replies (diskcache), so unchanged work is free.

Keys are sha256 over a canonical JSON dump of everything that determines a reply
(SPEC §4); values are the validated reply. The cache never holds credentials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import diskcache

log = logging.getLogger(__name__)

# Bumped when the stored value layout changes; older entries are then simply misses.
FORMAT = 1


def cache_key(**parts: Any) -> str:
    """sha256 of a canonical dump: key order and whitespace never change the key."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ReplyCache:
    """Validated LLM replies by cache key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.warning: str | None = None
        try:
            self._cache = diskcache.Cache(str(directory))
            self._cache.get("__probe__")
        except (sqlite3.DatabaseError, OSError) as exc:
            # A corrupt or foreign cache costs regeneration, never the run.
            self.warning = f"cache at {directory} was unreadable ({exc.__class__.__name__}); rebuilt it empty"
            log.warning(self.warning)
            shutil.rmtree(directory, ignore_errors=True)
            self._cache = diskcache.Cache(str(directory))

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = self._cache.get(key)
        except (sqlite3.DatabaseError, OSError, ValueError, EOFError) as exc:
            log.warning("cache read failed for %s: %s", key[:12], exc)
            return None
        if not isinstance(entry, dict) or entry.get("format") != FORMAT:
            return None
        return entry["reply"]

    def put(self, key: str, reply: dict[str, Any]) -> None:
        # diskcache commits each set before returning: a reply is durable before its sample is written.
        self._cache.set(key, {"format": FORMAT, "reply": reply})

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def close(self) -> None:
        self._cache.close()
