"""Secret redaction: planted secrets are all caught, ordinary code is left alone."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import inspect
import itertools
import json.decoder
import netrc
import re
import secrets
import smtplib
import string
from typing import Any

import pytest

from codefactory import secrets as redaction
from codefactory.secrets import Redaction, find_secrets, redact
from tests.fixtures_secrets import PLANTED, SECRETS, answer_mentioning, planted_files

# The regex parser, to read the literals every match of a pattern contains (re._parser is
# Python 3.11's name for the sre_parse module).
sre: Any = getattr(re, "_parser", None) or __import__("sre_parse")


def _fragments(secret: str) -> list[str]:
    """The pieces that must not survive: the value, or each line of a multi-line one."""
    return [line for line in secret.splitlines() if len(line) >= 8] or [secret]


def test_every_kind_has_a_planted_file() -> None:
    assert sorted(PLANTED.values()) == sorted(SECRETS)
    files = planted_files()
    assert all(SECRETS[kind] in files[path] for path, kind in PLANTED.items())


@pytest.mark.parametrize("path", sorted(PLANTED))
def test_planted_secret_is_redacted_with_its_kind(path: str) -> None:
    kind = PLANTED[path]
    result = redact(planted_files()[path])

    for fragment in _fragments(SECRETS[kind]):
        assert fragment not in result.text
    assert f"<REDACTED:{kind}>" in result.text
    assert result.counts == {kind: 1}
    assert result.total == 1


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_find_secrets_finds_the_secret_in_a_generated_answer(kind: str) -> None:
    found = find_secrets(answer_mentioning(kind))

    assert (kind, SECRETS[kind]) in found
    assert len(found) == 1


def test_the_whole_corpus_at_once() -> None:
    text = "\n".join(planted_files().values())
    result = redact(text)

    assert result.counts == {kind: 1 for kind in SECRETS}
    for secret in SECRETS.values():
        assert all(fragment not in result.text for fragment in _fragments(secret))


def test_redaction_is_idempotent_and_keeps_single_line_secrets_lines() -> None:
    for path, content in planted_files().items():
        once = redact(content)
        assert redact(once.text) == Redaction(once.text, {})
        if PLANTED[path] != "private-key":  # a key block becomes one placeholder
            assert len(once.text.splitlines()) == len(content.splitlines())


def test_prefilter_keeps_recall() -> None:
    """Scanning only the prefiltered lines finds what scanning every line finds."""
    texts = [*planted_files().values(), inspect.getsource(smtplib), inspect.getsource(netrc)]
    for text in texts:
        every_line, offset = [], 0
        for line in text.split("\n"):
            every_line += [redaction._Hit(offset + start, offset + end, kind)
                           for start, end, kind in redaction._scan_line(line, True)]
            offset += len(line) + 1
        prefiltered = [hit for hit in redaction._scan(text) if hit.kind != "private-key"]
        assert prefiltered == redaction._merge(every_line)


@pytest.mark.parametrize("text, kind, secret", [
    ("DATABASE_URL=postgres://admin:S3cr3tP4ss@db.example.com/app", "connection-string",
     "S3cr3tP4ss"),
    ('REDIS_URL = "redis://:hunter2pass@cache:6379/0"', "connection-string", "hunter2pass"),
    ('conn = "Server=db;User Id=sa;Password=Tr0ub4dor&3;"', "connection-string", "Tr0ub4dor&3"),
    ("password: Tr0ub4dor&3", "password", "Tr0ub4dor&3"),
    ("# db_password = Tr0ub4dor&3", "password", "Tr0ub4dor&3"),
    ("export API_KEY=a8f7e6d5c4b3a291", "api-key", "a8f7e6d5c4b3a291"),
    ('conn = connect(host="db", password="hunter2!x")', "password", "hunter2!x"),
    ('{"client_secret": "Zq81bX0fLw9sT3uV"}', "secret", "Zq81bX0fLw9sT3uV"),
    ('access_token: "ya29A0ARrdaM8x7Kq3Lp2Vn"', "token", "ya29A0ARrdaM8x7Kq3Lp2Vn"),
])
def test_assignments_and_connection_strings(text: str, kind: str, secret: str) -> None:
    assert find_secrets(text) == [(kind, secret)]
    assert secret not in redact(text).text


def test_private_key_spelled_as_string_literals() -> None:
    body = SECRETS["private-key"].splitlines()
    escaped = 'KEY = "' + "\\n".join(body) + '\\n"\nother = 1\n'
    concatenated = "KEY = (\n" + "".join(f'    "{line}\\n"\n' for line in body) + ")\nother = 1\n"
    for text in (escaped, concatenated):
        result = redact(text)
        assert result.counts == {"private-key": 1}
        assert all(line not in result.text for line in body)
        assert result.text.endswith("other = 1\n")


def test_private_key_cut_off_by_the_chunk_boundary() -> None:
    body = SECRETS["private-key"].splitlines()[:-3]  # no END marker
    text = "\n".join(body) + "\n\ndef sign(data):\n    return data\n"
    result = redact(text)

    assert result.counts == {"private-key": 1}
    assert all(line not in result.text for line in body[1:])
    assert result.text.endswith("\n\ndef sign(data):\n    return data\n")


@pytest.mark.parametrize("snippet", [
    "password = get_password()",
    'token = request.headers["Authorization"]',
    "def login(user: str, password: str) -> None:\n    self.password = password\n",
    'secret_key = os.environ["SECRET_KEY"]',
    'api_key = os.getenv("OPENAI_API_KEY")',
    "password: Optional[str] = None",
    'if not password:\n    raise ValueError("password required")',
    'parser.add_argument("--password", help="the password to log in with")',
    "key = hashlib.sha256(data).hexdigest()",
    "for key, value in sorted(d.items(), key=lambda kv: kv[0]):\n    print(key, value)",
    'url = f"postgres://{user}:{password}@{host}/{db}"',
    'headers = {"Authorization": f"Bearer {token}"}',
    "PASSWORD_MIN_LENGTH = 8",
    '_SECRET_FILE_MODE = 0o600',
    'secret_type = "JSON Web Token"',
    'API_KEY_HEADER = "X-API-Key"',
    'ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"',
    'HEADER = "-----BEGIN PRIVATE KEY-----"\nFOOTER = "-----END PRIVATE KEY-----"\n',
    "x = 0x5DEECE66D  # java.util.Random's multiplier",
])
def test_ordinary_code_is_unchanged(snippet: str) -> None:
    assert redact(snippet) == Redaction(snippet, {})
    assert find_secrets(snippet) == []


@pytest.mark.parametrize("module", [json.decoder, hmac, getpass, netrc, smtplib])
def test_stdlib_modules_are_unchanged(module: object) -> None:
    source = inspect.getsource(module)  # type: ignore[arg-type]
    assert redact(source).counts == {}


@pytest.mark.parametrize("module", [hashlib, secrets])
def test_stdlib_modules_with_example_digests_are_nearly_unchanged(module: object) -> None:
    """Only the hex digests in their docstrings may go, as high-entropy strings."""
    result = redact(inspect.getsource(module))  # type: ignore[arg-type]
    assert set(result.counts) <= {"high-entropy-string"}
    assert result.total <= 2


def test_empty_and_plain_text() -> None:
    assert redact("") == Redaction("", {})
    assert find_secrets("Nothing to see here.\n") == []


def test_crlf_and_case_folding_that_changes_length() -> None:
    """Offsets stay right when lower() lengthens a character (İ) and lines end in CRLF."""
    text = "name = 'İİİ'\r\npassword = 'hunter2!x'\r\nother = 1\r\n"
    result = redact(text)
    assert result.text == "name = 'İİİ'\r\npassword = '<REDACTED:password>'\r\nother = 1\r\n"


def _regex_prefilter(text: str) -> tuple[set[int], set[int]]:
    """The prefilter as plain regexes over the text, as it was first written: the reference that
    `_candidate_lines` (literal searches, byte tables) must agree with line for line."""
    def lines_of(pattern: str, source: str, accept: object = None) -> set[int]:
        found: set[int] = set()
        for m in re.finditer(pattern, source):
            if accept is None or accept(m.group()):  # type: ignore[operator]
                found.add(source.count("\n", 0, m.start()))
        return found

    lowered = text.lower()
    keyword = (lines_of(r"(?:pass|pwd|secret|key|token|cred|contrase)[\w.\-]*[\"'\]]{0,2}\s*(?:[:=!]|=>)", lowered)
               | lines_of(r"[!=]=\s*[\"'`]?\w*(?:pass|pwd|secret|key)", lowered))
    other = (lines_of(r"://|[\"'`][0-9a-fA-F]{9,}[\"'`]", text)
             | lines_of(r"[A-Za-z0-9+/=_\-]{20,}", text, lambda run: redaction._token_like_run(run.encode())))
    return keyword, other


_PREFILTER_EDGES = [
    "",
    "x = 1",
    "İİİ = 1\npassword = 'hunter2!x'\n",  # lower() lengthens İ: line numbers, not offsets
    "\u212aey = 'abc123def456'\n",  # KELVIN SIGN lower-cases to an ASCII k
    "é" * 30 + "aB3dE5gH7jK9mN1pQ3sT5vX7\n" + "ü = 'Zq81bX0fLw9sT3uVaa99'",  # runs after multi-byte text
    "if x === passwd_hash:\n    pass\nif y !=\n  secret_value: pass",
    "A1b2C3d4E5f6G7h8I9j\n" + "A1b2C3d4E5f6G7h8I9j0\n" + "aB3dE5gH7jK9mN1pQ3sT5vX7",  # 19, 20, at the end
    "h = '12345678'\nh = \"123456789\"\nh = `abcdef012345'\nh = 'abcdefg12345",  # 8, 9, mixed quotes, unclosed
    "://\nhttps://user:pw@host\nfoo\r\nkey='abc'\r\n",
    "sk-" + "a" * 40 + "\n" + "=" * 40 + "\n" + "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vX7",
    "\ud800 token = 'aB3dE5gH7jK9mN1pQ3sT5vX7'",  # a lone surrogate
    # the words grouped by a shared letter, and split across lines
    "token: x\nkey\n\n= 1\nsecsecret = 1\nken = 1\ncontrase\u00f1a: 1\nto\nken = 1",
    "==\n 'pass'\n!= key\nx === `db_secret`\n=pass",  # comparisons across lines, at the start
    "İ x\nfoo İ key = 1\n\né token: 'aB3dE5gH7jK9mN1pQ3sT5vX7' https://x\nİ",  # offsets after İ and é
    "ÀÉ PASSÉ\u00a0= 1\nΣKEY\u2003: 2\nÉTOKEN == x\n\u212aEY= 1",  # non-ASCII \w and \s; KELVIN SIGN
    "ÀÉ PASSÉ\u00a0= 1\nΣKEY\u2003: 2\nÉTOKEN == x\n",
]


def test_lower_casing_only_ascii_letters_keeps_the_hints() -> None:
    """_candidate_lines lower-cases only the ASCII letters of a text without the characters of
    _LOWER_CASE_MATTERS: every other character must lower-case to one character, not ASCII, that
    is a word character or a space exactly when it was."""
    word, space = re.compile(r"\w"), re.compile(r"\s")
    for code in range(0x80, 0x110000):
        char = chr(code)
        lower = char.lower()
        if lower == char or char in redaction._LOWER_CASE_MATTERS:
            continue
        assert len(lower) == 1 and not lower.isascii(), hex(code)
        assert bool(word.match(char)) == bool(word.match(lower)), hex(code)
        assert bool(space.match(char)) == bool(space.match(lower)), hex(code)


def _prefilter_lines(text: str) -> tuple[set[int], set[int]]:
    """_candidate_lines' line starts as line numbers, checking that each is where a line starts."""
    keyword, other = redaction._candidate_lines(text)
    assert all(start == 0 or text[start - 1] == "\n" for start in keyword | other)
    return {text.count("\n", 0, start) for start in keyword}, {text.count("\n", 0, start) for start in other}


