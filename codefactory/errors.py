"""The one error family. Library code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations


class CodefactoryError(Exception):
    """A problem the user can act on; the message is one line that says what to do."""

    exit_code = 2


class UsageError(CodefactoryError):
    """Bad input: options, configuration, paths."""


class ConfigError(UsageError):
    """A malformed or invalid codefactory.yaml, environment variable or flag value."""


class RepositoryError(UsageError):
    """The path is not a usable git repository (missing, not a repo, empty)."""


class RevisionError(UsageError):
    """A revision cannot be resolved, is not an ancestor, or lies beyond a shallow clone."""


class BackendError(CodefactoryError):
    """No LLM backend can be used (none configured, endpoint unreachable, model missing)."""


class GenerationError(Exception):
    """One request failed for good (after retries and one re-ask); the run records it and goes on.

    `retryable` marks a bad reply (a body that is not JSON, no choices, cut off at the token limit): the
    transport worked, so the backend did not retry it, but asking once more may well succeed.
    """

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class LockedError(CodefactoryError):
    """Another codefactory run holds the output directory."""
