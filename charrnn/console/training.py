"""The live training panel: a rich Live view on a terminal, plain log lines otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from .plots import sparkline
from .tables import number_text
from .text import plain


class TrainingDisplay:
    """Shows TrainEvents: a live panel on a terminal, plain log lines otherwise."""

    def __init__(self, console: Console, header: Any = None) -> None:
        self.console = console
        self.header = header  # printed once training has really started (options all valid)
        self.live_mode = console.is_terminal
        self.last: dict[str, Any] = {}
        self.samples: list[str] = []
        self.val_history: list[float] = []  # validation bits/char, for the sparkline
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task("train", total=1.0)
        self.live: Live | None = None
        self.started = time.perf_counter()

    def __enter__(self) -> TrainingDisplay:
        if self.live_mode:
            self.live = Live(
                self._render(), console=self.console, refresh_per_second=4, transient=False
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def _render(self) -> Panel:
        stats = Table.grid(padding=(0, 2))
        for _ in range(4):
            stats.add_column()
        last = self.last
        stats.add_row(
            "step",
            number_text(last.get("step")),
            "epoch",
            number_text(last.get("epoch"), 2),
        )
        stats.add_row(
            "train loss",
            number_text(last.get("train_loss")),
            "tokens/s",
            number_text(int(last.get("tps") or 0)),
        )
        stats.add_row(
            "val loss",
            number_text(last.get("val_loss")),
            "val bpc",
            number_text(last.get("val_bpc")),
        )
        stats.add_row(
            "best val", number_text(last.get("best_val_loss")), "lr", f"{last.get('lr', 0):.2e}"
        )
        if self.val_history:
            stats.add_row("val bpc", sparkline(self.val_history), "", "")
        parts: list[Any] = [self.progress, stats]
        if self.samples:
            parts.append(Panel(plain(self.samples[-1][-400:]), title="sample", border_style="dim"))
        return Panel(Group(*parts), title=last.get("title", "charrnn train"), border_style="cyan")

    def __call__(self, event: Any) -> None:
        if event.kind == "start":
            if self.header is not None:
                self.console.print(self.header)
            if event.text:  # why this size (sizing.py)
                self.console.print(plain(f"size: {event.text}"))
            if self.live_mode and self.live is None:
                self.live = Live(self._render(), console=self.console, refresh_per_second=4)
                self.live.__enter__()
        last = self.last
        last.update(
            step=event.step, epoch=event.epoch, lr=event.lr, best_val_loss=event.best_val_loss
        )
        if event.train_loss is not None:
            last["train_loss"] = event.train_loss
        if event.tokens_per_sec is not None:
            last["tps"] = event.tokens_per_sec
        if event.val_loss is not None:
            last.update(val_loss=event.val_loss, val_bpc=event.val_bpc)
            self.val_history.append(event.val_bpc)
        if event.progress is not None:
            self.progress.update(self.task, completed=event.progress)
        if event.kind == "sample":
            self.samples.append(event.text)
        if self.live is not None:
            if event.kind == "start":
                last["title"] = f"charrnn train · {event.message}"
            elif event.kind in ("replan", "average", "warning", "end") and event.message:
                self.live.console.print(plain(f"{event.kind}: {event.message}"))
            self.live.update(self._render())
            return
        self._plain_line(event)

    def _plain_line(self, event: Any) -> None:
        out = self.console
        if event.kind == "start":
            out.print(plain(f"start: {event.message}"))
        elif event.kind == "log":
            out.print(
                plain(
                    f"step {event.step} epoch {event.epoch:.2f} loss {event.train_loss:.4f} "
                    f"lr {event.lr:.2e} grad {event.grad_norm:.2f} tok/s {event.tokens_per_sec:,.0f} "
                    f"time {event.elapsed:.0f}s"
                )
            )
        elif event.kind == "eval":
            mark = " *best*" if event.improved else ""
            out.print(
                plain(
                    f"eval step {event.step}: val loss {event.val_loss:.4f} bpc {event.val_bpc:.4f}{mark}"
                )
            )
        elif event.kind == "sample":
            out.print(plain(f"sample at step {event.step}:\n{event.text}"))
        elif event.message:
            out.print(plain(f"{event.kind}: {event.message}"))
