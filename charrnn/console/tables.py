"""Tables, panels and progress bars (rich) for what the commands show."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from .text import plain, safe_text, shown_token


def number_text(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _key_value_table(title: Any, rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows:
        table.add_row(key, plain(number_text(value)))
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


def checkpoint_table(info: Any) -> Table:
    """`charrnn info`: an api.CheckpointInfo."""
    model, counters, metrics, tok = info.model, info.counters, info.metrics, info.tokenizer
    table = _key_value_table(
        "",
        [
            (
                "model",
                f"{model.layers}x{model.hidden} {model.cell.upper()}, embed {model.embed}"
                f", dropout {model.dropout}{', tied' if model.tie_weights else ''}",
            ),
            ("parameters", info.parameters),
            ("tokenizer", f"{tok['level']}, eos={tok['eos']}, vocabulary {tok['vocabulary']:,}"),
            ("corpus", ", ".join(info.sources) or "-"),
            ("fine-tuned from", _parent(info.parent)),
            ("steps", counters.get("step")),
            ("tokens seen", counters.get("tokens")),
            ("training time", f"{counters.get('elapsed') or 0:.0f}s"),
            ("best val loss", metrics.get("best_val_loss")),
            ("best val bpc", metrics.get("best_val_bpc")),
            ("val bpc (this file)", metrics.get("val_bpc")),
            (
                "level / val fraction",
                f"{info.data.get('level', '-')} / {info.data.get('val_fraction', '-')}",
            ),
            ("format", info.format),
        ],
    )
    table.title = plain(f"Checkpoint {info.path}")  # a path is never markup
    return table


def _parent(parent: dict | None) -> str:
    if not parent:
        return "-"
    return f"{parent['path']} (step {parent['step']}, sha256 {parent['sha256'][:12]})"


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


def adaptation_table(adaptation: Any) -> Table:
    """`charrnn score --adapt`: the trained weights' score and the adapting copy's."""
    a = adaptation
    table = Table(title="Dynamic evaluation", title_justify="left")
    for column in ("weights", "nats/token", "bits/char", "perplexity"):
        table.add_column(column, justify="left" if column == "weights" else "right")
    for name, score in (("trained (static)", a.static), ("adapting while reading", a.adapted)):
        table.add_row(
            name,
            f"{score.nats_per_token:.4f}",
            f"{score.bits_per_char:.4f}",
            f"{score.perplexity:.3f}",
        )
    s = a.settings
    table.caption = (
        f"{a.gain:+.4f} nats/token from adapting; {a.static.tokens:,} tokens in {a.segments:,} "
        f"segments of {s.segment}, {s.rule} steps of {s.lr:g}, decay {s.decay:g}; "
        f"{a.ms_per_1000_chars:.0f} ms per 1,000 characters"
        + (f"; fell back to the trained weights {a.fallbacks} times" if a.fallbacks else "")
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


def chat_header(model: Any, session: Any, label: str) -> Panel:
    config = model.model.config
    s = session.sampling
    lines = [
        f"model      {config.layers}x{config.hidden} {config.cell.upper()}, "
        f"{model.model.num_parameters:,} parameters ({label})",
        f"tokenizer  {model.tokenizer.level}, eos={model.tokenizer.eos}, "
        f"vocabulary {model.tokenizer.vocab_size:,}",
        f"sampling   temperature {s.temperature}, top-k {s.top_k or 'off'}, "
        f"top-p {s.top_p or 'off'}, seed {s.seed}, max reply {session.max_reply}",
        "Type a line and press Enter. /help lists commands; Ctrl-C stops a reply; Ctrl-D quits.",
    ]
    return Panel(plain("\n".join(lines)), title="charrnn chat", border_style="cyan")


def train_summary(result: Any, best: Any, sample_length: int) -> list[str]:
    """The closing lines of `charrnn train`, before the sample."""
    bpc = f"{result.best_val_bpc:.4f}" if result.best_val_bpc is not None else "-"
    loss = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "-"
    return [
        safe_text(
            f"Done: {result.stop_reason}. {result.steps:,} steps in {result.elapsed:.0f}s, "
            f"best val loss {loss} nats/token ({bpc} bits/char). Model: {best}"
        ),
        f"\nWhat it writes now ({sample_length} tokens, temperature 0.8):\n",
    ]
