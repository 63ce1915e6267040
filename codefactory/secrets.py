"""Secret redaction: find credentials in text and replace them with `<REDACTED:kind>`.

The rule set is detect-secrets' (its provider regexes, keyword detector, base64/hex high-entropy
detectors with their default limits, and its false-positive heuristics), plus what it lacks:
whole private-key blocks, newer token formats, unquoted config values and passwords in connection
strings. It runs on every chunk before a prompt is built and on every generated sample before it
is written, so only the lines a cheap prefilter picks go through the full rule set.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Redaction:
    text: str
    counts: dict[str, int]  # kind -> number of secrets replaced

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def redact(text: str, *, keep_lines: bool = False) -> Redaction:
    """Replace every secret in `text` with `<REDACTED:kind>`. Idempotent.

    `keep_lines` follows each placeholder with the newlines of the secret it replaces (a key
    block spans many), so line numbers computed on the result still point into the real file.
    """
    hits = _scan(text)
    parts: list[str] = []
    pos = 0
    for hit in hits:
        newlines = "\n" * text.count("\n", hit.start, hit.end) if keep_lines else ""
        parts += [text[pos:hit.start], f"<REDACTED:{hit.kind}>{newlines}"]
        pos = hit.end
    parts.append(text[pos:])
    return Redaction("".join(parts), dict(sorted(Counter(hit.kind for hit in hits).items())))


def redact_all(value: Any) -> tuple[Any, Counter[str]]:
    """A JSON-like `value` with every string in it redacted, and the secrets replaced by kind."""
    counts: Counter[str] = Counter()

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            result = redact(node)
            counts.update(result.counts)
            return result.text
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(value), counts


def find_secrets(text: str) -> list[tuple[str, str]]:
    """(kind, secret text) for each secret in `text`, in order of appearance."""
    return [(hit.kind, text[hit.start:hit.end]) for hit in _scan(text)]


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    kind: str


# Most specific first: when rules find overlapping spans, the span keeps the earliest kind here.
_KINDS = (
    "private-key", "aws-access-key", "aws-secret-key", "github-token", "gitlab-token",
    "slack-token", "stripe-key", "openai-key", "anthropic-key", "google-api-key",
    "huggingface-token", "jwt", "sendgrid-key", "pypi-token", "npm-token", "square-oauth-secret",
    "discord-token", "telegram-token", "twilio-key", "mailchimp-key", "azure-storage-key",
    "artifactory-token", "connection-string", "password", "api-key", "secret", "token",
    "ibm-cloud-key", "ibm-cos-hmac", "softlayer-key", "cloudant-key", "high-entropy-string",
)
_RANK = {kind: i for i, kind in enumerate(_KINDS)}

# detect-secrets secret_type -> kind. Not here: "Private Key" (its rule sees only the BEGIN line;
# whole blocks are matched below), "Public IP" (not a credential), and the keyword and entropy
# plugins, which are run separately.
_PLUGIN_KINDS = {
    "AWS Access Key": "aws-access-key", "GitHub Token": "github-token",
    "GitLab Token": "gitlab-token", "Slack Token": "slack-token", "Stripe Access Key": "stripe-key",
    "OpenAI Token": "openai-key", "JSON Web Token": "jwt", "SendGrid API Key": "sendgrid-key",
    "PyPI Token": "pypi-token", "NPM tokens": "npm-token",
    "Square OAuth Secret": "square-oauth-secret", "Discord Bot Token": "discord-token",
    "Telegram Bot Token": "telegram-token", "Twilio API Key": "twilio-key",
    "Mailchimp Access Key": "mailchimp-key",
    "Azure Storage Account access key": "azure-storage-key",
    "Artifactory Credentials": "artifactory-token", "Basic Auth Credentials": "connection-string",
    "IBM Cloud IAM Key": "ibm-cloud-key", "IBM COS HMAC Credentials": "ibm-cos-hmac",
    "SoftLayer Credentials": "softlayer-key", "Cloudant Credentials": "cloudant-key",
}
_WHOLE_MATCH = {"GitHub Token", "GitLab Token"}  # their capture group is only the prefix ("ghp")
# Their regexes stop at a fixed length or a lazy tail, short of the real token: extend to its end.
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_\-]*")
_EXTEND = {kind: _TOKEN_TAIL for kind in (
    "aws-access-key", "github-token", "gitlab-token", "slack-token", "stripe-key", "openai-key",
    "sendgrid-key", "pypi-token", "square-oauth-secret", "discord-token", "telegram-token",
    "twilio-key", "mailchimp-key")} | {"jwt": re.compile(r"[A-Za-z0-9_\-.+/=]*")}

# Per provider kind: literals of which every match of each of its detect-secrets regexes contains
# one, read off the patterns (tests/test_secrets.py derives them again from the parsed patterns).
# A line with none of them skips the kind's regexes: run on every candidate line, they were about
# half of _scan_line's time, and most candidate lines open no gate. The kinds whose regexes ignore
# case have lower-case literals, looked for in the lower-cased line, and only in an ASCII line:
# under Unicode case folding `s` also matches `ſ` and `k` matches `K`, which lower() leaves alone.
_PROVIDER_GATES: dict[str, tuple[str, ...]] = {
    "artifactory-token": ("AKC", "AP"),
    "aws-access-key": ("A3T", "ABIA", "ACCA", "AKIA", "ASIA"),
    "aws-secret-key": ("aws",),  # ignores case
    "azure-storage-key": ("AccountKey=",),
    "connection-string": ("://",),
    "cloudant-key": ("cl",),  # ignores case: cloudant|cl|clou, or a cloudant.com URL
    "discord-token": (".",),
    "github-token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "gitlab-token": ("gl", "GR1348941"),
    "ibm-cloud-key": ("key", "pwd", "pass", "token"),  # ignores case
    "ibm-cos-hmac": ("secret",),  # ignores case
    "jwt": ("eyJ",),
    "mailchimp-key": ("-us",),
    "npm-token": ("/:_authToken=",),
    "openai-key": ("T3BlbkFJ",),
    "pypi-token": ("pypi-AgE",),
    "sendgrid-key": ("SG.",),
    "slack-token": ("xox", "hooks.slack.com"),  # ignores case
    "softlayer-key": ("sl", "softlayer"),  # ignores case
    "square-oauth-secret": ("sq0csp-",),
    "stripe-key": ("k_live_",),
    "telegram-token": (":",),
    "twilio-key": ("AC", "SK"),
}
# Kinds whose gates open on many candidate lines, tested one by one. The gates of the others are
# joined into one regex (one per case), searched first: most lines hold none of their literals and
# skip them all in that one search, instead of a test per kind.
_OFTEN_OPEN = {"connection-string", "discord-token", "telegram-token"}
# Every match of detect-secrets' keyword regexes has a quote and one of these (ignoring case).
_KEYWORD_GATE = ("key", "pass", "pwd", "secret", "contrase")
_QUOTES = ("'", '"', "`")

_KEYWORDS = (  # detect-secrets' keyword denylist
    r"api_?key|auth_?key|service_?key|account_?key|db_?key|database_?key|priv_?key|private_?key|"
    r"client_?key|db_?pass|database_?pass|key_?pass|password|passwd|pwd|secret|contrase[ñn]a"
)
_TOKEN_WORDS = r"token|credentials?"  # ours: also secret-sounding, but only for random values

# Prefilter. A line goes through the rules only if one of these matches it. On the lower-cased
# text: a secret-sounding word before an assignment or a comparison, which every keyword rule
# needs. Each regex starts with a literal, which the regex engine skips to in a tight loop: one
# that starts with an alternation or a character class is tried at every position, and that cost
# most of a scan (1.8 s of 2.7 s on the CPython standard library). The words are grouped by a
# letter they share, found first (the `k` of key and token, then a look back for the `to`), so
# that the text is read four times, not once per word. Only the lines of the matches are kept,
# and no match spans a newline before its operator, so the matches that finditer() passes over,
# inside an earlier one, are on a line it found.
_HINT_TAIL = r"[\w.\-]*[\"'\]]{0,2}\s*(?:[:=!]|=>)"  # pass|pwd|secret|key|token|cred|contrase, then this
_HINTS = (
    re.compile(r"p(?:ass|wd)" + _HINT_TAIL),
    re.compile(r"k(?:ey|(?<=tok)en)" + _HINT_TAIL),
    re.compile(r"c(?:red|ontrase|(?<=sec)ret)" + _HINT_TAIL),
    re.compile(r"=(?<=[!=]=)\s*[\"'`]?\w*(?:pass|pwd|secret|key)"),  # `if pwd == "..."`
)
# The hint regexes read ASCII letters and symbols, \w and \s. Every other non-ASCII character
# lower-cases to one non-ASCII character, \w or \s as it was (tests/test_secrets.py checks them
# all), so lower-casing only the ASCII letters of a text without these finds the same matches.
_LOWER_CASE_MATTERS = ("\u0130", "\u212a")  # İ (lower case: two characters), KELVIN SIGN (k)
# On the text: what every other rule needs: a URL, a quoted hex string (detect-secrets' hex
# entropy rule starts at 9 characters), or a long run of token characters that looks random.
# Both are found in the UTF-8 bytes mapped by a table to a few symbols (all the characters they
# name are ASCII), where they start with a literal, which the search skips to at memory speed.
_URL = re.compile(b"://")  # a regex: its literal search is faster than bytes.find's here
_HEX_TABLE = bytes(ord("h") if chr(i) in string.hexdigits else ord("q") if chr(i) in "\"'`" else ord(" ")
                   for i in range(256))
# ["'`][0-9a-fA-F]{9,}["'`], with the closing quote looked ahead to: it can open the next string.
_QUOTED_HEX = re.compile(b"q" + b"h" * 9 + b"h*(?=q)")
_RUN_CHARS = string.ascii_letters + string.digits + "+/=_-"
_RUN_TABLE = bytes(ord("a") if chr(i) in _RUN_CHARS else ord(" ") for i in range(256))
_RUN_START = b"a" * 20  # [A-Za-z0-9+/=_-]{20,}
# A run's characters by class: lower case, upper case, digit, separator (the rest of _RUN_CHARS).
_CLASSES = bytes(ord("l") if c in string.ascii_lowercase else ord("u") if c in string.ascii_uppercase
                 else ord("d") if c in string.digits else ord("s") for c in map(chr, range(256)))
_LOWER_OR_SEPARATOR = (string.ascii_lowercase + "+/=_-").encode()
_SEPARATOR_RUN = re.compile(rb"([=\-_/+])\1{3}")
# Providers' fixed prefixes, so that a token with few digits is still scanned.
_TOKEN_PREFIX = re.compile(
    rb"A(?:KIA|SIA|BIA|CCA|3T|KC|Iza)|gh[pousr]_|github_pat_|gl[a-z]+-|GR1348941|xox|[sr]k_|sk-"
    rb"|eyJ|SG\.|hf_|npm_|pypi-|sq0csp-|AccountKey"
)

_KEY_MARKER = re.compile(r"P(?:RIVATE KEY|uTTY-User-Key-File)")  # one search for both, from the P
_PEM_BEGIN = re.compile(r"-{4,5} ?BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)? ?-{4,5}")
# What may sit between the markers: base64, PEM headers, and the quotes, `\n` escapes, commas and
# `+` of a key spelled as string literals. One character class (a single dash, never two) keeps the
# scan linear and stops it at the END marker.
_PEM_MATERIAL = re.compile(r"(?:[A-Za-z0-9+/=\s\"'`,();:\\]|-(?!-))*")
_PEM_NOISE = re.compile(r"\\[nr]|[\s\"'`,()+;]")
_PEM_TRAILER = re.compile(r"(?:\\[nr]|[\s\"'`,()+;])+$")
_PEM_LINE = re.compile(r"[A-Za-z0-9+/=]{16,}|(?:Proc-Type|DEK-Info|Comment|Version):.*")
_PUTTY_KEY = re.compile(r"PuTTY-User-Key-File-\d[\s\S]{0,8000}?Private-MAC: *[0-9a-fA-F]+")

# (kind, a literal every match contains, regex): the literal is checked first, a plain substring
# test, so most lines skip the regex (these eight cost a quarter of the rules on Go's stdlib).
_EXTRA_TOKENS: tuple[tuple[str, str, re.Pattern[str]], ...] = (  # formats detect-secrets 1.5 misses
    ("anthropic-key", "sk-ant-", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}")),
    ("openai-key", "sk-", re.compile(r"\bsk-(?!ant-)(?:[a-z]+-)?(?=[A-Za-z_\-]*\d)[A-Za-z0-9_\-]{32,}")),
    ("google-api-key", "AIza", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),
    ("github-token", "github_pat_", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("stripe-key", "k_", re.compile(r"\b[sr]k_(?:live|test)_[0-9a-zA-Z]{16,}")),
    ("slack-token", "xox", re.compile(r"\bxox[abposre]-[0-9A-Za-z\-]{10,}")),
    ("huggingface-token", "hf_", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("npm-token", "npm_", re.compile(r"\bnpm_[A-Za-z0-9]{36}")),
)
# Passwords in URLs (also with an empty user: redis://:pw@host) and in ADO/ODBC strings.
_URL_PASSWORD = re.compile(
    r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'\"`]*:([^\s@/'\"`()<>\[\]{}]+)@")
_DSN_PASSWORD = re.compile(r"(?i)(?:^|[;\"'\s])(?:password|pwd)\s*=\s*([^;'\"\s]{3,})(?=;)")
_BEARER = re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{16,}=*)")
# `KEY: value` or `KEY=value` filling a whole config line (.env, YAML, ini, a comment), unquoted.
_CONFIG_ASSIGN = re.compile(
    r"^\s*(?:(?:#+|//|--|;|\*)\s*)?(?:export\s+|-\s+)?[\"']?"
    rf"(?P<key>[\w.\-]*(?i:{_KEYWORDS}|{_TOKEN_WORDS})[\w.\-]*)[\"']?(?P<sep>\s*(?::=|=|:)\s*)"
    r"(?P<v>[^\s\"'`#;,]+)\s*[,;]?\s*(?:(?:#|//).*)?$"
)
# Quoted values that detect-secrets' default (file-type-less) rules miss: Go's `:=`, token names.
_QUOTED_ASSIGN = re.compile(
    rf"(?<![\w.\-])(?P<key>[\w.\-]*(?i:{_KEYWORDS}|{_TOKEN_WORDS})[\w.\-]*)[\"'\]]{{0,2}}"
    r"\s*(?::=|=>|=|:)\s*(?P<q>[\"'`])(?P<v>[^\"'`\s]{6,})(?P=q)"
)
_KEYWORD_RE = re.compile(_KEYWORDS, re.IGNORECASE)
_KEY_NAME = re.compile(rf"[\w\-]*(?i:{_KEYWORDS})\w*")
_NAME_TAIL = re.compile(r"[\w.\-]+$")
# Names that hold something about a secret, not the secret: secret_type, api_key_header, ...
_NOT_CREDENTIAL_NAME = re.compile(
    r"(?:[_\-.]|(?<=[a-z])(?=[A-Z]))(?i:type|name|header|field|ids?|file|filename|path|dir|env|var"
    r"|url|uri|prefix|suffix|len|length|size|mode|format|pattern|regex|label|policy|source|provider"
    r"|version|prompt|hint|help|message|msg|error|desc|description|title|placeholder|state)s?$"
)
_CREDENTIAL_WORD = re.compile(r"pass|pwd|secret|key|token|auth")  # in a value with no digit
_NUMBER = re.compile(r"[-+]?(?:0[xob][0-9a-f_]+|[\d_]*\.?[\d_]+(?:e[-+]?\d+)?)[jl]?", re.I)
_CODE_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")  # a variable, attribute or type
_FILE_PATH = re.compile(r"[~.]?/.*|.*\.(?:pem|key|crt|cer|p12|pfx|json|ya?ml|txt|env|ini)")
_PLACEHOLDERS = {"password", "passwd", "pass", "pwd", "secret", "token", "changeme", "none",
                 "null", "nil", "true", "false", "yes", "no", "undefined", "required", "optional",
                 "xxx", "str", "string", "example", "redacted"}
_ID_NAME = re.compile(r"(?i)(^(id|myid|userid)|_id)s?[^a-z0-9]")  # detect-secrets' is_likely_id
_ORDER = {c: i for i, c in enumerate("0123456789abcdefghijklmnopqrstuvwxyz")}


class _Provider(NamedTuple):
    kind: str
    gate: tuple[str, ...]  # _PROVIDER_GATES[kind]
    ignores_case: bool  # the gate is looked for in the lower-cased line
    regexes: list[tuple[re.Pattern[str], bool]]  # with whether the secret is the whole match


class _ProviderGroup(NamedTuple):
    any_literal: re.Pattern[str]  # the literals of all their gates
    ignores_case: bool
    providers: list[_Provider]


class _Rules(NamedTuple):
    provider_groups: list[_ProviderGroup]
    entropy_plugins: list[Any]
    filters: list[Callable[[str], bool]]
    keyword_regexes: dict[re.Pattern[str], int]  # regex -> the group holding the value


def load_rules() -> None:
    """Build the rules now rather than at the first line that needs them: a process about to fork workers
    shares them, where each worker would otherwise import detect-secrets for itself (~40 ms each)."""
    _rules()


@lru_cache(maxsize=1)
def _rules() -> _Rules:
    """detect-secrets' default plugins, loaded on first use (it imports `requests`)."""
    # The plugins are used directly rather than through scan_line(): its global settings
    # singleton is not safe to share between generation threads, and it yields values, not spans.
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.filters import heuristic
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )

    by_kind: dict[str, list[tuple[re.Pattern[str], bool]]] = {}
    plugins: dict[str, Any] = get_mapping_from_secret_type_to_class()
    for secret_type, plugin_class in plugins.items():
        for regex in plugin_class().denylist if secret_type in _PLUGIN_KINDS else ():
            kind = _PLUGIN_KINDS[secret_type]
            if kind == "aws-access-key" and regex.groups:  # its `aws ... key = "<40 chars>"`
                kind = "aws-secret-key"
            by_kind.setdefault(kind, []).append((regex, secret_type in _WHOLE_MATCH))
    groups: dict[tuple[bool, bool], list[_Provider]] = {}
    for kind, regexes in by_kind.items():
        ignores_case = any(regex.flags & re.IGNORECASE for regex, _ in regexes)
        groups.setdefault((kind in _OFTEN_OPEN, ignores_case), []).append(
            _Provider(kind, _PROVIDER_GATES[kind], ignores_case, regexes))
    provider_groups = [
        _ProviderGroup(re.compile("|".join(re.escape(g) for p in group for g in p.gate)), ignores_case, group)
        for (_, ignores_case), group in groups.items()]
    filters: list[Callable[[str], bool]] = [
        heuristic.is_sequential_string, heuristic.is_potential_uuid,
        heuristic.is_templated_secret, heuristic.is_prefixed_with_dollar_sign,
        heuristic.is_not_alphanumeric_string,
    ]
    return _Rules(provider_groups, [Base64HighEntropyString(), HexHighEntropyString()], filters,
                  keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)


