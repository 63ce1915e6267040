"""Token counting for budgets and estimates.

o200k_base via bpe-openai works offline (tiktoken downloads its encodings on first use).
The local backend sizes its own prompts with the model's tokenizer; this count is the
provider-neutral estimate used for chunk bounds, skeleton budgets and dry-run plans.
"""

from __future__ import annotations

from functools import lru_cache

import bpe_openai


@lru_cache(maxsize=1)
def _encoding() -> bpe_openai.Encoding:
    return bpe_openai.get_encoding("o200k_base")


# bpe-openai refuses inputs over 1M characters; longer text is counted in pieces cut at newlines.
_PIECE = 200_000


def count_tokens(text: str) -> int:
    if not text:
        return 0
    encode = _encoding().encode_ordinary
    if len(text) <= _PIECE:
        return len(encode(text))
    total, start = 0, 0
    while start < len(text):
        end = min(len(text), start + _PIECE)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        total += len(encode(text[start:end]))
        start = end
    return total
