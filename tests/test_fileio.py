"""Whole-file writes: the bytes json would give, replaced atomically."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from codefactory.fileio import (
    _indented_pieces,
    atomic_write_bytes,
    atomic_write_json,
    complete_byte_lines,
    complete_lines,
    encode_json,
)


def test_json_is_written_as_json_dumps_indented_would(tmp_path: Path) -> None:
    data = {"chunks": [{"id": f"a.py::f{i}", "text": f"é\U0001f600\"\\\n{i}", "n": i, "x": None, "f": 0.5,
                        "nested": {"flags": [True, False], "empty": {}}} for i in range(3000)], "": []}
    atomic_write_json(tmp_path / "out.json", data)
    assert (tmp_path / "out.json").read_text(encoding="utf-8") == json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"], "no temp file left behind"


def test_bytes_in_pieces_replace_the_file(tmp_path: Path) -> None:
    target = tmp_path / "chunks.json"
    target.write_text("old")
    atomic_write_bytes(target, [b"[\n", memoryview(b"xx12345")[2:], b"\n]\n"])
    assert target.read_bytes() == b"[\n12345\n]\n"


def test_json_with_keys_only_the_json_module_writes_falls_back_to_it(tmp_path: Path) -> None:
    data = [{"id": "a", "n": 1}, {"by_line": {1: "x", 2.5: "y"}}, ("t", float("nan"))]
    atomic_write_json(tmp_path / "out.json", data)
    assert (tmp_path / "out.json").read_text(encoding="utf-8") == json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def test_values_encoded_beforehand_are_written_as_they_are(tmp_path: Path) -> None:
    """What workers encode (chunks, a file's symbols) gives the same file as the plain values."""
    chunks = [{"id": f"a.py::f{i}", "text": f"é\U0001f600\"\\\n{i}", "tokens": i, "nested": {"x": [1, None]}}
              for i in range(50)]
    data = {"tree": "a.py", "files": chunks, "n": 3}
    atomic_write_json(tmp_path / "plain.json", data)
    encoded = {**data, "files": [encode_json(c, depth=2) for c in chunks]}
    atomic_write_json(tmp_path / "encoded.json", encoded)
    assert (tmp_path / "encoded.json").read_bytes() == (tmp_path / "plain.json").read_bytes()
    atomic_write_json(tmp_path / "list.json", [encode_json(c, depth=1) for c in chunks])
    assert (tmp_path / "list.json").read_text(encoding="utf-8") == json.dumps(chunks, ensure_ascii=False, indent=2) + "\n"


def test_the_items_of_a_files_two_outer_levels_are_written_piece_by_piece(tmp_path: Path) -> None:
    """project_skeleton.json's files sit at the second level: not joined into one string as large as the file."""
    files = [encode_json({"path": f"m{i}.py", "symbols": ["\U0001f600" * 50]}, depth=2) for i in range(200)]
    data = {"tree": "m0.py", "files": files, "centrality": {f"m{i}.py": i / 7 for i in range(200)}}
    pieces = list(_indented_pieces(data))
    assert max(map(len, pieces)) == max(map(len, files))
    written = b"".join(pieces).decode()
    assert written == json.dumps(json.loads(written), ensure_ascii=False, indent=2)


def test_complete_lines_as_bytes_are_the_complete_lines_encoded(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    assert complete_byte_lines(path) == [] == list(complete_lines(path))
    path.write_bytes('{"id":"a"}\n\n  \n{"id":"é"}\n{"id":"torn'.encode())
    assert complete_byte_lines(path) == [line.encode() for line in complete_lines(path)]
    assert complete_byte_lines(path) == [b'{"id":"a"}\n', '{"id":"é"}\n'.encode()]


def test_chunk_and_symbol_json_templates_are_what_the_encoder_writes(tmp_path: Path) -> None:
    """Chunk.json_element and FileSymbols.json_element are written out as templates for speed: same text."""
    from codefactory.models import Chunk
    from codefactory.skeleton import FileSymbols, SymbolInfo

    awkward = 'q"uote \\ back\nnew\ttab \x00 é 日本 😀 \u2028 \udc80'
    chunk = Chunk(id=f"a.py::{awkward}", path="a.py", language="python", kind="function", symbol=awkward,
                  start_line=1, end_line=12, sha256="0" * 64, tokens=40, text=awkward * 3)
    assert chunk.json_element == encode_json(chunk.to_dict(), depth=1)
    assert json.loads(chunk.json_element) == chunk.to_dict()
    # UTF-8 cannot hold the lone surrogate: written as JSON's escape for it, read back as the same string
    atomic_write_json(tmp_path / "chunks.json", [chunk.json_element])
    assert json.loads((tmp_path / "chunks.json").read_bytes()) == [chunk.to_dict()]
    assert b"\\udc80" in (tmp_path / "chunks.json").read_bytes()
    for symbols in ([], [SymbolInfo("function", awkward, f"def f() -> {awkward}", awkward, 3),
                         SymbolInfo("class", "C", "class C:", "", 10)]):
        file_symbols = FileSymbols(path=f"p/{awkward}.py", language="python", symbols=symbols)
        assert file_symbols.json_element == encode_json(file_symbols.to_dict(), depth=2)


def test_written_files_get_the_mode_open_gives_or_keep_the_one_they_had(tmp_path: Path) -> None:
    from codefactory import fileio

    new = tmp_path / "chunks.json"
    atomic_write_json(new, [1])
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~fileio._UMASK, "not the temporary file's private 0600"
    (tmp_path / "plain.txt").write_text("x")
    assert stat.S_IMODE(new.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    new.chmod(0o640)
    atomic_write_json(new, [2])
    assert stat.S_IMODE(new.stat().st_mode) == 0o640
    assert json.loads(new.read_text()) == [2]
