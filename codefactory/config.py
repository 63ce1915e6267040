"""Settings with the precedence of SPEC §2: flag > environment > codefactory.yaml > default.

Every setting is declared once in SETTINGS; loading, validation, environment names and
docs/configuration.md all derive from that table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codefactory.errors import ConfigError

if TYPE_CHECKING:
    import yaml


@dataclass(frozen=True)
class Setting:
    key: str  # dotted YAML path, e.g. "scene1.qa_count"
    default: Any
    type: type
    help: str
    flag: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return "CODEFACTORY_" + self.key.replace(".", "_").upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("backend", "auto", str, "LLM backend: auto, openai or local", "--backend", ("auto", "openai", "local")),
    Setting("model", None, str, "model name sent to the endpoint (local: defaults to the GGUF file name)", "--model"),
    Setting("base_url", None, str, "OpenAI-compatible endpoint URL (env also OPENAI_BASE_URL)", "--base-url"),
    Setting("concurrency", 8, int, "parallel LLM requests (the local backend always runs one at a time)", "--concurrency"),
    Setting("seed", 0, int, "seed for sampling and for every deterministic choice", "--seed"),
    Setting("out", "data", str, "output directory, relative to the repository root", "--out"),
    Setting("rev", "HEAD", str, "commit whose tree is processed", "--rev"),
    Setting("max_requests", None, int, "stop scheduling new LLM calls past this many; the rest is deferred", "--max-requests"),
    Setting("lock_timeout", 0.0, float, "seconds to wait for another run writing the same output directory"),
    Setting("scan.include", [], list, "gitignore-style globs; when set, only matching files are processed"),
    Setting("scan.exclude", [], list, "gitignore-style globs of files to skip"),
    Setting("scan.max_file_bytes", 1_000_000, int, "files larger than this are skipped"),
    Setting("chunk.max_tokens", 800, int, "upper bound of a chunk, in tokens"),
    Setting("chunk.min_tokens", 40, int, "chunks smaller than this are merged with small neighbours"),
    Setting("skeleton.token_budget", 6000, int, "token budget of project_skeleton.txt"),
    Setting("scene1.qa_count", 3, int, "question/answer triplets per chunk", "--qa-count"),
    Setting("scene1.limit", None, int, "chunks to use, most informative first (default: all)", "--limit"),
    Setting("scene2.count", 5, int, "design proposals per build", "--count"),
    Setting("scene2.snippets", 3, int, "code snippets shown with each Scene-2 skeleton slice"),
    Setting("scene2.max_new_per_run", 10, int, "cap on new Scene-2 proposals in one incremental run"),
    Setting("llm.temperature", 0.7, float, "sampling temperature"),
    Setting("llm.top_p", 0.95, float, "nucleus sampling"),
    Setting("llm.max_tokens", 2048, int, "completion token limit per request"),
    Setting("llm.repeat_penalty", 1.1, float, "repeat penalty (local backend)"),
    Setting("llm.timeout", 120.0, float, "seconds before a request times out"),
    Setting("llm.max_retries", 5, int, "retries per request on 429, 5xx, timeouts and connection errors"),
    Setting("llm.response_format", "auto", str, "structured output mode", None,
            ("auto", "json_schema", "json_object_schema", "json_object")),
    Setting("llm.model_path", None, str, "GGUF file for the local backend (default: the bundled model)", "--model-path"),
    Setting("llm.n_ctx", 8192, int, "context window of the local backend, in tokens"),
    Setting("sft.think_style", "tags", str, "reasoning in the assistant turn: <think> tags, a field, or none", None,
            ("tags", "field", "none")),
    Setting("sft.with_context", False, bool, "prepend the source code to the user turn"),
    Setting("sft.system_prompt", "You are an expert on the {repo} codebase.", str, "system turn of every SFT sample"),
    Setting("quality.enabled", True, bool, "drop samples that fail validation, grounding or deduplication from the SFT files"),
    Setting("quality.flagged", "drop", str, "samples the grounding check flags: drop them, or keep them with the flag in meta",
            None, ("drop", "keep")),
    Setting("quality.min_trace_steps", 3, int, "reasoning steps (sentences, lines, 'then' clauses) a thinking trace needs"),
    Setting("quality.near_duplicate_threshold", 0.8, float,
            "word-shingle Jaccard similarity at which two samples are near-duplicates (MinHash LSH finds candidates)"),
    Setting("judge.enabled", False, bool, "score samples with an LLM judge (accuracy, usefulness, clarity; cached)", "--judge"),
    Setting("judge.threshold", 3.0, float, "mean rubric score (1-5) a judged sample needs to stay in the SFT files"),
    Setting("judge.model", None, str, "model that judges (default: the generation model)"),
    Setting("export.split", 0.0, float, "share of samples for the validation split of `export`, by source file", "--split"),
)

_BY_KEY = {s.key: s for s in SETTINGS}
_ENV_ALIASES = {"OPENAI_BASE_URL": "base_url"}


class Config(Mapping[str, Any]):
    """Resolved settings, read as config["scene1.qa_count"]; `source(key)` says where a value came from."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], api_key: str | None) -> None:
        self._values = values
        self._sources = sources
        self._api_key = api_key

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:  # the api key is deliberately absent
        return f"Config({self._values!r})"

    @property
    def api_key(self) -> str | None:
        return self._api_key

    def source(self, key: str) -> str:
        return self._sources[key]


