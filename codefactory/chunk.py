"""Split source files into chunks at function, method and class boundaries (SPEC §4 Chunk).

A definition that fits `max_tokens` is one chunk; a larger class is split into a header chunk and its
members; a larger function into line-window parts (`path::Sym#part2`). Code between definitions becomes
`module` chunks; tiny siblings are merged. Files without a grammar (or whose parse fails) are cut into
line windows. The output depends only on the input.

Boundaries are content-defined: windows start at rows chosen by their own text, and long runs of tiny
siblings break at pieces chosen by their names, never by counting from the top of the file. An edit
changes the chunks it falls in and leaves the others' text alone, so Scene-1 (cached by chunk text)
asks again only about code that changed (issue 7).
"""

from __future__ import annotations

import hashlib
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .models import Chunk, SourceFile
from .outline import Definition, outline
from .tokens import count_tokens, count_tokens_upto

_PUNCTUATION_ONLY = frozenset("{}()[];, \t\r")
_ENCODE_CHARS = 100_000
_MAX_CHARS_PER_TOKEN = 16  # beyond this many characters per allowed token, a span cannot fit  # the encoder refuses inputs over 1M chars / 200k tokens
_REACH_DIVISOR = 2  # a window starts at a row that beats the rows within window_lines / 2 on either side
_GROUP_REACH_DIVISOR = 4  # a run of tiny pieces breaks at a piece that beats those within max_tokens / 4
_BLOCK_ENDS = frozenset({"}", "};", "},", ")", "),", "]", "],", "end", "fi", "done", "esac"})


def _count(text: str) -> int:
    """count_tokens, in slices for huge spans (minified files): those only need to be known as too big."""
    if len(text) <= _ENCODE_CHARS:
        return count_tokens(text)
    return sum(count_tokens(text[i : i + _ENCODE_CHARS]) for i in range(0, len(text), _ENCODE_CHARS))


def _peaks(keys: list[int], reach: int) -> list[int]:
    """Indexes whose key (>= 0) beats every key within `reach` on either side; of equal keys, the first.

    A sliding maximum over windows of 2 * reach + 1 keys: linear in len(keys).
    """
    peaks: list[int] = []
    window: deque[int] = deque()  # indexes of decreasing keys; equal keys keep the first
    for right in range(len(keys) + reach):
        if right < len(keys):
            while window and keys[window[-1]] < keys[right]:
                window.pop()
            window.append(right)
        center = right - reach
        if center < 0:
            continue
        while window[0] < center - reach:
            window.popleft()
        if window[0] == center and keys[center] >= 0:
            peaks.append(center)
    return peaks


@dataclass
class _Piece:
    """A candidate chunk: a span of rows (0-based, inclusive) before merging."""

    kind: str
    symbol: str
    start: int
    end: int
    tokens: int
    name: str = ""  # id suffix after "path::" ("Sym", "Sym#2", "Sym#part3"); "" means a window id
    mergeable: bool = True
    text: str | None = None  # set only for a slice of one over-long line


@dataclass
class _Group:
    pieces: list[_Piece] = field(default_factory=list)
    tokens: int = 0


def chunk_files(files: Iterable[SourceFile], **bounds: int) -> list[Chunk]:
    """Chunks of every file, concatenated in file order; `bounds` are passed to `chunk_file`."""
    chunks: list[Chunk] = []
    for file in files:
        chunks.extend(chunk_file(file, **bounds))
    return chunks


def chunk_file(file: SourceFile, *, max_tokens: int = 800, min_tokens: int = 40, window_lines: int = 60) -> list[Chunk]:
    """Split one file into chunks with ids unique within the file, in line order."""
    if max_tokens < 1 or window_lines < 1 or min_tokens < 0:
        raise ValueError("chunk bounds must be positive (max_tokens, window_lines) and min_tokens >= 0")
    return _Chunker(file, max_tokens, min_tokens, window_lines).run()


