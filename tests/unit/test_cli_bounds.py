"""Every number of the command line has bounds (DESIGN §9), and a bad one is one line on stderr
and exit status 2 before anything starts: argparse's ``int`` and ``float`` took 10**30, "٧",
"nan" and "1e300", and each then failed later with a traceback (a port past 65,535, a division
by zero devices) or ran until memory ran out."""

from __future__ import annotations

import argparse

import pytest

from hub.cli.commands import _parser, main


def _actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:  # noqa: SLF001 - argparse keeps no public list of its options
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                found += _actions(sub)
        else:
            found.append((parser.prog, action))
    return found


def test_no_option_of_any_command_takes_an_unbounded_int_or_float() -> None:
    unbounded = [(prog, action.dest) for prog, action in _actions(_parser()) if action.type in (int, float)]
    assert unbounded == []


@pytest.mark.parametrize("argv, says", [
    (["serve", "--port", "70000"], "cardhub serve: argument --port: must be a whole number from 1 to 65,535"),
    (["serve", "--port", "-1"], "cardhub serve: argument --port: must be a whole number from 1 to 65,535"),
    (["demo", "--port", "99999999999999999999999999"], "cardhub demo: argument --port: must be a whole number"),
    (["demo", "--accounts", "0"], "cardhub demo: argument --accounts: must be a whole number from 1 to 1,000,000"),
    (["sim", "--devices", "2"], "cardhub sim: argument --devices: must be a whole number from 3 to 10,000"),
    (["sim", "--batch", "1001"], "cardhub sim: argument --batch: must be a whole number from 1 to 1,000"),
    (["sim", "--seed", "1_0"], "cardhub sim: argument --seed: not a whole number: '1_0'"),
    (["sim", "--swipes", " 7"], "cardhub sim: argument --swipes: not a whole number: ' 7'"),
    (["sim", "--offline-share", "nan"], "cardhub sim: argument --offline-share: must be a number from 0 to 1"),
    (["bench", "--devices", "0"], "cardhub bench: argument --devices: must be a whole number from 1 to 10,000"),
    (["bench", "--max-rate", "٧"], "cardhub bench: argument --max-rate: not a whole number: '٧'"),
    (["bench", "--seconds", "1e300"], "cardhub bench: argument --seconds: must be a number above 0 and at most 3600"),
    (["bench", "--seconds", "inf"], "cardhub bench: argument --seconds: must be a number above 0"),
    (["bench", "--naive-seconds", "0"], "cardhub bench: argument --naive-seconds: must be a number above 0"),
    (["bench", "--overload", "-1"], "cardhub bench: argument --overload: must be a number from 0 to 100"),
    (["bench", "--lunch-batch", "0"], "cardhub bench: argument --lunch-batch: must be a whole number from 1 to 1,000"),
    (["bench", "--idle-connections", "1e3"], "cardhub bench: argument --idle-connections: not a whole number: '1e3'"),
    (["bench", "--seconds", "3600"],
     "cardhub: --seconds × --max-rate: at most 5,000,000 events signed ahead of a phase, not 28,800,000"),
    (["bench", "--online-seconds", "3600", "--online-rate", "2000", "--max-rate", "1000"],
     "cardhub: --online-seconds × --online-rate: at most 5,000,000 events"),
    (["frobnicate"], "cardhub: argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_a_bad_number_is_one_line_and_exit_status_2(argv: list[str], says: str, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # bench's data directory would be made here
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    assert stopped.value.code == 2 and out == ""
    assert err.startswith(says) and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # type: ignore[attr-defined] - nothing was started


def test_the_defaults_and_the_documented_runs_are_within_the_bounds() -> None:
    parser = _parser()
    for argv in (["bench"], ["bench", "--seconds", "300", "--overload", "0"], ["bench", "--scenario", "lunch"],
                 ["bench", "--flood"], ["sim"], ["demo", "--port", "0"], ["serve"]):
        parser.parse_args(argv)
