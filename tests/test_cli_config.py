"""Pipeline files, profiles and layered settings: precedence, `none`, cross-field checks, and
error messages that name the field, the line and the fix."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from sluicegate.__main__ import main
from sluicegate.datagen import (
    BUILTIN_PROFILES,
    SETTINGS,
    PipelineConfigError,
    RunSettings,
    load_pipeline_file,
)
from test_cli_support import pipeline_text, write_pipeline

PROFILES = """
[profiles.ci]
seed = 40
buffer_size = 7

[profiles.mine]
seed = 50
rate_limit = 10
rate_window_seconds = 30
"""


@pytest.fixture
def pipeline_file(tmp_path: pathlib.Path) -> str:
    return write_pipeline(tmp_path, extra=PROFILES, run_extra="deadline_seconds = 600")


def test_every_run_setting_has_a_cli_setting() -> None:
    assert set(RunSettings.__struct_fields__) <= set(SETTINGS)
    for name, setting in SETTINGS.items():
        assert setting.env == "SLUICEGATE_" + name.upper()
        assert setting.flag == "--" + name.replace("_", "-")


def test_precedence_defaults_file_profile_environment_flags(pipeline_file: str) -> None:
    file = load_pipeline_file(pipeline_file)
    resolved = file.resolve()
    assert resolved["seed"] == 3 and str(resolved.sources["seed"]).startswith("file [run]")
    assert resolved["max_concurrent_row_groups"] == 4
    assert str(resolved.sources["max_concurrent_row_groups"]) == "default"
    # the built-in 'ci' profile, extended by the file's [profiles.ci]
    ci = file.resolve(profile="ci")
    assert ci["records"] == 100 and str(ci.sources["records"]) == "profile 'ci' (built-in)"
    assert ci["seed"] == 40 and ci["buffer_size"] == 7
    assert str(ci.sources["seed"]).startswith("profile 'ci' (") and ":" in str(ci.sources["seed"])
    env = {"SLUICEGATE_SEED": "60", "SLUICEGATE_BUFFER_SIZE": "9"}
    with_env = file.resolve(profile="ci", environ=env)
    assert (with_env["seed"], with_env["buffer_size"]) == (60, 9)
    assert str(with_env.sources["seed"]) == "SLUICEGATE_SEED"
    flagged = file.resolve(
        profile="ci", environ=env, overrides={"seed": "70"}, override_origins={"seed": "--seed"}
    )
    assert flagged["seed"] == 70 and str(flagged.sources["seed"]) == "--seed"
    assert flagged["buffer_size"] == 9  # the environment still wins over the profile


def test_none_clears_an_inherited_value_back_to_the_default(pipeline_file: str) -> None:
    file = load_pipeline_file(pipeline_file)
    assert file.resolve()["deadline_seconds"] == 600
    cleared = file.resolve(overrides={"deadline_seconds": "none"})
    assert cleared["deadline_seconds"] is None
    assert str(cleared.sources["deadline_seconds"]).startswith("cleared by")
    # an environment 'none' clears the profile's value, a flag can still set it again
    env = {"SLUICEGATE_SEED": "None"}
    assert file.resolve(profile="mine", environ=env)["seed"] == 0
    assert file.resolve(profile="mine", environ=env, overrides={"seed": "5"})["seed"] == 5


def test_clearing_the_rate_drops_the_inherited_window_with_a_note(pipeline_file: str) -> None:
    file = load_pipeline_file(pipeline_file)
    mine = file.resolve(profile="mine")
    assert (mine["rate_limit"], mine["rate_window_seconds"]) == (10, 30.0)
    config = mine.request_config()
    assert config is not None
    assert config.defaults.requests_per_window == 10 and config.defaults.window_seconds == 30.0
    cleared = file.resolve(
        profile="mine",
        overrides={"rate_limit": "none"},
        override_origins={"rate_limit": "--rate-limit"},
    )
    assert cleared["rate_limit"] is None and cleared["rate_window_seconds"] is None
    assert cleared.request_config() is None
    assert any("rate_window_seconds 30 dropped" in n and "--rate-limit" in n for n in cleared.notes)


def test_a_window_without_a_rate_in_one_layer_names_both_fields(tmp_path: pathlib.Path) -> None:
    path = write_pipeline(tmp_path, run_extra="rate_window_seconds = 20")
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline_file(path).resolve()
    text = str(caught.value)
    assert "rate_window_seconds + rate_limit" in text
    assert "rate_window_seconds = 20.0 from file [run]" in text and "rate_limit unset" in text


def test_buffer_size_and_records_same_layer_error_higher_layer_caps(
    tmp_path: pathlib.Path,
) -> None:
    path = write_pipeline(tmp_path, records=10, buffer_size=50)
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline_file(path).resolve()
    problem = caught.value.problems[0]
    assert problem.field == "buffer_size + records"
    assert "buffer_size = 50" in problem.problem and "records = 10" in problem.problem
    assert "at most 10" in problem.fix
    # records given by a higher layer (a flag) caps the file's buffer_size instead
    good = write_pipeline(tmp_path, name="ok.toml", records=100, buffer_size=50)
    capped = load_pipeline_file(good).resolve(
        overrides={"records": "20"}, override_origins={"records": "--records"}
    )
    assert capped["buffer_size"] == 20 and "buffer_size" in capped.adjusted
    assert capped.notes == ("buffer_size 50 capped to records 20 (records from --records)",)


def test_stop_grace_must_be_shorter_than_the_deadline(pipeline_file: str) -> None:
    file = load_pipeline_file(pipeline_file)
    lowered = file.resolve(overrides={"deadline_seconds": "20"})
    assert lowered["stop_grace_seconds"] == 10.0  # the default 30 s, halved to fit
    with pytest.raises(PipelineConfigError, match="stop_grace_seconds \\+ deadline_seconds"):
        file.resolve(overrides={"deadline_seconds": "20", "stop_grace_seconds": "25"})


def test_bad_values_from_text_name_the_flag_or_variable(pipeline_file: str) -> None:
    file = load_pipeline_file(pipeline_file)
    with pytest.raises(PipelineConfigError) as caught:
        file.resolve(
            environ={"SLUICEGATE_BUFFER_SIZE": "lots", "SLUICEGATE_PROGRES": "x"},
            overrides={"records": "-3", "progress": "panell"},
            override_origins={"records": "--records", "progress": "--progress"},
        )
    text = str(caught.value)
    assert "SLUICEGATE_BUFFER_SIZE: got 'lots'. Fix: use an integer" in text
    assert "--records: got -3" in text
    assert "--progress: unknown value 'panell' (did you mean 'panel'?)" in text
    assert "PROGRES" not in text  # not a setting: ignored (listed by --show-config)


def test_unknown_profile_has_a_did_you_mean(pipeline_file: str) -> None:
    with pytest.raises(Exception, match=r"unknown profile 'nightley' \(did you mean 'nightly'"):
        load_pipeline_file(pipeline_file).resolve(profile="nightley")


def test_records_must_come_from_somewhere(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.toml"
    text = pipeline_text().replace("records = 20\n", "")
    path.write_text(text.replace("buffer_size = 5\n", ""))
    (tmp_path / "cli_gens.py").write_text("def word_count(question):\n    return 1\n")
    with pytest.raises(PipelineConfigError, match="records: not set"):
        load_pipeline_file(path).resolve()
    assert load_pipeline_file(path).resolve(profile="smoke").records == 10


BAD = """
name = "bad"
colums = 3