@pytest.mark.parametrize("text", _PREFILTER_EDGES)
def test_prefilter_edge_cases_match_the_regex_reference(text: str) -> None:
    assert _prefilter_lines(text) == _regex_prefilter(text)


@pytest.mark.parametrize("module", [json.decoder, hmac, getpass, netrc, smtplib, hashlib, secrets, inspect])
def test_prefilter_matches_the_regex_reference_on_real_code(module: object) -> None:
    source = inspect.getsource(module)  # type: ignore[arg-type]
    assert _prefilter_lines(source) == _regex_prefilter(source)
    assert _prefilter_lines("\n".join(planted_files().values())) == _regex_prefilter(
        "\n".join(planted_files().values()))


def test_each_rule_gate_is_a_literal_of_its_rule() -> None:
    """_scan_line skips a rule when its gate is missing from the line: the gate must be in every match
    (checked on the parsed pattern, see _always_contains below)."""
    def always(regex: re.Pattern[str], gate: tuple[str, ...]) -> bool:
        return _always_contains(list(sre.parse(regex.pattern, regex.flags)), gate, False)

    for kind, literal, regex in redaction._EXTRA_TOKENS:
        assert always(regex, (literal,)), kind
    entropy = redaction._rules().entropy_plugins
    assert entropy and all(always(p.regex, ("'", '"')) for p in entropy)
    assert always(redaction._URL_PASSWORD, ("://",)) and always(redaction._URL_PASSWORD, ("@",))
    assert always(redaction._DSN_PASSWORD, (";",))
    assert always(redaction._QUOTED_ASSIGN, redaction._QUOTES)
    value = SECRETS["high-entropy-string"]
    assert find_secrets(f"x = '{value}'") == [("high-entropy-string", value)]
    assert find_secrets(f"x = {value}") == []  # unquoted: the entropy rules never matched it


