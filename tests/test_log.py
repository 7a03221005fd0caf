"""Logging and progress bars: bars only on a terminal and not with --quiet, stage timings, the build log."""

from __future__ import annotations

import io
import logging

import pytest

from xseason.cli import main
from xseason.commands import COMMANDS
from xseason.core.log import log_file, logger, progress, progress_enabled, set_progress, stage


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging():
    """Each test leaves the `xseason` logger and the bars as it found them (the CLI configures both)."""
    level, handlers = logger.level, list(logger.handlers)
    yield
    for handler in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(handler)
    logger.setLevel(level)
    set_progress(True)


def test_bars_are_hidden_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress_enabled()
    bar = progress(range(3), desc="x")
    assert bar.disable and list(bar) == [0, 1, 2]


def test_bars_on_a_terminal_unless_turned_off(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert list(progress(range(3), desc="counting")) == [0, 1, 2]
    assert "counting" in terminal.getvalue()
    assert progress(range(3), enabled=False).disable  # a caller's own switch (`progress=False`)
    with progress(total=3, desc="manual") as bar:  # a bar without an iterable, updated by hand
        bar.update(3)
    set_progress(False)  # --quiet
    assert progress(range(3)).disable and progress(total=3).disable
    set_progress(True)
    assert not progress(range(3)).disable


def test_stage_logs_start_and_end_with_a_duration(caplog):
    with caplog.at_level(logging.INFO, logger="xseason"), stage("reconstruction"):
        pass
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    assert caplog.records[0].getMessage() == "reconstruction: started"
    assert caplog.records[1].getMessage().startswith("reconstruction: done in ")
    assert caplog.records[1].getMessage().endswith(" s")


def test_a_failing_stage_is_logged_and_the_error_raised(caplog):
    with caplog.at_level(logging.INFO, logger="xseason"), pytest.raises(KeyError), stage("registration"):
        raise KeyError("x")
    assert caplog.records[-1].levelno == logging.ERROR
    assert caplog.records[-1].getMessage().startswith("registration: failed after ")


def test_log_file_records_everything_while_open_then_detaches(tmp_path):
    path = tmp_path / "work" / "build.log"
    log = logging.getLogger("xseason.some.module")
    before = list(logger.handlers), logger.level
    with log_file(path) as written:
        assert written == path
        log.debug("a detail")
        with stage("store"):
            log.warning("a problem")
    log.info("after the build")
    assert (list(logger.handlers), logger.level) == before
    text = path.read_text()
    for line in (
        "DEBUG xseason.some.module: a detail",
        "INFO xseason: store: started",
        "WARNING xseason.some.module: a problem",
        "xseason: store: done in",
    ):
        assert line in text
    assert "after the build" not in text
    with log_file(path):  # a resumed build appends
        log.info("second run")
    assert path.read_text().startswith(text) and "second run" in path.read_text()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_quiet_and_verbose(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--quiet" in text and "--verbose" in text


@pytest.mark.parametrize(
    "option, shown, bars", [("--quiet", "W", False), (None, "IW", True), ("-v", "DIW", True)]
)
def test_cli_output_options_set_the_console_level_and_the_bars(option, shown, bars, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["stats", "no-such-dataset", *([option] if option else [])]) == 2  # fails after configuring
    assert progress_enabled() == bars
    log = logging.getLogger("xseason.test")
    log.debug("message D")
    log.info("message I")
    log.warning("message W")
    assert [c for c in "DIW" if f"message {c}" in terminal.getvalue()] == list(shown)


def test_a_quiet_build_writes_its_stages_to_build_log(tiny_scene, tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["build", str(tiny_scene / "manifest.csv"), "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "dataset: " in captured.out  # the summary, on stdout
    assert "started" not in captured.err and "done in" not in captured.err  # --quiet: warnings only
    text = (tmp_path / "ds.work" / "build.log").read_text()
    for name in ("reconstruction", "registration", "association", "correspondences", "store"):
        assert f"{name}: started" in text and f"{name}: done in" in text, name

    assert main(argv) == 0  # complete: reused, and said why
    captured = capsys.readouterr()
    assert "already complete: reused" in captured.out
    assert "reused" in captured.err and "sha256" in captured.err

    assert main([*argv, "--set", "correspondences.densify=false"]) == 0  # another config: SfM reused
    err = capsys.readouterr().err
    for line in (
        "built from another config",
        "resuming in",
        "features: reused",
        "model reused",
        "registration: reused",
        "correspondences: done in",
    ):
        assert line in err, line
