"""Everything rich: tables, the live training panel, progress bars, safe printing of model text.

Model output and user text are printed as plain text: never parsed as rich markup, and control
characters other than newline and tab are shown escaped, so a corpus cannot drive the terminal.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe_text(text: str) -> str:
    """Escape terminal control characters (ESC, BEL, CR...) but keep newlines and tabs."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def write_model_text(text: str, stream: IO[str] | None = None, flush: bool = True) -> None:
    """Write model text as-is (after escaping controls): no markup, no highlighting."""
    stream = stream or sys.stdout
    stream.write(safe_text(text))
    if flush:
        stream.flush()


def plain(text: str) -> Text:
    """A rich Text that will not interpret '[bold]' and the like."""
    return Text(safe_text(text))


def shown_token(token: str) -> str:
    """How a token appears in a table: whitespace made visible."""
    return {"\n": "\\n", " ": "␣", "\t": "\\t", "\n\n": "\\n\\n"}.get(token, token)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _key_value_table(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows:
        table.add_row(key, plain(_fmt(value)))
    return table


def corpus_stats_table(stats: Any, cache_dir: Any = None) -> Group:
    summary = _key_value_table(
        "Corpus",
        [
            ("sources", ", ".join(stats.sources[:3]) + (" …" if len(stats.sources) > 3 else "")),
            ("characters", stats.characters),
            ("tokens", stats.tokens),
            ("vocabulary", stats.vocab_size),
            ("<unk> rate", f"{stats.unk_rate:.4%} ({stats.unk_count:,} tokens)"),
            ("train", f"{stats.train_tokens:,} tokens / {stats.train_chars:,} chars"),
            ("validation", f"{stats.val_tokens:,} tokens / {stats.val_chars:,} chars"),
            ("cache", str(cache_dir) if cache_dir else "-"),
        ],
    )
    top = Table(title="Most frequent tokens", title_justify="left")
    top.add_column("token")
    top.add_column("count", justify="right")
    top.add_column("share", justify="right")
    for token, count in stats.top_tokens:
        top.add_row(plain(shown_token(token)), f"{count:,}", f"{count / max(1, stats.tokens):.2%}")
    return Group(summary, top)


def checkpoint_table(path: Any, state: dict, parameters: int) -> Table:
    model, data = state["model_config"], state.get("data_config", {})
    counters, metrics = state.get("trainer", {}), state.get("metrics", {})
    tokenizer = state["tokenizer"]
    return _key_value_table(
        f"Checkpoint {path}",
        [
            (
                "model",
                f"{model['layers']}x{model['hidden']} {model['cell'].upper()}, embed {model['embed']}"
                f", dropout {model['dropout']}{', tied' if model['tie_weights'] else ''}",
            ),
            ("parameters", parameters),
            (
                "tokenizer",
                f"{tokenizer['level']}, eos={tokenizer['eos']}, vocabulary {model['vocab_size']:,}",
            ),
            ("corpus", ", ".join(state.get("corpus", {}).get("sources", [])) or "-"),
            ("steps", counters.get("step")),
            ("tokens seen", counters.get("tokens")),
            ("training time", f"{counters.get('elapsed', 0):.0f}s"),
            ("best val loss", metrics.get("best_val_loss")),
            ("best val bpc", metrics.get("best_val_bpc")),
            ("val bpc (this file)", metrics.get("val_bpc")),
            ("level / val fraction", f"{data.get('level', '-')} / {data.get('val_fraction', '-')}"),
            ("format", f"v{state['format_version']}, charrnn {state.get('charrnn_version', '?')}"),
        ],
    )


def data_catalog_table(rows: Iterable[tuple[Any, bool]]) -> Table:
    rows = list(rows)
    table = Table(title="Corpora", title_justify="left")
    table.add_column("name", no_wrap=True, min_width=max(len(entry.name) for entry, _ in rows))
    for column in ("kind", "size", "licence", "present"):
        table.add_column(column, no_wrap=column != "licence")
    table.add_column("description")
    for entry, present in rows:
        size = f"{entry.size / 1e6:.1f} MB" if entry.size else "≤4 MB"
        kind = "built-in" if entry.builtin else ("download" if entry.url else "--from only")
        table.add_row(
            entry.name, kind, size, entry.licence, "yes" if present else "no", entry.description
        )
    return table


def score_table(scores: list, ranked: bool) -> Table:
    table = Table(title="Scores" + (" (most likely first)" if ranked else ""), title_justify="left")
    for column in (
        "#",
        "text",
        "log P",
        "nats/token",
        "bits/char",
        "perplexity",
        "tokens",
        "<unk>",
    ):
        table.add_column(column, justify="left" if column == "text" else "right")
    for rank, score in enumerate(scores, 1):
        table.add_row(
            str(rank),
            plain(score.text if len(score.text) <= 60 else score.text[:57] + "…"),
            f"{score.logprob:.3f}",
            f"{score.nats_per_token:.4f}",
            f"{score.bits_per_char:.4f}",
            f"{score.perplexity:.3f}",
            f"{score.tokens:,}",
            f"{score.unknown:,}",
        )
    return table


def byte_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


class TrainingDisplay:
    """Shows TrainEvents: a live panel on a terminal, plain log lines otherwise."""

    def __init__(self, console: Console, header: Any = None) -> None:
        self.console = console
        self.header = header  # printed once training has really started (options all valid)
        self.live_mode = console.is_terminal
        self.last: dict[str, Any] = {}
        self.samples: list[str] = []
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
            _fmt(last.get("step")),
            "epoch",
            _fmt(last.get("epoch"), 2),
        )
        stats.add_row(
            "train loss",
            _fmt(last.get("train_loss")),
            "tokens/s",
            _fmt(int(last.get("tps") or 0)),
        )
        stats.add_row(
            "val loss",
            _fmt(last.get("val_loss")),
            "val bpc",
            _fmt(last.get("val_bpc")),
        )
        stats.add_row("best val", _fmt(last.get("best_val_loss")), "lr", f"{last.get('lr', 0):.2e}")
        parts: list[Any] = [self.progress, stats]
        if self.samples:
            parts.append(Panel(plain(self.samples[-1][-400:]), title="sample", border_style="dim"))
        return Panel(Group(*parts), title=last.get("title", "charrnn train"), border_style="cyan")

    def __call__(self, event: Any) -> None:
        if event.kind == "start":
            if self.header is not None:
                self.console.print(self.header)
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
        if event.progress is not None:
            self.progress.update(self.task, completed=event.progress)
        if event.kind == "sample":
            self.samples.append(event.text)
        if self.live is not None:
            if event.kind == "start":
                last["title"] = f"charrnn train · {event.message}"
            elif event.kind in ("warning", "end") and event.message:
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
