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
