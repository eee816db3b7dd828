"""What ``cardhub audit verify`` found: one check per line, the report, and how both are shown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console()


@dataclass
class Check:
    name: str
    count: int = 0
    unit: str = ""
    problem: str | None = None  # the first thing found wrong
    detail: str = ""

    def fail(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, unit: str = "") -> Check:
        check = Check(name, unit=unit)
        self.checks.append(check)
        return check

    @property
    def ok(self) -> bool:
        return all(c.problem is None for c in self.checks)


class progress_bar:
    """The bar of events verified, advanced by the function its ``with`` gives."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(TextColumn("verifying events"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=console, transient=True)
        self.task = self.progress.add_task("events", total=total)
        self.n = 0

    def __enter__(self) -> Callable[[], None]:
        self.progress.__enter__()

        def advance() -> None:
            self.n += 1
            if self.n % 1000 == 0:
                self.progress.update(self.task, completed=self.n)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.task, completed=self.n)
        self.progress.__exit__(*exc)  # type: ignore[arg-type]


def print_report(report: Report) -> None:
    table = Table(title="cardhub audit verify")
    table.add_column("check")
    table.add_column("count", justify="right")
    table.add_column("result")
    for check in report.checks:
        count = f"{check.count:,} {check.unit}".strip()
        if check.problem is None:
            result = "[green]OK[/]" + (f"  {check.detail}" if check.detail else "")
        else:
            result = f"[red]MISMATCH[/]  {check.problem}"
        table.add_row(check.name, count, result)
    console.print(table)
    console.print("[green]all checks passed[/]" if report.ok else "[red]verification FAILED[/]")
