"""docs/cli.md and docs/configuration.md: their Python blocks run, their TOML parses, every
setting is documented, and the panel frame in cli.md is the recorded one."""

from __future__ import annotations

import pathlib
import re
import tomllib

import pytest

from sluicegate.cli.exit_codes import EXIT_EMPTY, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE
from sluicegate.datagen import BUILTIN_PROFILES, SETTINGS

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "cli.md", ROOT / "docs" / "configuration.md"]


def blocks(path: pathlib.Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_python_blocks_run(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    found = blocks(path, "python")
    assert found
    for code in found:
        exec(compile(code, str(path), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    if path.name == "configuration.md":
        assert "20 10 ()\nsuccess 20\n" in out
    else:
        assert out.rstrip().endswith("success True")


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_toml_blocks_parse(path: pathlib.Path) -> None:
    for text in blocks(path, "toml"):
        tomllib.loads(text)


def test_every_setting_flag_and_variable_is_in_the_cli_reference() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    for setting in SETTINGS.values():
        flag = "--out DIR" if setting.name == "output_dir" else setting.flag
        assert f"`{flag}" in text, setting.name
        assert f"`{setting.env}`" in text, setting.name
    for code in (EXIT_FAILURE, EXIT_USAGE, EXIT_EMPTY, EXIT_INTERRUPTED):
        assert f"\n| {code} |" in text
    config = (ROOT / "docs" / "configuration.md").read_text()
    for name, table in BUILTIN_PROFILES.items():
        row = next(line for line in config.splitlines() if line.startswith(f"| `{name}` |"))
        for key in table:
            assert f"`{key} = " in row, (name, key)


def test_the_panel_in_the_reference_is_the_recorded_frame() -> None:
    frame = (ROOT / "docs" / "cli-panel.txt").read_text().split("\n\n")[0].strip()
    assert frame.startswith("╭─ sluicegate run qa · running")
    assert frame in (ROOT / "docs" / "cli.md").read_text()
    assert frame in (ROOT / "README.md").read_text()
