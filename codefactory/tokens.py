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


def count_tokens(text: str) -> int:
    if not text:
        return 0
    return len(_encoding().encode_ordinary(text))