def _scan(text: str) -> list[_Hit]:
    hits = [_Hit(start, end, "private-key") for start, end in _private_key_spans(text)]
    keyword_lines, other_lines = _candidate_lines(text)
    rules = _rules()
    for start in sorted(keyword_lines | other_lines):
        end = text.find("\n", start)
        line = text[start:] if end < 0 else text[start:end]
        for line_start, line_end, kind in _scan_line(line, start in keyword_lines, rules):
            hits.append(_Hit(start + line_start, start + line_end, kind))
    return _merge(hits)


def _candidate_lines(text: str) -> tuple[set[int], set[int]]:
    """The offsets where the lines start that hold a secret-sounding word assigned or compared,
    and those of the lines that hold anything else a rule needs.

    Offsets, not line numbers: the text is not split into lines (splitting cost more than the
    search), only the lines found are cut out of it.
    """
    data = text.encode("utf-8", "surrogatepass")
    if text.isascii() or any(c in text for c in _LOWER_CASE_MATTERS):
        lowered = text.lower()
    else:  # the same matches as in text.lower() (see _LOWER_CASE_MATTERS), at a tenth of its cost
        lowered = data.lower().decode("utf-8", "surrogatepass")
    keyword = [m.start() for regex in _HINTS for m in regex.finditer(lowered)]
    if len(lowered) != len(text):  # lower() made two characters of one (İ): go by the line numbers
        keyword = _starts_of_lines(text, _line_numbers(lowered, keyword))

    hexes = data.translate(_HEX_TABLE)
    other = [m.start() for m in _URL.finditer(data)] + [m.start() for m in _QUOTED_HEX.finditer(hexes)]
    runs = data.translate(_RUN_TABLE)
    start = runs.find(_RUN_START)
    while start >= 0:
        end = runs.find(b" ", start)
        end = len(runs) if end < 0 else end
        if _token_like_run(data[start:end]):
            other.append(start)
        start = runs.find(_RUN_START, end)
    if len(data) != len(text):
        other = _char_offsets(data, other)
    return _line_starts(text, keyword), _line_starts(text, other)