def _literal_strings(items: Any, limit: int = 5000) -> set[str] | None:
    """Every string the parsed regex `items` can match, when they are few and fixed (`(?:cl|clou)_?`),
    else None. Zero-width items (anchors, lookarounds) match the empty string."""
    strings = {""}
    for op, av in items:
        options: set[str] | None
        if op is sre.LITERAL:
            options = {chr(av)}
        elif op is sre.IN and all(o in (sre.LITERAL, sre.RANGE) for o, _ in av):
            options = {chr(x) for o, a in av for x in ((a,) if o is sre.LITERAL else range(a[0], a[1] + 1))}
        elif op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            options = {""}
        elif op is sre.SUBPATTERN:
            options = _literal_strings(av[-1], limit)
        elif op is sre.BRANCH:
            branches = [_literal_strings(branch, limit) for branch in av[1]]
            options = None if None in branches else {s for b in branches if b is not None for s in b}
        elif op is sre.MAX_REPEAT and av[0] == av[1] <= 3:
            inner = _literal_strings(av[2], limit)
            options = None if inner is None else {"".join(p) for p in itertools.product(inner, repeat=av[0])}
        else:
            return None
        if options is None or len(strings) * len(options) > limit:
            return None
        strings = {s + o for s in strings for o in options}
    return strings