class _Chunker:
    def __init__(self, file: SourceFile, max_tokens: int, min_tokens: int, window_lines: int) -> None:
        self.file = file
        self.max = max_tokens
        self.min = min_tokens
        self.window_lines = window_lines
        self.lines = file.text.split("\n")  # tree-sitter rows count "\n" only, unlike str.splitlines
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.import_rows: frozenset[int] = frozenset()
        self.names_used: dict[str, int] = {}

    def run(self) -> list[Chunk]:
        last = len(self.lines) - 1
        tree = outline(self.file)
        pieces: list[_Piece | _Group]
        if tree is None:
            pieces = list(self.windowed("window", "", 0, last, name=""))
        else:
            self.import_rows = tree.import_rows
            pieces = self.scope(tree.definitions, 0, last, owner=None)
        return self.materialize(pieces)

    # -- spans ---------------------------------------------------------------------------------
    def text(self, start: int, end: int) -> str:
        return "\n".join(self.lines[start : end + 1])

    def count(self, start: int, end: int) -> int:
        return _count(self.text(start, end))

    def count_upto(self, start: int, end: int) -> int:
        """The exact tokens of rows start..end when they fit max_tokens, else max_tokens + 1.

        Most spans asked about are definitions far too big to fit: the tokenizer stops at the limit
        instead of counting them whole (half of all tokenizing on large trees, bench/README.md).
        """
        text = self.text(start, end)
        if len(text) > _ENCODE_CHARS:
            return _count(text)
        tokens = count_tokens_upto(text, self.max)
        return self.max + 1 if tokens is None else tokens

    def blank(self, row: int) -> bool:
        return not self.lines[row].strip()

    def trim(self, start: int, end: int) -> tuple[int, int]:
        while start <= end and self.blank(start):
            start += 1
        while end >= start and self.blank(end):
            end -= 1
        return start, end

    def unique(self, qualified: str) -> str:
        seen = self.names_used.get(qualified, 0) + 1
        self.names_used[qualified] = seen
        return qualified if seen == 1 else f"{qualified}#{seen}"

    # -- structure -----------------------------------------------------------------------------
    def scope(self, definitions: Iterable[Definition], lo: int, hi: int, owner: Definition | None,
              head: list[_Piece] | None = None) -> list[_Piece | _Group]:
        """Pieces for rows lo..hi holding `definitions`, with tiny neighbours merged."""
        pieces: list[_Piece | _Group] = list(head or [])
        cursor = lo
        for definition in definitions:
            start = max(definition.start, cursor)
            if start > definition.end:  # shares its only line with the previous definition
                continue
            pieces.extend(self.gap(cursor, start - 1, owner))
            pieces.extend(self.definition(definition, start))
            cursor = definition.end + 1
        pieces.extend(self.gap(cursor, hi, owner))
        return self.merge(pieces)

    def definition(self, definition: Definition, start: int) -> list[_Piece | _Group]:
        kind = "class" if definition.kind in ("class", "namespace") else definition.kind
        name = self.unique(definition.qualified)
        end = definition.end
        tokens = self.count_upto(start, end)
        if tokens <= self.max:
            return [_Piece(kind, definition.qualified, start, end, tokens, name)]
        if kind != "class" or not definition.members:
            return list(self.windowed(kind, definition.qualified, start, end, name=name))
        # Too big a class: its header (signature, docstring, fields up to the first member), then members.
        first = max(definition.members[0].start, start)
        head: list[_Piece] = []
        head_start, head_end = self.trim(start, first - 1)
        if head_start <= head_end:
            head_tokens = self.count(head_start, head_end)
            if head_tokens <= self.max:
                head = [_Piece("class", definition.qualified, head_start, head_end, head_tokens, name)]
            else:
                head = self.windowed("class", definition.qualified, head_start, head_end, name=name)
        members = self.scope(definition.members, first, end, owner=definition, head=head)
        for item in members:  # merged within the class already; never across its boundary
            if isinstance(item, _Piece):
                item.mergeable = False
        return members

    def gap(self, lo: int, hi: int, owner: Definition | None) -> list[_Piece]:
        """Code between definitions: module code, or fields/statements inside a split class."""
        lo, hi = self.trim(lo, hi)
        if lo > hi:
            return []
        rows = range(lo, hi + 1)
        if all(_PUNCTUATION_ONLY.issuperset(self.lines[r]) for r in rows):
            return []  # closing braces left between a split class's members
        in_class = owner is not None and owner.kind == "class"
        kind, symbol = ("class", owner.qualified) if in_class and owner else ("module", "")
        tokens = self.count_upto(lo, hi)
        if tokens < self.min and all(r in self.import_rows or self.blank(r) for r in rows):
            return []  # a few imports say nothing on their own
        if tokens <= self.max:
            return [_Piece(kind, symbol, lo, hi, tokens)]
        return self.windowed(kind, symbol, lo, hi, name="", mergeable=False)

    # -- windows -------------------------------------------------------------------------------
    def windowed(self, kind: str, symbol: str, lo: int, hi: int, *, name: str,
                 mergeable: bool = False) -> list[_Piece]:
        """Rows lo..hi as windows of at most window_lines lines and max_tokens tokens.

        Named windows are parts of one definition ("Sym#part1", ...); unnamed ones get window ids.
        Windows end where the content says (see `spans`), not at multiples of a length: an edit
        changes the window it falls in, not every window after it.
        """
        pieces: list[_Piece] = []
        for start, end, tokens in self.spans(lo, hi, definition=bool(name)):
            if tokens is not None:
                pieces.append(_Piece(kind, symbol, start, end, tokens, mergeable=mergeable))
            else:  # no boundary left to cut at: one over-long line, or lines too dense to split by content
                pieces.extend(self.fixed_windows(kind, symbol, start, end, mergeable))
        if name:
            for number, piece in enumerate(pieces, 1):
                piece.name = f"{name}#part{number}" if len(pieces) > 1 else name
        return pieces

    def spans(self, lo: int, hi: int, definition: bool) -> list[tuple[int, int, int | None]]:
        """Content-defined windows of rows lo..hi: (start, end, tokens), tokens None when it does not fit.

        A row starts a window when its cut key is the largest within `reach` rows on either side
        (local maxima): whether a row is a cut depends only on the rows around it, so an insertion
        moves the cuts near it and no others. Spans that are still too big are halved at their
        strongest row (`halve`), which depends only on the span itself.
        """
        lo, hi = self.trim(lo, hi)
        if lo > hi:
            return []
        tokens = self.fits(lo, hi)
        if tokens is not None:
            return [(lo, hi, tokens)]
        # The outer indentation of the span's statements: a definition's body, or the file's own.
        lines = self.lines[lo : hi + 1]
        indents = [len(line) - len(line.lstrip()) for line in lines]
        outer = indents[0]
        base = min((indent for indent, line in zip(indents[1:], lines[1:]) if indent > outer and line.strip()),
                   default=outer) if definition else outer
        reach = max(1, self.window_lines // _REACH_DIVISOR)
        keys = self.cut_keys(lo, hi, base, indents)
        # Rows within `reach` of the span's ends never start a window: no short window at either end.
        inner = [key if reach <= i <= len(keys) - reach else -1 for i, key in enumerate(keys)]
        bounds = [lo, *(lo + i for i in _peaks(inner, reach)), hi + 1]
        out: list[tuple[int, int, int | None]] = []
        for start, stop in zip(bounds, bounds[1:]):
            out.extend(self.halve(start, stop - 1, keys, lo))
        return out

    def halve(self, lo: int, hi: int, keys: list[int], origin: int) -> list[tuple[int, int, int | None]]:
        """Rows lo..hi, cut at their strongest row in the middle half until every part fits.

        `keys[row - origin]` is the cut key of a row, -1 for a blank one.
        """
        lo, hi = self.trim(lo, hi)
        if lo > hi:
            return []
        tokens = self.fits(lo, hi)
        if tokens is not None:
            return [(lo, hi, tokens)]
        quarter = max(1, (hi - lo + 1) // 4)  # keeps both halves at least a quarter: few tiny parts
        # The best kind of row first, then the most even halves: the span's own ends are content-defined,
        # so an edit elsewhere leaves its halves alone.
        middle = lo + hi + 1
        cut, best = -1, (-1, 0, 0)
        for row in range(lo + quarter, hi + 2 - quarter):
            key = keys[row - origin]
            if key >= 0 and (candidate := (key >> 32, -abs(2 * row - middle), key)) > best:
                cut, best = row, candidate
        if cut < 0:
            return [(lo, hi, None)]
        return self.halve(lo, cut - 1, keys, origin) + self.halve(cut, hi, keys, origin)

    def fits(self, start: int, end: int) -> int | None:
        """The tokens of rows start..end when they fit window_lines and max_tokens, else None."""
        if end - start + 1 > self.window_lines:
            return None
        if sum(len(self.lines[r]) + 1 for r in range(start, end + 1)) > self.max * _MAX_CHARS_PER_TOKEN:
            return None
        tokens = self.count_upto(start, end)
        return tokens if tokens <= self.max else None

    def cut_keys(self, lo: int, hi: int, base: int, indents: list[int]) -> list[int]:
        """How good a place to start a window each row lo..hi is (-1 for a blank row), from its own text
        and the row above only; `indents[i]` is row lo + i's indentation.

        Rows after a blank line (paragraphs, blocks of statements), after a closing bracket, and at
        the span's outer indentation come first; a hash of the row orders the rest, so rows are
        chosen by content, never by position (of equal rows, the first).
        """
        lines = self.lines
        crc32 = zlib.crc32
        keys: list[int] = []
        above = lines[lo - 1].strip()  # the last row when lo is 0, as lines[-1] gives
        for row, indent in zip(range(lo, hi + 1), indents):
            line = lines[row]
            stripped = line.strip()
            if not stripped:
                keys.append(-1)
            else:
                score = 2 if not above else 1 if above in _BLOCK_ENDS else 0
                if indent <= base:
                    score += 1
                keys.append(score << 32 | crc32(line.encode("utf-8", "surrogatepass")))
            above = stripped
        return keys

    def fixed_windows(self, kind: str, symbol: str, lo: int, hi: int, mergeable: bool) -> list[_Piece]:
        """Rows lo..hi as equal line windows shrunk until they fit; one over-long line sliced."""
        pieces: list[_Piece] = []
        # equal windows: 130 rows with window_lines=60 become 44+44+42, not 60+60+10
        windows = -(-(hi - lo + 1) // self.window_lines)
        size = -(-(hi - lo + 1) // windows) if windows else self.window_lines
        start = lo
        while start <= hi:
            start, _ = self.trim(start, hi)
            if start > hi:
                break
            end = min(start + size - 1, hi)
            if end < hi:
                end = self.soft_end(start, end)
            start, end = self.trim(start, self.char_cap(start, end))
            tokens = self.count(start, end) if len(self.lines[start]) <= self.max * _MAX_CHARS_PER_TOKEN else self.max + 1
            while tokens > self.max and end > start:
                # shrink in proportion to the overshoot; the margin keeps the retries few
                shorter = start + (end - start + 1) * self.max * 9 // (tokens * 10) - 1
                start, end = self.trim(start, min(max(shorter, start), end - 1))
                tokens = self.count(start, end)
            if tokens > self.max:
                pieces.extend(_Piece(kind, symbol, start, start, t, text=s, mergeable=False)
                              for s, t in self.split_line(self.lines[start]))
            else:
                pieces.append(_Piece(kind, symbol, start, end, tokens, mergeable=mergeable))
            start = end + 1
        return pieces

    def char_cap(self, start: int, end: int) -> int:
        """Shorten a window that has far too many characters to fit before counting its tokens."""
        limit = self.max * _MAX_CHARS_PER_TOKEN
        chars = 0
        for row in range(start, end + 1):
            chars += len(self.lines[row]) + 1
            if chars > limit:
                return max(start, row - 1)
        return end

    def soft_end(self, start: int, end: int) -> int:
        """Prefer to end a window before a blank line in its last third, so parts break between blocks."""
        for row in range(end + 1, end - (end - start) // 3, -1):
            if row > start and self.blank(row):
                return row - 1
        return end

    def split_line(self, line: str) -> list[tuple[str, int]]:
        """One line longer than max_tokens (minified code, data) cut into slices that fit."""
        slices: list[tuple[str, int]] = []
        chars_per_token = 4.0  # refined from each slice, so every slice is counted about once
        position = 0
        while position < len(line):
            size = max(1, int(self.max * chars_per_token * 0.95))
            tokens = _count(line[position : position + size])
            while tokens > self.max and size > 1:
                size = max(1, size * self.max * 9 // (tokens * 10))
                tokens = _count(line[position : position + size])
            piece = line[position : position + size]
            slices.append((piece, tokens))
            chars_per_token = max(1.0, len(piece) / max(tokens, 1))
            position += len(piece)
        return slices

    # -- merging -------------------------------------------------------------------------------
    def merge(self, items: list[_Piece | _Group]) -> list[_Piece | _Group]:
        """Merge tiny pieces (< min_tokens) into adjacent small siblings while the total fits."""
        out: list[_Piece | _Group] = []
        group: _Group | None = None
        small = self.max // 2
        anchors = self.anchors(items)
        for index, item in enumerate(items):
            if isinstance(item, _Piece) and item.mergeable:
                if group is not None:
                    joint = group.tokens + item.tokens + self.between(group.pieces[-1].end, item.start)
                    tiny = group.tokens < self.min or item.tokens < self.min
                    # Inside a run of tiny pieces an anchor closes a group that is big enough on its own,
                    # so the run is grouped the same way before and after an edit further up.
                    anchored = index in anchors and group.tokens >= self.min and group.pieces[-1].tokens < self.min
                    if tiny and not anchored and group.tokens <= small and item.tokens <= small and joint <= self.max:
                        group.pieces.append(item)
                        group.tokens = joint
                        continue
                    out.append(group.pieces[0] if len(group.pieces) == 1 else group)
                group = _Group([item], item.tokens)
                continue
            if group is not None:
                out.append(group.pieces[0] if len(group.pieces) == 1 else group)
                group = None
            out.append(item)
        if group is not None:
            out.append(group.pieces[0] if len(group.pieces) == 1 else group)
        return out

    def anchors(self, items: list[_Piece | _Group]) -> set[int]:
        """Indexes of the tiny pieces that may start a group, chosen by content alone.

        A tiny piece is an anchor when the hash of its name beats every other tiny piece that starts
        within max_tokens / 4 tokens of it (local maxima, as for windows). Without anchors a long run of
        tiny pieces is cut greedily where groups fill up, and one piece added near the top of the run
        shifts every group below it.
        """
        reach = max(1, self.max // _GROUP_REACH_DIVISOR)
        starts: list[int] = []
        keys: list[int] = []
        position = 0
        for item in items:
            starts.append(position)
            position += item.tokens
            if isinstance(item, _Piece) and item.mergeable and item.tokens < self.min:
                # By name first, so an edit to the body of a definition does not move the anchors.
                text = item.text if item.text is not None else self.text(item.start, item.end)
                data = text.encode("utf-8", "surrogatepass")
                name = item.symbol.encode("utf-8", "surrogatepass") if item.symbol else data
                keys.append(zlib.crc32(name) << 32 | zlib.crc32(data))
            else:
                keys.append(-1)
        # A run of tiny pieces that fits one group is merged whole as before: no anchors in it.
        run_start = 0
        for index in range(len(keys) + 1):
            if index < len(keys) and keys[index] >= 0:
                continue
            if sum(item.tokens for item in items[run_start:index]) <= self.max // 2:
                keys[run_start:index] = [-1] * (index - run_start)
            run_start = index + 1
        anchors: set[int] = set()
        for index, key in enumerate(keys):
            if key < 0:
                continue
            before = index - 1
            while before >= 0 and starts[index] - starts[before] <= reach and keys[before] < key:
                before -= 1
            if before >= 0 and starts[index] - starts[before] <= reach:
                continue  # an equal or larger key shortly before: of equal keys the first wins
            after = index + 1
            while after < len(keys) and starts[after] - starts[index] <= reach and keys[after] <= key:
                after += 1
            if after == len(keys) or starts[after] - starts[index] > reach:
                anchors.add(index)
        return anchors

    def between(self, end: int, start: int) -> int:
        """Tokens of the rows separating two merged pieces (blank lines, dropped imports or braces)."""
        if start - end <= 1:
            return 1
        if all(self.blank(r) for r in range(end + 1, start)):
            return start - end
        return self.count(end + 1, start - 1) + 1

    # -- output --------------------------------------------------------------------------------
    def materialize(self, items: list[_Piece | _Group]) -> list[Chunk]:
        chunks: list[Chunk] = []
        ids: set[str] = set()
        for item in items:
            for chunk in self.to_chunks(item):
                chunk_id = chunk.id
                number = 1
                while chunk_id in ids:  # e.g. two slices of one long line
                    number += 1
                    chunk_id = f"{chunk.id}#{number}"
                ids.add(chunk_id)
                chunks.append(chunk if chunk_id == chunk.id else replace(chunk, id=chunk_id))
        return chunks

    def to_chunks(self, item: _Piece | _Group) -> list[Chunk]:
        if isinstance(item, _Piece):
            text = item.text if item.text is not None else self.text(item.start, item.end)
            return [self.chunk(item.kind, item.symbol, item.name, item.start, item.end, text, item.tokens)]
        start, end = item.pieces[0].start, item.pieces[-1].end
        text = self.text(start, end)
        tokens = _count(text)
        if tokens > self.max:  # token counts do not quite add up across joins: keep the pieces apart
            return [c for piece in item.pieces for c in self.to_chunks(piece)]
        named = [p for p in item.pieces if p.name]
        kind = named[0].kind if named else item.pieces[0].kind
        symbol = ", ".join(p.symbol for p in named) if named else item.pieces[0].symbol
        name = "+".join(p.name for p in named)
        return [self.chunk(kind, symbol, name, start, end, text, tokens)]

    def chunk(self, kind: str, symbol: str, name: str, start: int, end: int, text: str, tokens: int) -> Chunk:
        path = self.file.path
        chunk_id = f"{path}::{name}" if name else f"{path}#L{start + 1}-L{end + 1}"
        return Chunk(
            id=chunk_id,
            path=path,
            language=self.file.language,
            kind=kind,  # type: ignore[arg-type]
            symbol=symbol,
            start_line=start + 1,
            end_line=end + 1,
            sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
            tokens=tokens,
            text=text,
        )

