"""Progress: the meter's arithmetic, plain lines for logs, and the rich panel (recorded console),
driven by scripted snapshots in virtual time."""

from __future__ import annotations

import io
import re

import pytest
import trio
import trio.testing
from rich.console import Console

from sluicegate.cli import ProgressMeter, TerminalProgress
from sluicegate.cli.progress import choose_mode
from sluicegate.datagen import EndpointSnapshot, RunSnapshot


def snapshot(
    elapsed: float,
    rows_done: int,
    *,
    requests: int = 0,
    rate_limited: int = 0,
    cooldown: float = 0.0,
    phase: str = "running",
    columns: dict[str, int] | None = None,
    failures: dict[str, int] | None = None,
    target: int = 1000,
) -> RunSnapshot:
    return RunSnapshot(
        run_id="r1",
        phase=phase,  # type: ignore[arg-type]
        elapsed_seconds=elapsed,
        rows_target=target,
        rows_done=rows_done,
        rows_written=rows_done // 100 * 100,
        rows_failed=sum((failures or {}).values()),
        rows_filtered=0,
        row_groups_in_flight=4,
        cells_running=24,
        columns_done=columns if columns is not None else {"q": rows_done, "a": rows_done // 2},
        endpoints=(
            EndpointSnapshot(
                endpoint="sim/m",
                aliases=("llm",),
                in_flight=24,
                waiters=7,
                limit=24,
                static_cap=32,
                rate_limited=rate_limited,
                cells_running=31,
                requests=requests,
                failures=2,
                cooldown_seconds=cooldown,
                circuit="closed",
            ),
        ),
        failures=failures or {},
    )


def test_the_meter_measures_rates_over_its_window_and_derives_the_eta() -> None:
    meter = ProgressMeter(window=10.0)
    first = meter.update(snapshot(0.0, 0), now=100.0)
    assert first.rows_per_second is None and first.eta_seconds is None
    meter.update(snapshot(5.0, 100, requests=400, rate_limited=1), now=105.0)
    later = meter.update(snapshot(10.0, 300, requests=1200, rate_limited=4), now=110.0)
    assert later.rows_per_second == pytest.approx(30.0)  # (300 - 0) rows / 10 s
    assert later.eta_seconds == pytest.approx(700 / 30.0)
    (llm,) = later.endpoints
    assert llm.name == "llm" and llm.requests_per_second == pytest.approx(120.0)
    assert (llm.rate_limited, llm.recent_rate_limited) == (4, 4)
    # beyond the window, the oldest snapshots no longer count
    latest = meter.update(snapshot(20.0, 400, requests=1600, rate_limited=4), now=120.0)
    assert latest.rows_per_second == pytest.approx(10.0)  # (400 - 300) / 10 s
    assert latest.endpoints[0].recent_rate_limited == 0
    assert latest.fraction == pytest.approx(0.4)


def test_the_meter_counts_rows_of_earlier_runs_in_the_column_bars() -> None:
    meter = ProgressMeter()
    resumed = meter.update(snapshot(0.0, 600, columns={"q": 0, "a": 0}), now=0.0)
    assert [c.done for c in resumed.columns] == [600, 600]
    later = meter.update(snapshot(2.0, 700, columns={"q": 150, "a": 100}), now=2.0)
    assert [(c.name, c.done, c.target) for c in later.columns] == [
        ("q", 750, 1000),
        ("a", 700, 1000),
    ]


class ScriptedControl:
    """A stand-in for RunControl: snapshot() follows virtual time (100 rows per second)."""

    def __init__(self) -> None:
        self.started = trio.current_time()
        self.finished = False

    def snapshot(self) -> RunSnapshot:
        t = round(trio.current_time() - self.started, 6)
        rows = min(1000, round(100 * t))
        return snapshot(
            t,
            rows,
            requests=int(400 * t),
            rate_limited=int(t) // 4,
            cooldown=1.5 if int(t) % 4 == 0 else 0.0,
            phase="finished" if self.finished else "running",
            failures={"answer: ProviderError": 2} if t > 3 else None,
        )


async def test_plain_lines_every_interval_with_the_key_figures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = io.StringIO()
    view = TerminalProgress("lines", stream=stream, line_interval=5.0)
    control = ScriptedControl()
    async with trio.open_nursery() as nursery:
        await nursery.start(view.run, control)
        await trio.sleep(16.0)
        nursery.cancel_scope.cancel()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # at 5, 10 and 15 s; no cursor movement, no colour
    assert "\x1b" not in stream.getvalue()
    assert lines[0].startswith("[0:05] running: 500/1,000 rows (50%), 100 rows/s, ETA 0:05;")
    assert lines[1].startswith("[0:10] running: 1,000/1,000 rows (100%)")
    pattern = (
        r"\| llm: [\d.,]+ req/s, 24/24 in flight, 7 waiting, \d+ 429s"
        r".* \| failures: answer: ProviderError 2$"
    )
    assert re.search(pattern, lines[2]), lines[2]


async def test_the_panel_is_redrawn_at_a_bounded_rate_on_a_recorded_console(
    autojump_clock: trio.testing.MockClock,
) -> None:
    console = Console(record=True, file=io.StringIO(), width=100, force_terminal=True)
    view = TerminalProgress("panel", console=console, title="sluicegate run qa")
    control = ScriptedControl()
    async with trio.open_nursery() as nursery:
        await nursery.start(view.run, control)
        await trio.sleep(4.1)
        view.notice("SIGINT received: stopping")
        await trio.sleep(1.0)
        control.finished = True
        nursery.cancel_scope.cancel()
    # 4 frames a second for 5.1 s, plus the last frame when it stops
    assert view.frames == 4 * 5 + 1
    text = console.export_text()
    last = text[text.rindex("sluicegate run qa") :]
    assert "sluicegate run qa · finished" in last
    assert "510 / 1,000  51%" in last and "100 rows/s" in last and "ETA 0:05" in last
    assert re.search(r"\bq\s+[━╺╸]+\s+510\b", last) and re.search(r"\ba\s+[━╺╸]+\s+255\b", last)
    row = next(line for line in last.splitlines() if "│  llm" in line)
    assert row.split()[1:11] == ["llm", "400", "24", "24", "32", "7", "1", "(+1)", "2", "ok"]
    assert "failed rows: 2 answer: ProviderError" in last
    assert "SIGINT received: stopping" in text
    cooling = text[: text.index("SIGINT")]
    assert "cooldown 1.5s" in cooling  # shown while a cooldown runs (t in [4, 5))


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_mode_picks_the_panel_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM"):
        monkeypatch.delenv(name, raising=False)
    assert choose_mode("auto", Console(file=FakeTerminal())) == "panel"
    assert choose_mode("auto", Console(file=io.StringIO())) == "lines"
    # CI often forces colour: rich then calls a log a terminal, but it is still a log
    assert choose_mode("auto", Console(file=io.StringIO(), force_terminal=True)) == "lines"
    assert choose_mode("off", Console(file=FakeTerminal())) == "off"
    assert choose_mode("panel", Console(file=io.StringIO())) == "panel"
