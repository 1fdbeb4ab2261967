"""``cityhub deadletters replay``'s options: refused in one line, before Kafka is touched."""

from __future__ import annotations

from click.testing import CliRunner

from cityhub.streams.deadletters.cli import deadletters


def _run(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(deadletters, ["replay", *args])
    return done.exit_code, done.output


def test_a_time_that_is_no_rfc3339_is_refused_with_an_example() -> None:
    code, out = _run("--since", "yesterday")
    assert code == 2
    assert "--since" in out
    assert "2026-12-04T08:00:00Z" in out
    assert "Traceback" not in out


def test_since_after_until_is_refused() -> None:
    code, out = _run("--since", "2026-12-04T10:00:00Z", "--until", "2026-12-04T09:00:00Z")
    assert code == 2
    assert "--since must be before --until" in out


def test_an_unknown_reason_and_a_limit_below_one_are_refused() -> None:
    assert _run("--reason", "bogus")[0] == 2
    assert _run("--limit", "0")[0] == 2
