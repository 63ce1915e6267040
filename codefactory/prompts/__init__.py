"""Prompt templates shipped as package files, versioned by content hash."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template


@dataclass(frozen=True)
class Prompt:
    scene: str
    system: str
    user: Template

    @property
    def version(self) -> str:
        """`scene1@1a2b3c4d`: changes whenever either template file changes, so the cache does too."""
        digest = hashlib.sha256((self.system + "\0" + self.user.template).encode("utf-8")).hexdigest()
        return f"{self.scene}@{digest[:8]}"

    def messages(self, **fields: object) -> list[dict[str, str]]:
        # The system turn is identical for every request of a scene and comes first, so
        # providers that cache prompt prefixes reuse it.
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.substitute({k: str(v) for k, v in fields.items()})},
        ]


_BACKTICKS = re.compile(r"`{3,}")


def code_fence(code: str) -> str:
    """A Markdown fence longer than any backtick run inside `code`, so the code cannot close its block
    early and have what follows read as instructions outside it."""
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(code)), default=2)
    return "`" * max(3, longest + 1)


@lru_cache(maxsize=None)
def load_prompt(scene: str) -> Prompt:
    package = resources.files(__name__)
    system = (package / f"{scene}_system.md").read_text(encoding="utf-8").strip()
    user = (package / f"{scene}_user.md").read_text(encoding="utf-8").strip()
    return Prompt(scene=scene, system=system, user=Template(user))