def _line_starts(text: str, positions: list[int]) -> set[int]:
    """Where the line of each position starts. Each line is read once, however many positions it
    holds (a minified file is one long line)."""
    starts: set[int] = set()
    line_end = -1
    for p in sorted(positions):
        if p > line_end:
            starts.add(text.rfind("\n", 0, p) + 1)
            line_end = text.find("\n", p)
            if line_end < 0:
                line_end = len(text)
    return starts


def _char_offsets(data: bytes, positions: list[int]) -> list[int]:
    """The offsets in the text of positions in its UTF-8 bytes, each at an ASCII character."""
    offsets: list[int] = []
    chars = done = 0
    for p in sorted(positions):
        chars += len(data[done:p].decode("utf-8", "surrogatepass"))
        done = p
        offsets.append(chars)
    return offsets


def _line_numbers(text: str, positions: list[int]) -> set[int]:
    """The line of each position (0-based)."""
    found: set[int] = set()
    line = pos = 0
    for p in sorted(positions):
        line += text.count("\n", pos, p)
        pos = p
        found.add(line)
    return found


def _starts_of_lines(text: str, numbers: set[int]) -> list[int]:
    """Where each of these lines (0-based) starts."""
    starts: list[int] = []
    line = pos = 0
    for number in sorted(numbers):
        while line < number:
            pos = text.index("\n", pos) + 1
            line += 1
        starts.append(pos)
    return starts


