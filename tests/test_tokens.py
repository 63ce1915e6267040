from codefactory.tokens import count_tokens


def test_counts_small_text() -> None:
    assert count_tokens("") == 0
    assert 3 <= count_tokens("def place(order): return order") <= 10


def test_counts_text_beyond_the_encoder_limit_in_pieces() -> None:
    line = "total = price * quantity  # per line\n"
    text = line * 60_000  # ~2.2 MB, over bpe-openai's 1M-character limit
    assert count_tokens(text) == count_tokens(line * 1000) * 60