def _always_contains(items: Any, gate: tuple[str, ...], fold: bool) -> bool:
    """Whether a line that the parsed regex `items` matches always holds one of the `gate` literals
    (in its lower-cased text if `fold`): some run of consecutive items matches only fixed strings
    that all hold one, or some single item (a group, a look-around) always does. Sound, not
    complete: False proves nothing."""
    def holds(strings: set[str] | None) -> bool:
        return strings is not None and all(any(g in (s.lower() if fold else s) for g in gate)
                                           for s in strings)

    runs = (items[i:j] for i in range(len(items)) for j in range(i + 1, len(items) + 1))
    if any(holds(_literal_strings(run)) for run in runs):
        return True
    for op, av in items:
        if op is sre.SUBPATTERN and _always_contains(av[-1], gate, fold):
            return True
        if op is sre.BRANCH and all(_always_contains(branch, gate, fold) for branch in av[1]):
            return True
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] >= 1 and _always_contains(av[2], gate, fold):
            return True
        if op is sre.ASSERT and _always_contains(av[1], gate, fold):  # what it looks at is on the line
            return True
    return False


def test_provider_gates_are_in_every_match() -> None:
    """_scan_line skips a provider's regexes when none of its gate literals is on the line: each
    literal set is derived again here from the parsed patterns, so a new detect-secrets pattern
    that does not contain its kind's literals fails this test instead of going unmatched."""
    groups = redaction._rules().provider_groups
    providers = [provider for group in groups for provider in group.providers]
    assert sorted(p.kind for p in providers) == sorted(redaction._PROVIDER_GATES)
    for group in groups:  # the group's regex finds each of its gates' literals, in the same case
        assert all(p.ignores_case == group.ignores_case for p in group.providers)
        assert all(group.any_literal.fullmatch(g) for p in group.providers for g in p.gate)
    for provider in providers:
        for regex, _ in provider.regexes:
            ignores_case = bool(regex.flags & re.IGNORECASE)
            assert ignores_case == provider.ignores_case, regex.pattern
            assert not ignores_case or all(g == g.lower() for g in provider.gate)
            parsed = list(sre.parse(regex.pattern, regex.flags))
            assert _always_contains(parsed, provider.gate, ignores_case), (provider.kind, regex.pattern)
    for regex in redaction._rules().keyword_regexes:
        parsed = list(sre.parse(regex.pattern, regex.flags))
        assert _always_contains(parsed, redaction._QUOTES, False), regex.pattern
        assert _always_contains(parsed, redaction._KEYWORD_GATE, True), regex.pattern