def _token_like_run(run: bytes) -> bool:
    """A run of 20 or more token characters worth scanning: with a provider's prefix, or
    random-looking (not a long identifier, a number or a `=====` rule)."""
    if _TOKEN_PREFIX.search(run):
        return True
    # Random base62 changes character class (digit, lower, upper) at ~60% of its characters;
    # identifiers (`test_bpo36504_overflow`, `ModuleBrowserTreeItem`) at ~30% or less. Each
    # change has an upper-case letter or a digit on one side, so a run with few of them (a third
    # of the runs in code) is let go before the changes are counted.
    if 2 * len(run.translate(None, _LOWER_OR_SEPARATOR)) < len(run) * 0.2:
        return False
    if _SEPARATOR_RUN.search(run):
        return False
    classes = run.translate(_CLASSES)
    changes = (classes.count(b"lu") + classes.count(b"ld") + classes.count(b"ul") + classes.count(b"ud")
               + classes.count(b"dl") + classes.count(b"du"))  # no pair overlaps itself: count() sees all
    return changes >= len(run) * (0.2 if b"d" in classes else 0.45)


def _private_key_spans(text: str) -> Iterator[tuple[int, int]]:
    """Whole key blocks: BEGIN marker to END marker, or to its last body line when cut off."""
    if not _KEY_MARKER.search(text):
        return
    for m in _PEM_BEGIN.finditer(text):
        material_end = _PEM_MATERIAL.match(text, m.end()).end()  # type: ignore[union-attr]
        if not re.search(r"[A-Za-z0-9+/=]{16}", text[m.end():material_end]):
            continue  # a bare marker, e.g. a PEM parser's constant, is not a key
        end = re.compile(rf"-{{4,5}} ?END {m.group(1)}PRIVATE KEY{m.group(2) or ''} ?-{{4,5}}")
        end_match = end.match(text, material_end)
        if end_match:
            yield m.start(), end_match.end()
            continue
        last = pos = m.end()
        for line in text[m.end():material_end].split("\n"):
            body = _PEM_NOISE.sub("", line)
            if body and not _PEM_LINE.fullmatch(body):
                break
            if body:
                last = pos + len(_PEM_TRAILER.sub("", line))
            pos += len(line) + 1
        yield m.start(), last
    for m in _PUTTY_KEY.finditer(text):
        yield m.start(), m.end()


