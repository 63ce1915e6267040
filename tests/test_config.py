import subprocess
import sys
from pathlib import Path

import pytest

from codefactory.config import load_config, settings_table
from codefactory.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    (tmp_path / "codefactory.yaml").write_text("concurrency: 4\nscene1:\n  qa_count: 5\n  limit: 9\n")
    env = {"CODEFACTORY_SCENE1_QA_COUNT": "7", "CODEFACTORY_SCENE1_LIMIT": "11"}
    config = load_config(tmp_path, flags={"scene1.limit": 2}, environ=env)
    assert config["concurrency"] == 4 and config.source("concurrency") == "codefactory.yaml:1"
    assert config["scene1.qa_count"] == 7 and config.source("scene1.qa_count") == "CODEFACTORY_SCENE1_QA_COUNT"
    assert config["scene1.limit"] == 2 and config.source("scene1.limit") == "flag"
    assert config["seed"] == 0 and config.source("seed") == "default"


def test_openai_environment_names(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-secret"})
    assert config["base_url"] == "http://127.0.0.1:9/v1"
    assert config.api_key == "sk-secret"
    assert "sk-secret" not in repr(config)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scene1:\n  qa_cont: 3\n", "codefactory.yaml:2: unknown setting 'scene1.qa_cont'"),
        ("concurrency: many\n", "codefactory.yaml:1 key 'concurrency': expected int, got 'many'"),
        ("backend: gpt\n", "expected one of auto, openai, local"),
        ("scene1:\n  qa_count: [\n", "invalid YAML at line 3"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("api_key: sk-123\n", "must not be stored in a file"),
    ],
)
def test_malformed_config_names_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "codefactory.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CODEFACTORY_CONCURRENCY"):
        load_config(tmp_path, environ={"CODEFACTORY_CONCURRENCY": "-3"})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path, tmp_path / "nope.yaml", environ={})


def test_docs_list_every_setting() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_table() in doc, "docs/configuration.md is stale: regenerate the table from config.settings_table()"


def test_the_yaml_parser_is_loaded_only_for_a_config_file(tmp_path: Path) -> None:
    probe = ("import sys; from pathlib import Path; from codefactory.config import load_config; "
             "load_config(Path(sys.argv[1]), environ={}); print('yaml' in sys.modules)")

    def yaml_loaded() -> bool:
        run = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                             check=True)
        return run.stdout.strip() == "True"

    assert not yaml_loaded(), "no codefactory.yaml: every command starts without the parser"
    (tmp_path / "codefactory.yaml").write_text("concurrency: 4\n")
    assert yaml_loaded()
