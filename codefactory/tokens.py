"""Token counting for budgets and estimates.

o200k_base, offline (tiktoken downloads its encodings on first use), by one of two tokenizers that count
alike (tests/test_tokens.py): bpe-openai, ready in ~0.06 s, for a few files' worth of text; gigatoken, which
counts code 3-10x faster but takes ~0.28 s to start, once a large tree is about to be chunked
(`load_tokenizer(bulk=True)`; bench/README.md). The local backend sizes its own prompts with the model's
tokenizer; this count is the provider-neutral estimate used for chunk bounds, skeleton budgets and dry-run plans.
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

# bpe-openai refuses inputs over 1M characters; longer text is counted in pieces cut at newlines.
_PIECE = 200_000


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    """The Rust tokenizer behind bpe-openai's Encoding (its stub-typed `_bindings` module).

    Its count() skips building the token list, and count_till_limit() stops at a limit: chunking asks
    "does this span fit?" far more often than "how many tokens?", mostly of spans much too long to fit
    (bench/README.md). The Encoding wrapper would also build Python rank tables first (~0.2 s).
    """
    try:
        tokenizer = _bindings().tokenizer_for_encoding("o200k_base")
        if hasattr(tokenizer, "count") and hasattr(tokenizer, "count_till_limit"):
            return tokenizer
    except (ImportError, AttributeError, OSError, StopIteration):
        pass
    return None  # another bpe-openai layout: fall back to the public Encoding


def _bindings() -> Any:
    """bpe-openai's extension module, loaded from its file without running the package's __init__: that
    decodes three whole vocabularies into Python dicts (~0.8 s at every CLI start) that counting never uses."""
    loaded = sys.modules.get("bpe_openai._bindings")
    if loaded is not None:
        return loaded
    binary = next(p for p in sorted(_bpe_openai_dir().glob("_bindings.*")) if p.suffix in (".so", ".pyd"))
    spec = importlib.util.spec_from_file_location("bpe_openai._bindings", binary)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {binary}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["bpe_openai._bindings"] = module  # a later `import bpe_openai` reuses it
    return module


def _bpe_openai_dir() -> Path:
    package = importlib.util.find_spec("bpe_openai")
    if package is None or not package.submodule_search_locations:
        raise ImportError("bpe_openai is not installed")
    return Path(next(iter(package.submodule_search_locations)))


class _GigatokenCounter:
    """gigatoken's o200k tokenizer behind the count calls of bpe-openai's. It has no call that only counts: it
    encodes into a numpy array, and even so counts code 3-10x faster than bpe-openai's count."""

    def __init__(self, encode: Callable[[str], Any]) -> None:
        self._encode = encode

    def count(self, text: str) -> int:
        try:
            return len(self._encode(text))
        except TypeError:  # lone surrogates: not encodable as UTF-8
            return len(self._encode(_sanitized(text)))

    def count_till_limit(self, text: str, limit: int) -> int | None:
        count = self.count(text)
        return count if count <= limit else None


# A gigatoken release that counts this differently from bpe-openai (34 tokens, tests/test_tokens.py) is not used.
_PROBE = "def total(self) -> float:\n    return sum(self.items)  # ¿Qué? 日本語 😀\r\n\n\t 'll IT'S <|endoftext|>\n"
_PROBE_TOKENS = 34


@lru_cache(maxsize=1)
def _gigatoken() -> _GigatokenCounter | None:
    try:
        import gigatoken

        ranks = gzip.decompress((_bpe_openai_dir() / "data" / "o200k_base.tiktoken.gz").read_bytes())
    except (ImportError, OSError, EOFError, gzip.BadGzipFile):
        return None
    # gigatoken reads a vocabulary only from a file; the one bpe-openai ships is OpenAI's o200k_base.tiktoken.
    # No special tokens: text is counted as text, as bpe-openai's count does.
    try:
        with tempfile.TemporaryDirectory(prefix="codefactory-") as scratch:
            path = Path(scratch) / "o200k_base.tiktoken"
            path.write_bytes(ranks)
            tokenizer = gigatoken.Tokenizer.from_tiktoken(path, pretokenizer="o200k", special_tokens={})
    except Exception:  # noqa: BLE001 - no scratch space, an unusable gigatoken: counting stays with bpe-openai
        return None
    counter = _GigatokenCounter(tokenizer.backend.encode)
    return counter if counter.count(_PROBE) == _PROBE_TOKENS else None


_bulk: _GigatokenCounter | None = None


def load_tokenizer(bulk: bool = False) -> None:
    """Build the tokenizer now rather than at the first count (a process about to fork workers shares it).

    `bulk`: a large tree's text is about to be counted, so counts go to gigatoken from now on, if it is installed.
    """
    global _bulk
    if bulk and _bulk is None:
        _bulk = _gigatoken()
    if _bulk is None and _tokenizer() is None:
        _encoding()


def _counter() -> Any:
    """What counts: gigatoken once a bulk load made it, else bpe-openai's extension (None: its public API)."""
    return _bulk if _bulk is not None else _tokenizer()


@lru_cache(maxsize=1)
def _encoding() -> Any:
    import bpe_openai  # the public API, only when the extension could not be used directly

    return bpe_openai.get_encoding("o200k_base")


def _pieces(text: str) -> Iterator[str]:
    if len(text) <= _PIECE:
        yield text
        return
    start = 0
    while start < len(text):
        end = min(len(text), start + _PIECE)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def _sanitized(text: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8; the wrapper replaces them the same way.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def count_tokens(text: str) -> int:
    if not text:
        return 0
    tokenizer = _counter()
    if tokenizer is None:
        encode = _encoding().encode_ordinary
        return sum(len(encode(piece)) for piece in _pieces(text))
    total = 0
    for piece in _pieces(text):
        try:
            total += tokenizer.count(piece)
        except UnicodeEncodeError:
            total += tokenizer.count(_sanitized(piece))
    return total


def count_tokens_upto(text: str, limit: int) -> int | None:
    """count_tokens(text) when it is at most `limit`, else None; tokenizing stops soon after the limit."""
    if not text:
        return 0
    tokenizer = _counter()
    if tokenizer is None:
        count = count_tokens(text)
        return count if count <= limit else None
    total = 0
    for piece in _pieces(text):
        try:
            count = tokenizer.count_till_limit(piece, limit - total)
        except UnicodeEncodeError:
            count = tokenizer.count_till_limit(_sanitized(piece), limit - total)
        if count is None:
            return None
        total += count
    return total