def _scan_line(line: str, has_keyword: bool, rules: _Rules | None = None) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each secret on the line."""
    provider_groups, entropy_plugins, filters, keyword_regexes = rules or _rules()
    # For the gates of the rules that ignore case; None lets them all through (see _PROVIDER_GATES).
    lowered = line.lower() if line.isascii() else None

    found: list[tuple[int, int, str]] = []
    for any_literal, ignores_case, members in provider_groups:
        haystack = lowered if ignores_case else line
        if haystack is not None and not any_literal.search(haystack):
            continue
        for kind, gate, _, regexes in members:
            if not _gate_open(gate, haystack):
                continue
            for regex, whole in regexes:
                for m in regex.finditer(line):
                    start, end = _plugin_span(m, whole)
                    if kind in _EXTEND:
                        end = _EXTEND[kind].match(line, end).end()  # type: ignore[union-attr]
                    found.append((start, end, kind))
    for kind, literal, regex in _EXTRA_TOKENS:
        if literal not in line:
            continue
        found += [(m.start(), m.end(), kind) for m in regex.finditer(line)]
    # Each regex only where what it needs is on the line: `://` and `@`, or the `;` after a password.
    if "://" in line and "@" in line:
        found += [(m.start(1), m.end(1), "connection-string") for m in _URL_PASSWORD.finditer(line)]
    if ("://" in line or has_keyword) and ";" in line:
        found += [(m.start(1), m.end(1), "connection-string") for m in _DSN_PASSWORD.finditer(line)]
    if "bearer" in (line.lower() if lowered is None else lowered):
        found += [(m.start(1), m.end(1), "token") for m in _BEARER.finditer(line)
                  if _random_looking(m.group(1))]
    if has_keyword:
        has_quote = _gate_open(_QUOTES, line)  # which all but _CONFIG_ASSIGN need
        if has_quote and _gate_open(_KEYWORD_GATE, lowered):
            for regex, group in keyword_regexes.items():
                for m in regex.finditer(line):
                    key = _key_name(line, m)
                    if _named_credential(key, m.group(group), line[:m.start(group)]):
                        found.append((m.start(group), m.end(group), _keyword_kind(key)))
        for regex in (_CONFIG_ASSIGN, _QUOTED_ASSIGN) if has_quote else (_CONFIG_ASSIGN,):
            found += [(m.start("v"), m.end("v"), _keyword_kind(m.group("key")))
                      for m in regex.finditer(line) if _assigned_literal(m)
                      and _named_credential(m.group("key"), m.group("v"), line[:m.start("v")])]
    # The entropy rules' patterns start with a quote (tests/test_secrets.py checks): without one
    # there is nothing on this line for them.
    for plugin in entropy_plugins if "'" in line or '"' in line else ():
        # A value of n distinct characters has an entropy of at most log2(n): one with fewer than
        # `distinct` cannot pass the limit, and is let go before its entropy is computed (slow).
        distinct = 2 ** (plugin.entropy_limit - 1e-6)
        for m in plugin.regex.finditer(line):
            value = m.group(2)
            if (len(set(value)) >= distinct
                    and plugin.calculate_shannon_entropy(value) > plugin.entropy_limit
                    and _random_looking(value) and not _ID_NAME.search(line[:m.start(2)])):
                found.append((m.start(2), m.end(2), "high-entropy-string"))
    return [(start, end, kind) for start, end, kind in found if _accepted(line[start:end], kind, filters)]


def _accepted(value: str, kind: str, filters: list[Callable[[str], bool]]) -> bool:
    """Whether a found value stays a secret after detect-secrets' false-positive filters."""
    if not value or "REDACTED" in value or any(f(value) for f in filters):
        return False
    return kind != "connection-string" or value.lower() not in _PLACEHOLDERS