def load_config(
    repo_root: Path,
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Resolve every setting. `flags` holds command-line values (None means "not given")."""
    environ = os.environ if environ is None else environ
    values = {s.key: s.default for s in SETTINGS}
    sources = {s.key: "default" for s in SETTINGS}

    path = config_file if config_file is not None else repo_root / "codefactory.yaml"
    if config_file is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.is_file():
        for key, raw, line in _read_yaml(path):
            values[key] = _coerce(_BY_KEY[key], raw, f"{path.name}:{line} key '{key}'")
            sources[key] = f"{path.name}:{line}"

    for env_name, key in _ENV_ALIASES.items():
        if environ.get(env_name):
            values[key], sources[key] = environ[env_name], env_name
    for setting in SETTINGS:
        if setting.env in environ:
            values[setting.key] = _coerce(setting, environ[setting.env], f"environment variable {setting.env}")
            sources[setting.key] = setting.env

    for key, raw in (flags or {}).items():
        if raw is not None:
            values[key] = _coerce(_BY_KEY[key], raw, f"option for '{key}'")
            sources[key] = "flag"

    api_key = environ.get("OPENAI_API_KEY") or environ.get("CODEFACTORY_API_KEY") or None
    return Config(values, sources, api_key)


def _read_yaml(path: Path) -> list[tuple[str, Any, int]]:
    """Flatten the YAML mapping into (dotted key, value, line); unknown keys are errors with their line."""
    import yaml  # only where a config file exists: ~15 ms of every command's start otherwise

    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark else "unknown line"
        raise ConfigError(f"{path.name}: invalid YAML at {where}: {exc.problem}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: cannot read: {exc}") from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path.name}: line {root.start_mark.line + 1}: the top level must be a mapping of settings")

    found: list[tuple[str, Any, int]] = []

    def walk(node: yaml.MappingNode, prefix: str) -> None:
        for key_node, value_node in node.value:
            key = prefix + str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in ("api_key", "openai_api_key"):
                raise ConfigError(f"{path.name}:{line}: '{key}' must not be stored in a file; set OPENAI_API_KEY")
            if key in _BY_KEY:
                found.append((key, yaml.safe_load(yaml.serialize(value_node)), line))
            elif isinstance(value_node, yaml.MappingNode) and any(k.startswith(key + ".") for k in _BY_KEY):
                walk(value_node, key + ".")
            else:
                raise ConfigError(f"{path.name}:{line}: unknown setting '{key}' (see docs/configuration.md)")

    walk(root, "")
    return found


def _coerce(setting: Setting, raw: Any, where: str) -> Any:
    if raw is None:
        return None
    try:
        if setting.type is bool:
            value: Any = raw if isinstance(raw, bool) else _parse_bool(str(raw))
        elif setting.type is list:
            value = list(raw) if isinstance(raw, (list, tuple)) else [p.strip() for p in str(raw).split(",") if p.strip()]
            value = [str(v) for v in value]
        elif setting.type is int:
            if isinstance(raw, bool):
                raise ValueError
            value = int(raw)
        else:
            value = setting.type(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {setting.type.__name__}, got {raw!r}") from None
    if setting.choices and value not in setting.choices:
        raise ConfigError(f"{where}: expected one of {', '.join(setting.choices)}, got {value!r}")
    if setting.type is int and value < 0:
        raise ConfigError(f"{where}: must not be negative, got {value}")
    return value


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def settings_table() -> str:
    """The Markdown table of docs/configuration.md (a test keeps the file in sync)."""
    rows = ["| YAML key | flag | environment | default | what |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = "—" if s.default is None else f"`{s.default!r}`" if not isinstance(s.default, str) else f"`{s.default}`"
        env = f"`{s.env}`" + (" or `OPENAI_BASE_URL`" if s.key == "base_url" else "")
        choices = " (" + " \\| ".join(s.choices) + ")" if s.choices else ""
        rows.append(f"| `{s.key}` | {f'`{s.flag}`' if s.flag else '—'} | {env} | {default} | {s.help}{choices} |")
    return "\n".join(rows) + "\n"
