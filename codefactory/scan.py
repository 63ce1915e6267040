"""Select which files of a commit get processed, and say why each other file is skipped.

Files come from the commit's tree (via `GitRepo`), so the result is a deterministic function of
the commit and the options. Tracked files stay in even when .gitignore matches them (git keeps
tracking them too); `.codefactoryignore`, `include` and `exclude` are how a user narrows the set.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pathspec

from .gitrepo import GitRepo, TreeEntry
from .models import SkippedFile, SourceFile
from .secrets import redact
from .workers import fork_map, worker_count

IGNORE_FILE = ".codefactoryignore"
BINARY_SNIFF_BYTES = 8192
DATA_FILE_MAX_BYTES = 100_000
# Below this much content, redacting in forked workers saves less than forking costs.
PARALLEL_MIN_BYTES = 8_000_000

_LANGUAGES = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".java": "java",
    ".rs": "rust",
}  # fmt: skip

_VENDORED_DIRS = {
    "vendor", "node_modules", "third_party", "third-party", "thirdparty", ".venv", "venv", "dist", "build",
    "site-packages", "bower_components", "jspm_packages", ".yarn", "Pods", "__pycache__",
}  # fmt: skip

_SECRET_NAMES = {
    ".env", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "credentials", "credentials.json", ".netrc",
    ".pgpass", ".npmrc", ".pypirc", ".htpasswd", ".git-credentials", ".dockercfg", ".envrc",
    "secrets.json", "secrets.yaml", "secrets.yml",
}  # fmt: skip
_SECRET_EXTS = {".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".kdbx", ".tfstate", ".tfvars"}

_LOCKFILES = {
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lock", "bun.lockb",
    "deno.lock", "poetry.lock", "Pipfile.lock", "uv.lock", "pdm.lock", "Cargo.lock", "go.sum",
    "composer.lock", "Gemfile.lock", "mix.lock", "Podfile.lock", "pubspec.lock", "flake.lock",
    "packages.lock.json", "gradle.lockfile", "Package.resolved", "conda-lock.yml",
}  # fmt: skip

_BINARY_EXTS = {
    # images
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".icns", ".webp", ".tif", ".tiff", ".psd", ".heic", ".avif",
    # archives and packages
    ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".jar", ".war", ".whl", ".egg",
    ".apk", ".deb", ".rpm", ".dmg", ".iso",
    # fonts
    ".ttf", ".otf", ".woff", ".woff2", ".eot",
    # compiled code
    ".so", ".dylib", ".dll", ".exe", ".o", ".a", ".lib", ".obj", ".bin", ".class", ".pyc", ".pyo", ".pyd", ".wasm",
    # media and office documents
    ".mp3", ".mp4", ".wav", ".ogg", ".flac", ".avi", ".mov", ".mkv", ".webm",
    ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt",
    # model weights and data stores
    ".gguf", ".safetensors", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".pkl", ".pickle", ".npy", ".npz",
    ".parquet", ".feather", ".arrow", ".db", ".sqlite", ".sqlite3", ".tflite", ".pb",
}  # fmt: skip

# Text, but data rather than something a model can learn the project from. SVG is always skipped
# (path coordinates); the others only when large, so small fixtures and configs stay in.
_ALWAYS_DATA_EXTS = {".svg"}
_LARGE_DATA_EXTS = {".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".xml", ".geojson", ".ipynb", ".log", ".txt"}

_GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", ".pb.go", ".pb.cc", ".pb.h", ".js.map", ".css.map")
_MINIFIED_SUFFIXES = (".min.js", ".min.css", ".min.mjs")
# Markup and styles get minified too, not just the languages we parse.
_MINIFIABLE_EXTS = {".css", ".scss", ".less", ".html", ".htm", ".json", ".xml"}

_GENERATED_MARKER = re.compile(
    r"@generated\b"
    r"|\bcode generated\b.*\bdo not edit\b"
    r"|\bdo not edit\b"
    r"|\b(?:auto-?generated|automatically generated|generated automatically)\b.*\b(?:by|from|with|using)\b"
    r"|\bthis (?:file|code|module) (?:is|was|has been) (?:auto-?|automatically )?generated\b"
    r"|^\W*(?:auto-?generated|automatically generated)\b",
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_LINES = 10
_HEADER_CHARS = 2000  # so a minified first line does not make the header scan slow

_MAX_AVG_LINE = 300
_MAX_LINE = 5000
_MIN_CHARS_FOR_AVG = 1000  # a short one-liner is not "minified"

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class ScanResult:
    """The files of one commit that will be processed, and the others with the reason each is left out."""

    commit: str
    files: list[SourceFile]
    skipped: list[SkippedFile]


def detect_language(path: str) -> str:
    """The parser language for a path by its extension: python, javascript, typescript, tsx, go, java,
    rust; "text" for anything else (chunked by line windows)."""
    return _LANGUAGES.get(_ext(path), "text")


def scan(
    repo: GitRepo,
    rev: str = "HEAD",
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_file_bytes: int = 1_000_000,
    paths: Collection[str] | None = None,
    redact_secrets: bool = True,
) -> ScanResult:
    """Decide, for every file of `rev`'s tree (or only `paths`), whether it is processed.

    `include`/`exclude` and the repo's `.codefactoryignore` (read from the same commit) use gitignore
    syntax; a non-empty `include` keeps only matching files. Results are sorted by path.
    Secrets in a selected file's text are replaced by `<REDACTED:kind>` (line numbers kept) here, at the
    door, so chunks, their sha256, the skeleton, prompts, cache keys and every output only ever see
    the redacted text.
    """
    selection = select(repo, rev, include=include, exclude=exclude, max_file_bytes=max_file_bytes, paths=paths)
    paths, sizes = selection.paths, selection.sizes

    def one(k: int) -> Examined:
        return examine(paths[k], selection.read(k), redact_secrets)

    count = worker_count(sizes, None, PARALLEL_MIN_BYTES)
    examined = [one(k) for k in range(len(paths))] if count < 2 else fork_map(one, sizes, count)
    return selection.assemble(examined)


# (text, None, secrets replaced by kind) for a file that is kept, else (None, why not, ()).
Examined = tuple[str | None, str | None, tuple[tuple[str, int], ...]]


@dataclass(frozen=True)
class Selection:
    """The part of a scan judged from paths, kinds and sizes alone, with the blobs left to read and examine.

    Blobs are read where they are examined: in forked workers on a large tree, so the parent neither
    reads them in series nor holds them while the workers run.
    """

    repo: GitRepo
    commit: str
    entries: list[TreeEntry]
    reasons: list[str | None]  # per entry: why it is skipped without reading it, None if it is read
    picked: list[int]  # indexes of the entries to read

    @property
    def paths(self) -> list[str]:
        """The paths of the entries to read, in the order of `picked` (a new list at each call)."""
        return [self.entries[i].path for i in self.picked]

    @property
    def sizes(self) -> list[int]:
        """The blob sizes of the entries to read, in the order of `picked`."""
        return [self.entries[i].size for i in self.picked]

    def read(self, k: int) -> bytes:
        """The content of the k-th entry to read."""
        entry = self.entries[self.picked[k]]
        return self.repo.read_blob_at(entry.oid, entry.path, entry.size)

    def assemble(self, examined: Sequence[Examined]) -> ScanResult:
        """The scan's result, given `examine`'s verdict on each picked entry, in the order of `picked`."""
        by_index = dict(zip(self.picked, examined))
        files: list[SourceFile] = []
        skipped: list[SkippedFile] = []
        for i, entry in enumerate(self.entries):
            reason = self.reasons[i]
            if reason is None:
                text, reason, found = by_index[i]
                if text is not None:
                    files.append(SourceFile(path=entry.path, language=detect_language(entry.path), text=text,
                                            blob_sha=entry.oid, secrets=found))
                    continue
            skipped.append(SkippedFile(path=entry.path, reason=reason or "unreadable"))
        return ScanResult(commit=self.commit, files=files, skipped=skipped)


def select(
    repo: GitRepo,
    rev: str = "HEAD",
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_file_bytes: int = 1_000_000,
    paths: Collection[str] | None = None,
) -> Selection:
    """`scan`'s first step: every entry of the tree judged by path, kind and size; the others read."""
    commit = repo.resolve(rev)
    ignore = _ignore_spec(repo, commit)
    include_spec = pathspec.GitIgnoreSpec.from_lines(include) if include else None
    exclude_spec = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None

    entries = repo.list_files(commit, paths=paths)
    reasons = [_reason_by_entry(repo, e, ignore, include_spec, exclude_spec, max_file_bytes) for e in entries]
    return Selection(repo, commit, entries, reasons, [i for i, reason in enumerate(reasons) if reason is None])