def _gate_open(gate: tuple[str, ...], line: str | None) -> bool:
    """Whether `line` has one of the literals (a rule's gate); None, when it is not known, has."""
    if line is None:
        return True
    for literal in gate:
        if literal in line:
            return True
    return False


def _plugin_span(m: re.Match[str], whole: bool) -> tuple[int, int]:
    """The secret in a plugin's match: its longest capture group, else the match itself."""
    groups = [i for i in range(1, m.re.groups + 1) if m.group(i)]
    if groups and not whole:
        best = max(groups, key=lambda i: m.end(i) - m.start(i))
        return m.start(best), m.end(best)
    start, end = m.span()
    while start < end and m.string[start] in " \t=:\"'":  # Artifactory's `(?:\s|=|:|"|^)` etc.
        start += 1
    while end > start and m.string[end - 1] in " \t\"'":
        end -= 1
    return start, end


def _key_name(line: str, m: re.Match[str]) -> str:
    """The whole name around the keyword detect-secrets matched (`MODULE_PWD_STATE`)."""
    key = _KEY_NAME.search(m.group(0))
    if key is None:
        return m.group(0)
    prefix = _NAME_TAIL.search(line, 0, m.start() + key.start())
    return (prefix.group() if prefix else "") + key.group()


def _named_credential(key: str, value: str, before: str) -> bool:
    """Whether a value assigned to a secret-sounding name can be a credential, rather than
    prose (`secret_type = 'JSON Web Token'`), a name (`'X-API-Key'`), a number or a setting."""
    lowered = value.lower()
    if (len(value) < 4 or lowered in _PLACEHOLDERS or any(c.isspace() for c in value)
            or _NUMBER.fullmatch(value)):
        return False
    if _NOT_CREDENTIAL_NAME.search(key) or _ID_NAME.search(before):
        return False
    return any(c.isdigit() for c in value) or not _CREDENTIAL_WORD.search(lowered)