[run]
records = 20
buffer_sise = 10
seed = "x"

[endpoints.writer]
model = "w"
max_parallel = 8

[[columns]]
name = "topic"
kind = "sampler"
categories = ["a", "b"]

[[columns]]
name = "question"
kind = "llm_txt"
prompt = "Ask about {topic}."

[[columns]]
name = "answer"
kind = "llm_text"
prompt = "Answer: {questoin}"
model = "writter"

[[columns]]
name = "verdict"
kind = "judge"
prompt = "Q {answer}"
model = "writer"
score = { clarity = "1-5" }

[[columns]]
name = "n"
kind = "expression"
function = "cli_gens:wordcount"

[profiles.mine]
record = 4
"""

EXPECTED = [
    ("bad.toml:3", "colums: unknown key (did you mean 'columns'?)"),
    ("bad.toml:7", "run.buffer_sise: unknown setting (did you mean 'buffer_size'?)"),
    ("bad.toml:8", "run.seed: got 'x'"),
    ("bad.toml:12", "endpoints.writer.max_parallel: unknown key (did you mean"),
    ("bad.toml:21", "columns[1].kind: unknown kind 'llm_txt' (did you mean 'llm_text'?)"),
    ("bad.toml:27", "columns[2].prompt: placeholder {questoin} names no column (did you mean"),
    ("bad.toml:28", "columns[2].model: unknown endpoint alias 'writter' (did you mean 'writer'?)"),
    ("bad.toml:35", "columns[3].score: unknown key for a judge column (did you mean 'scores'?)"),
    ("bad.toml:40", "columns[4].function: 'cli_gens' has no 'wordcount'"),
    ("bad.toml:43", "profiles.mine.record: unknown setting (did you mean 'records'?)"),
]


def test_a_pipeline_file_reports_every_problem_with_its_line(tmp_path: pathlib.Path) -> None:
    write_pipeline(tmp_path)  # the generators module
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline_file(path)
    shown = [str(p) for p in caught.value.problems]
    assert len(shown) == len(EXPECTED), "\n".join(shown)
    for (where, what), line in zip(EXPECTED, shown, strict=True):
        assert line.startswith(f"{tmp_path}/{where}: {what}"), line
        assert "Fix: " in line


def test_validate_lists_every_problem_and_exits_1(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_pipeline(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text(BAD + "\n[profiles.fast]\nrate_window_seconds = 3\n")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: 11 problems" in out
    for _, what in EXPECTED:
        assert what in out
    good = write_pipeline(tmp_path, name="good.toml", extra=PROFILES)
    assert main(["validate", good]) == 0
    assert "ok: " in capsys.readouterr().out


def test_validate_resolves_each_profile_over_the_file(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(
        tmp_path, extra="[profiles.fast]\nrate_window_seconds = 3\nbuffer_size = 100\n"
    )
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert "profile 'fast': rate_window_seconds + rate_limit" in out
    # buffer_size comes from a higher layer than records (20, from [run]): an error, not a cap
    assert "profile 'fast': buffer_size + records" in out
    assert "2 problems" in out


def test_show_config_lists_values_sources_adjustments_and_ignored_environment(
    pipeline_file: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICEGATE_SEED", "61")
    monkeypatch.setenv("SLUICEGATE_SEDE", "1")
    code = main(["run", pipeline_file, "--profile", "ci", "--records", "5", "--show-config"])
    assert code == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and line[0].islower()}
    assert lines["records"].split()[1:] == ["5", "--records"]
    assert lines["seed"].split()[1:] == ["61", "SLUICEGATE_SEED"]
    assert "profile 'ci' (" in lines["buffer_size"] and "adjusted" in lines["buffer_size"]
    assert lines["output_dir"].split()[1] == "runs/t-ci"
    assert "adjusted: buffer_size 7 capped to records 5 (records from --records)" in out
    assert "ignored environment (not settings): SLUICEGATE_SEDE" in out


def test_config_errors_exit_2_with_one_message_and_no_traceback(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(tmp_path)
    assert main(["run", path, "--rate-window-seconds", "5", "--show-config"]) == 2
    err = capsys.readouterr().err
    assert "rate_window_seconds + rate_limit" in err and "Traceback" not in err
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["run", "not_a_module_anywhere:pipeline"]) == 2
    assert "cannot import 'not_a_module_anywhere'" in capsys.readouterr().err


def test_builtin_profiles_are_valid_settings() -> None:
    for name, table in BUILTIN_PROFILES.items():
        assert set(table) <= set(SETTINGS), name


def test_line_numbers_follow_quoted_and_dotted_keys(tmp_path: pathlib.Path) -> None:
    from sluicegate.datagen.toml_lines import TomlLines

    lines = TomlLines(
        textwrap.dedent(
            """\
            [run]
            records = 1
            [endpoints."my model"]
            model = "x"
            [[columns]]
            name = "a"
            prompt = \"\"\"
            [not a table]
            \"\"\"
            [[columns]]
            name = "b"
            scores = { a = "1" }
            """
        )
    )
    assert lines.line(("run", "records")) == 2
    assert lines.line(("endpoints", "my model", "model")) == 4
    assert lines.line(("columns", 1, "name")) == 11
    assert lines.line(("columns", 1, "scores", "a")) == 12
    assert lines.line(("columns", 0, "missing")) == 5
    assert lines.line(("nothing",)) is None