def examine(path: str, data: bytes, redact_secrets: bool = True) -> Examined:
    """(text, None, secrets replaced by kind) for a file that is kept, else (None, why not, ())."""
    text, reason = _decode(data)
    if text is not None:
        reason = _reason_by_content(path, text)
    if reason is not None or text is None:
        return None, reason or "unreadable", ()
    if not redact_secrets:
        return text, None, ()
    redaction = redact(text, keep_lines=True)
    return redaction.text, None, tuple(redaction.counts.items())


def _ignore_spec(repo: GitRepo, commit: str) -> pathspec.GitIgnoreSpec | None:
    # Read from the scanned commit, not the work tree, so a scan depends on the commit alone.
    found = repo.list_files(commit, paths=[IGNORE_FILE])
    if not found or found[0].kind != "blob":
        return None
    lines = repo.read_blob(found[0].oid).decode("utf-8", errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _reason_by_entry(
    repo: GitRepo,
    entry: TreeEntry,
    ignore: pathspec.GitIgnoreSpec | None,
    include: pathspec.GitIgnoreSpec | None,
    exclude: pathspec.GitIgnoreSpec | None,
    max_file_bytes: int,
) -> str | None:
    """Why the entry is skipped, judged from its path, kind and size alone (no blob read)."""
    path = entry.path
    name = posixpath.basename(path)
    lower = name.lower()
    ext = _ext(path)
    if entry.kind == "submodule":
        return "submodule"
    if entry.kind == "link":
        return "symlink leaves the repository" if _link_escapes(path, repo.link_target(entry.oid)) else "symlink"
    if ignore is not None and ignore.match_file(path):
        return f"excluded by {IGNORE_FILE}"
    if exclude is not None and exclude.match_file(path):
        return "excluded by an exclude pattern"
    if include is not None and not include.match_file(path):
        return "not matched by the include patterns"
    if any(part in _VENDORED_DIRS for part in path.split("/")[:-1]):
        return "vendored"
    if name in _SECRET_NAMES or lower == ".env" or lower.startswith(".env.") or ext in _SECRET_EXTS:
        return "may contain secrets"
    if name in _LOCKFILES:
        return "lockfile"
    if ext in _BINARY_EXTS:
        return "binary"
    if lower.endswith(_GENERATED_SUFFIXES):
        return "generated"
    if lower.endswith(_MINIFIED_SUFFIXES):
        return "minified"
    if ext in _ALWAYS_DATA_EXTS:
        return "data file"
    if ext in _LARGE_DATA_EXTS and entry.size > DATA_FILE_MAX_BYTES:
        return f"data file over {DATA_FILE_MAX_BYTES // 1000} KB"
    if entry.size > max_file_bytes:
        return f"over size limit ({entry.size} bytes > {max_file_bytes} bytes)"
    if entry.size == 0:
        return "empty"
    return None


def _decode(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) for UTF-8 text with LF line ends, else (None, reason)."""
    if data.startswith(_UTF16_BOMS):
        # UTF-16 is text, but NUL bytes would otherwise make it look binary.
        return None, "not UTF-8 text"
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return None, "binary"
    try:
        text = data.decode("utf-8-sig")  # strips a BOM
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    return text.replace("\r\n", "\n"), None


def _reason_by_content(path: str, text: str) -> str | None:
    """Why the decoded file is skipped, judged from its text."""
    if not text or text.isspace():  # as `not text.strip()`, without copying the text
        return "empty"
    header = "\n".join(text[:_HEADER_CHARS].splitlines()[:_HEADER_LINES])
    if _GENERATED_MARKER.search(header):
        return "generated"
    if (detect_language(path) != "text" or _ext(path) in _MINIFIABLE_EXTS) and not _short_lines(text):
        lines = text.splitlines()
        longest = max(map(len, lines))
        average = len(text) / len(lines)
        if longest > _MAX_LINE or (len(text) >= _MIN_CHARS_FOR_AVG and average > _MAX_AVG_LINE):
            return "minified"
    return None


def _short_lines(text: str) -> bool:
    """True when no line is over _MAX_LINE and lines average at most _MAX_AVG_LINE, found without splitting
    the text into lines (a tenth of the time); False: maybe not, split and measure them.

    A run of 2 * block - 1 characters or more without a newline spans a whole block aligned at a multiple of
    `block`, so a newline in every such block bounds the lines cut at newlines, and the lines splitlines()
    cuts (also at other separators) are no longer. There are at least as many of those as newlines.
    """
    block = _MAX_LINE // 2
    if len(text) > _MAX_AVG_LINE * text.count("\n"):
        return False
    return all(text.find("\n", start, start + block) >= 0 for start in range(0, len(text) - block + 1, block))


def _link_escapes(path: str, target: str) -> bool:
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")


def _ext(path: str) -> str:
    return posixpath.splitext(path)[1].lower()