def _keyword_kind(matched: str) -> str:
    lowered = matched.lower()
    if "pass" in lowered or "pwd" in lowered or "contrase" in lowered:
        return "password"
    return "secret" if "secret" in lowered else "api-key" if "key" in lowered else "token"


def _assigned_literal(m: re.Match[str]) -> bool:
    """Whether the value assigned to a secret-sounding name is a literal credential."""
    value, key = m.group("v"), m.group("key")
    if value[0] in "$%{<" or "(" in value or "[" in value or "://" in value:
        return False  # a template, environment reference, call, subscript or URL
    if not _KEYWORD_RE.search(key):  # named only `token` or `credentials`: must look random
        return _random_looking(value) and len(value) >= 16
    if m.re is _QUOTED_ASSIGN:
        return True
    if _FILE_PATH.fullmatch(value):
        return False
    if _CODE_NAME.fullmatch(value):
        # A bare name is code (`password = default_password`, `secret: str`), except in YAML
        # (`password: hunter2`, with a digit) and shell/.env lines (`API_KEY=abc123`).
        yaml = m.group("sep").strip() == ":" and any(c.isdigit() for c in value)
        dotenv = m.group("sep") == "=" and key.isupper() and "." not in value
        return yaml or dotenv
    return True


def _random_looking(value: str) -> bool:
    """Letters and digits, not a number, not mostly an alphabet run like `12345abcde`."""
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False
    try:
        float(value)
        return False
    except ValueError:
        pass
    ranks = [_ORDER.get(c, -9) for c in value.lower()]
    steps = sum(1 for a, b in zip(ranks, ranks[1:]) if abs(a - b) == 1)
    return steps < 0.4 * (len(value) - 1)


def _merge(hits: list[_Hit]) -> list[_Hit]:
    """Overlapping hits become one span, so no part of a secret survives, with the best kind."""
    merged: list[_Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start, _RANK[h.kind])):
        if merged and hit.start < merged[-1].end:
            last = merged[-1]
            kind = min(last.kind, hit.kind, key=_RANK.__getitem__)
            merged[-1] = _Hit(last.start, max(last.end, hit.end), kind)
        else:
            merged.append(hit)
    return merged
