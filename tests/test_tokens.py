from codefactory.tokens import count_tokens


def test_counts_small_text() -> None:
    assert count_tokens("") == 0
    assert 3 <= count_tokens("def place(order): return order") <= 10


def test_counts_text_beyond_the_encoder_limit_in_pieces() -> None:
    line = "total = price * quantity  # per line\n"
    text = line * 60_000  # ~2.2 MB, over bpe-openai's 1M-character limit
    assert count_tokens(text) == count_tokens(line * 1000) * 60


def test_count_upto_is_exact_within_the_limit_and_none_beyond() -> None:
    from codefactory.tokens import count_tokens_upto

    text = "def place(order):\n    return order.total() * 1.2\n" * 40
    exact = count_tokens(text)
    assert count_tokens_upto(text, exact) == exact
    assert count_tokens_upto(text, exact + 100) == exact
    assert count_tokens_upto(text, exact - 1) is None
    assert count_tokens_upto("", 0) == 0
    long = "total = price * quantity  # per line\n" * 60_000  # counted in pieces, like count_tokens
    assert count_tokens_upto(long, 10**7) == count_tokens(long)
    assert count_tokens_upto(long, 1000) is None


def test_the_public_encoding_fallback_counts_the_same(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from codefactory import tokens

    text = "class Order:\n    def total(self) -> float:\n        return sum(self.items)\n" * 20
    expected = tokens.count_tokens(text)
    monkeypatch.setattr(tokens, "_tokenizer", lambda: None)  # as with a bpe-openai of another layout
    assert tokens.count_tokens(text) == expected
    assert tokens.count_tokens_upto(text, expected) == expected
    assert tokens.count_tokens_upto(text, expected - 1) is None


def test_bulk_counts_go_to_gigatoken_and_equal_bpe_openai_counts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Large trees are counted by gigatoken: chunk bounds must not depend on which tokenizer counted them."""
    import inspect
    import json
    import random

    from codefactory import tokens
    from codefactory.tokens import count_tokens_upto

    monkeypatch.setattr(tokens, "_bulk", None)  # whatever an earlier test loaded is restored afterwards
    rng = random.Random(7)
    alphabet = [*" \t\n\r\x0b\x0c\xa0\u2000\u3000aZz09_'\"sStTlLdDmMvVrReE.,;:!?-+*/\\()[]{}<>#@$%^&|~`=",
                *"éÉßçñÅøłĳǅǈΑβγ日本語中文한국어ไทย😀👍🏽🇺🇸\u200d\u0301\u0308€²Ⅻ١٢٣",
                "<|endoftext|>", "'re", "'VE", "\r\n", "\n\n\n", "    "]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(3000)]
    texts += [inspect.getsource(module) for module in (inspect, json.decoder, random)]  # real code, not ours
    texts += ["a\udc80b\ud800", "total = price * quantity  # per line\n" * 60_000]
    expected = [count_tokens(t) for t in texts]
    assert tokens._counter() is not None and tokens._bulk is None  # counted by bpe-openai
    assert count_tokens(tokens._PROBE) == tokens._PROBE_TOKENS  # what gigatoken is checked against at load

    tokens.load_tokenizer(bulk=True)
    assert isinstance(tokens._counter(), tokens._GigatokenCounter)
    assert [count_tokens(t) for t in texts] == expected
    assert count_tokens_upto(texts[-3], expected[-3]) == expected[-3]
    assert count_tokens_upto(texts[-3], expected[-3] - 1) is None


def test_without_scratch_space_for_gigatoken_counting_stays_with_bpe_openai(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tempfile

    from codefactory import tokens

    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a-file" / "tmp"))  # mkdtemp fails there
    monkeypatch.setattr(tokens, "_bulk", None)
    tokens._gigatoken.cache_clear()
    try:
        tokens.load_tokenizer(bulk=True)
        assert tokens._bulk is None
        assert count_tokens(tokens._PROBE) == tokens._PROBE_TOKENS
    finally:
        tokens._gigatoken.cache_clear()  # a later bulk load builds it again, with scratch space