def test_the_gate_check_rejects_a_wrong_gate() -> None:
    """The check above is not vacuous: a literal that some match lacks fails it."""
    for pattern, gate in [(r"(?:cloudant|cl|clou)_?key", ("clou",)), (r"gh[po]_\w+", ("ghs_",)),
                          (r"a.b", ("ab",)), (r"(?:x|)key", ("xkey",))]:
        assert not _always_contains(list(sre.parse(pattern)), gate, False), pattern


def test_entropy_shortcut_never_drops_a_value_over_the_limit() -> None:
    """_scan_line computes the entropy only of values with enough distinct characters to pass."""
    rng = __import__("random").Random(0)
    for plugin in redaction._rules().entropy_plugins:
        for _ in range(3000):
            alphabet = rng.sample(plugin.charset, rng.randint(1, min(30, len(plugin.charset))))
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
            if plugin.calculate_shannon_entropy(value) > plugin.entropy_limit:
                assert len(set(value)) >= 2 ** (plugin.entropy_limit - 1e-6), value


def _token_like_reference(run: str) -> bool:
    """_token_like_run as first written, with regexes: the reference for the byte tables and counts."""
    prefix = (r"A(?:KIA|SIA|BIA|CCA|3T|KC|Iza)|gh[pousr]_|github_pat_|gl[a-z]+-|GR1348941|xox|[sr]k_|sk-"
              r"|eyJ|SG\.|hf_|npm_|pypi-|sq0csp-|AccountKey")
    if re.search(prefix, run):
        return True
    if re.search(r"([=\-_/+])\1{3}", run):
        return False
    changes = len(re.findall(r"(?=[a-z][A-Z0-9]|[A-Z][a-z0-9]|[0-9][A-Za-z])", run))
    return changes >= len(run) * (0.2 if re.search(r"[0-9]", run) else 0.45)


def test_token_like_run_matches_its_reference() -> None:
    rng = __import__("random").Random(0)
    alphabets = ["abcdefghij_", "abcXYZ019", "aB3-_", string.ascii_letters + string.digits + "+/=_-"]
    runs = [m.group() for module in (smtplib, netrc, hashlib, inspect)
            for m in re.finditer(r"[A-Za-z0-9+/=_\-]{20,}", inspect.getsource(module))]
    runs += ["".join(rng.choice(alphabet) for _ in range(rng.randint(20, 60)))
             for alphabet in alphabets for _ in range(500)]
    runs += [SECRETS[kind] for kind in SECRETS if re.fullmatch(r"[A-Za-z0-9+/=_\-]{20,}", SECRETS[kind])]
    assert sum(map(_token_like_reference, runs)) > 100  # both outcomes are exercised
    for run in runs:
        assert redaction._token_like_run(run.encode()) == _token_like_reference(run), run
