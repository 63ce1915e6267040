"""The embedded model: a GGUF run in-process by llama.cpp (`pip install 'codefactory[local]'`).

The only module that imports `llama_cpp`. Replies are constrained to the JSON schema by
llama.cpp's grammar sampling, so a small model still returns parseable records.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from .errors import BackendError, GenerationError
from .llm import (
    NO_BACKEND_MESSAGE,
    Completion,
    GenerationParams,
    LLMSettings,
    Usage,
    bundled_model_path,
    grammar_safe_schema,
)

log = logging.getLogger(__name__)

# Chat-template tokens around each message (role markers, separators) that plain
# tokenization of the contents does not see; generous so that trimming errs on the safe side.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
_TEMPLATE_TOKENS_FIXED = 16
# Below this a structured reply cannot be finished: the prompt is trimmed instead.
_MIN_COMPLETION_TOKENS = 256
_OMITTED = "[... {n} lines omitted to fit the model's context window ...]"
# llama_cpp's schema converter lets raw control characters (newlines...) into JSON strings, which
# json.loads rejects; small models do write them. The string character rule, as it emits it,
# and the JSON-correct one:
_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'
# ...and it spells minLength/maxLength as `char char (char (char)?)?`: as `char{2,4}` llama.cpp
# parses a far smaller grammar.
_SPELLED_REPEAT = re.compile(r"((?:\bchar )*)(\(char(?: \(char)*\)\?(?:\)\?)*)")


class LocalBackend:
    """A llama.cpp model in this process. Not thread-safe, so calls are serialized."""

    backend = "local"
    max_concurrency: int | None = 1

    def __init__(self, settings: LLMSettings) -> None:
        path = Path(settings.model_path) if settings.model_path else bundled_model_path()
        if path is None:
            raise BackendError(NO_BACKEND_MESSAGE + " (or --model-path FILE.gguf)")
        if not path.is_file():
            raise BackendError(f"local model file not found: {path}")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError(NO_BACKEND_MESSAGE) from None

        self.model_path = path
        self.model = path.stem
        self._lock = threading.Lock()
        threads = settings.n_threads or os.cpu_count() or 1
        started = time.perf_counter()
        try:
            self._llama = Llama(model_path=str(path), n_ctx=settings.n_ctx, n_threads=threads, verbose=False)
            trained = int(self._llama._model.n_ctx_train())  # no public accessor on llama_cpp.Llama
            if 0 < trained < settings.n_ctx:
                # Past its training window a model only degrades: reload with the window it knows.
                self._llama.close()
                self._llama = Llama(model_path=str(path), n_ctx=trained, n_threads=threads, verbose=False)
        except ValueError as exc:  # llama_cpp's way of saying "cannot load this file"
            raise BackendError(f"cannot load the local model {path}: {exc}") from None
        self.n_ctx = int(self._llama.n_ctx())
        self.load_seconds = time.perf_counter() - started
        self._grammars: dict[str, Any] = {}
        log.info("loaded %s in %.2f s (n_ctx=%d)", path.name, self.load_seconds, self.n_ctx)

    def __repr__(self) -> str:
        return f"LocalBackend(model_path={str(self.model_path)!r}, n_ctx={self.n_ctx})"

    def check(self) -> None:
        """The model is loaded by the constructor; nothing left that could fail cheaply."""

    def complete(self, messages: list[dict[str, str]], schema: dict[str, Any], params: GenerationParams) -> Completion:
        """One chat completion whose text is forced by grammar to match `schema`.

        A prompt too long for the context window loses lines from the middle of its longest
        message (the code, not the instructions around it); the completion limit shrinks only
        down to what a structured reply needs.
        """
        with self._lock:
            grammar = self._grammar(schema)
            messages, prompt_tokens = self._fit(messages, params.max_tokens)
            try:
                response = self._llama.create_chat_completion(
                    messages=messages,  # type: ignore[arg-type]
                    grammar=grammar,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=min(params.max_tokens, self.n_ctx - prompt_tokens),
                    repeat_penalty=params.repeat_penalty,
                    seed=params.seed,
                )
            except ValueError as exc:  # context overflow despite the estimate
                raise GenerationError(f"local model failed: {' '.join(str(exc).split())[:200]}") from None
        assert isinstance(response, dict)  # not streaming
        choices = response.get("choices") or []
        if not choices:
            raise GenerationError("empty choices")
        choice = choices[0]
        finish_reason = choice.get("finish_reason") or "stop"
        if finish_reason == "length":
            raise GenerationError("finish_reason=length (reply truncated)")
        text = (choice.get("message") or {}).get("content") or ""
        if not text:
            raise GenerationError("empty reply")
        usage = response.get("usage") or {}
        return Completion(
            text=text,
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            ),
            model=self.model,
            finish_reason=finish_reason,
        )

    def count_tokens(self, text: str) -> int:
        """Tokens as this model counts them (no BOS)."""
        if not text:
            return 0
        with self._lock:
            return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        with self._lock:
            self._llama.close()

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """The llama.cpp grammar for `schema`, converted once and checked before use.

        llama.cpp crashes the process when sampling with a grammar it failed to parse, so the
        grammar is parsed here first and a failure becomes an ordinary GenerationError.
        """
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            import llama_cpp
            from llama_cpp.llama_grammar import LlamaGrammar

            try:
                grammar = LlamaGrammar.from_string(schema_grammar(schema), verbose=False)
            except (ValueError, KeyError, TypeError, AssertionError, NotImplementedError) as exc:
                raise GenerationError(f"the local backend cannot turn this schema into a grammar: {exc}") from None
            # _model.vocab is what llama.cpp parses grammars against; there is no public handle.
            sampler = llama_cpp.llama_sampler_init_grammar(
                self._llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
            )
            if not sampler:
                raise GenerationError("llama.cpp rejected the grammar made from this schema")
            llama_cpp.llama_sampler_free(sampler)
            self._grammars[key] = grammar
        return self._grammars[key]

    def _tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0

    def _estimate_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        total = _TEMPLATE_TOKENS_FIXED
        for message in messages:
            total += _TEMPLATE_TOKENS_PER_MESSAGE + self._tokens(message.get("content") or "")
        return total

    def _fit(self, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[dict[str, str]], int]:
        """`messages` trimmed so that the prompt leaves room for the reply, and the prompt's tokens."""
        prompt_tokens = self._estimate_prompt_tokens(messages)
        budget = self.n_ctx - min(max_tokens, max(_MIN_COMPLETION_TOKENS, self.n_ctx // 4))
        if prompt_tokens <= budget:
            return messages, prompt_tokens
        longest = max(range(len(messages)), key=lambda i: len(messages[i].get("content") or ""))
        content = messages[longest].get("content") or ""
        excess = prompt_tokens - budget
        lines = content.split("\n")
        # Drop the fewest middle lines that make it fit: the header (what the code is) and the
        # instructions at the end survive.
        full = self._tokens(content)
        lo, hi = 1, len(lines)
        while lo < hi:
            mid = (lo + hi) // 2
            if full - self._tokens(_drop_middle(lines, mid)) >= excess:
                hi = mid
            else:
                lo = mid + 1
        trimmed = [dict(m) for m in messages]
        trimmed[longest]["content"] = _drop_middle(lines, lo)
        prompt_tokens = self._estimate_prompt_tokens(trimmed)
        if prompt_tokens > budget:  # even the whole middle of the longest message was not enough
            raise GenerationError(f"prompt too long for the local model (~{prompt_tokens} tokens, n_ctx={self.n_ctx})")
        log.info("trimmed %d lines to fit n_ctx=%d", lo, self.n_ctx)
        return trimmed, prompt_tokens


def schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF for `schema`: llama_cpp's conversion, with JSON-correct strings and compact repetitions."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(grammar_safe_schema(schema)))
    gbnf = gbnf.replace(_LOOSE_CHAR, _JSON_CHAR)

    def compact(match: re.Match[str]) -> str:
        required, optional = match.group(1).count("char"), match.group(2).count("char")
        return f"char{{{required},{required + optional}}}"

    return _SPELLED_REPEAT.sub(compact, gbnf)


def _drop_middle(lines: list[str], count: int) -> str:
    """The lines without `count` of them from the middle, marked where they were."""
    if count <= 0:
        return "\n".join(lines)
    start = max(0, (len(lines) - count) // 2)
    return "\n".join([*lines[:start], _OMITTED.format(n=count), *lines[start + count:]])
