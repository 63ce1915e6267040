"""What a push means for the dataset: the `codefactory incremental` runs a set of pushed refs calls for.

Follows git's pre-push protocol (`<local ref> <local sha> <remote ref> <remote sha>` lines) and,
like pre-commit's hook-tmpl, treats an all-zero sha as a deleted ref (local) or a new branch (remote).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from codefactory.errors import CodefactoryError
from codefactory.gitrepo import GitRepo


@dataclass(frozen=True)
class PushedRef:
    """One line git writes to a pre-push hook's stdin."""

    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str


@dataclass(frozen=True)
class Update:
    """One `codefactory incremental` run; since=None starts from the manifest (a full build without one)."""

    ref: str
    since: str | None
    until: str


def parse_push_lines(text: str) -> list[PushedRef]:
    return [PushedRef(*parts) for parts in (line.split() for line in text.splitlines()) if len(parts) == 4]


def plan_updates(repo: GitRepo, pushed: Sequence[PushedRef]) -> tuple[list[Update], list[str]]:
    """The updates a push calls for, and a note for each ref that needs none."""
    updates: list[Update] = []
    notes: list[str] = []
    for ref in pushed:
        name = ref.remote_ref
        if _is_zero(ref.local_sha):
            notes.append(f"{name}: deleted, nothing to update")
            continue
        if not name.startswith("refs/heads/"):
            # A tag names commits a branch push already covered; following it could move the dataset back.
            notes.append(f"{name}: not a branch, skipped")
            continue
        until = repo.resolve(ref.local_sha)
        since = _since(repo, ref, until)
        if since == until:
            notes.append(f"{name}: no commits beyond what the dataset already follows")
            continue
        update = Update(ref=name, since=since, until=until)
        if update not in updates:
            updates.append(update)
    return updates, notes


def _since(repo: GitRepo, ref: PushedRef, until: str) -> str | None:
    if _is_zero(ref.remote_sha):
        return _new_branch_base(repo, ref.remote_ref, until)
    if not repo.commit_exists(ref.remote_sha):
        return None  # the remote has commits this clone never fetched: start from the manifest
    try:
        if repo.is_ancestor(ref.remote_sha, until):
            return repo.resolve(ref.remote_sha)
        # A force push: like pre-commit's `before...after`, start where the two histories part.
        return repo.merge_base(ref.remote_sha, until)
    except CodefactoryError:  # a shallow clone that cannot relate them
        return None


def _new_branch_base(repo: GitRepo, remote_ref: str, until: str) -> str | None:
    """A new branch starts from its merge base with the default branch; None means manifest or full build."""
    default = repo.default_branch()
    if default is None:
        return None
    short = default.split("/", 1)[1] if default.startswith("origin/") else default
    if remote_ref == f"refs/heads/{short}":
        return None  # the default branch itself, pushed for the first time
    try:
        base = repo.merge_base(default, until)
    except CodefactoryError:
        return None
    return base  # equal to `until` when the branch adds nothing: the caller skips it


def _is_zero(sha: str) -> bool:
    return not sha.strip("0")
