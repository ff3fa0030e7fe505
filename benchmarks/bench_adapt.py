"""Fine-tuning and dynamic evaluation against training from scratch, in the same run.

    python benchmarks/bench_adapt.py --language en [--threads 1] [--work DIR] [--sweep]
    python benchmarks/bench_adapt.py --language zh [--threads 1] [--work DIR] [--sweep]

English: a model trained --source-minutes (10) on WikiText-2 (valid + test; its own validation
split is the test file's tail) is fine-tuned --ft-minutes (2) on the first 100,000 characters of
tinyshakespeare, against --ft-minutes and --long-minutes (12) from scratch on the same 100,000
characters: best validation loss on their held-out tail (the same text for all three). Then
tinyshakespeare's validation split (its last 10%) is scored static and adapted (dynamic
evaluation, default settings) with a --source-minutes model trained on tinyshakespeare, and with
the fine-tuned one.

Chinese: tang_poems.txt's lines holding its rarest characters are held apart (two slices of
~100 KB: one for --sweep, one for the comparison); a model trained --source-minutes on the rest
is fine-tuned on the comparison slice against training from scratch on it, and writes wujue.

--sweep also measures what the defaults rest on, never on tinyshakespeare: the fine-tuning
learning rate's share (zh: on the sweep slice; en: on 100K characters of Python source) and the
adaptation's step size, decay and segment (en: on the source's own held-out WikiText tail).
Runs are kept under --work (default /tmp/charrnn-bench-adapt) and reused with --reuse.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sysconfig
import time
from pathlib import Path

import torch
from common import SHARED, print_table, shakespeare, write_result

import charrnn
from charrnn import api
from charrnn.config import AdaptSettings
from charrnn.training.plan.rule import FINE_TUNE_LR_SCALE, lr_for

SLICE_CHARS = 33_000  # ~100 KB of Chinese in UTF-8
ENGLISH_CHARS = 100_000


def run(corpus: Path, out: Path, minutes: float, threads: int, reuse: bool, **options) -> dict:
    """Train (or reuse) a run; its best validation loss and what it was."""
    if not (reuse and (out / "best.pt").is_file()):
        config = charrnn.TrainConfig(
            max_time=minutes * 60, threads=threads, **options.pop("train", {})
        )
        started = time.perf_counter()
        api.train([corpus], out, train_config=config, overwrite=True, **options)
        print(f"  {out.name}: {time.perf_counter() - started:.0f} s", flush=True)
    info = api.info(out)
    m = info.model
    return {
        "run": str(out),
        "best_val_loss": info.metrics.get("best_val_loss"),
        "steps": info.counters.get("step"),
        "model": f"{m.layers}x{m.hidden} {m.cell}",
        "vocabulary": info.tokenizer["vocabulary"],
    }


def adapt_scores(model_run: Path, text: str, settings: AdaptSettings | None = None) -> dict:
    model = api.load(model_run)
    result = model.adapt(text, settings)
    return {
        "static": result.static.nats_per_token,
        "adapted": result.adapted.nats_per_token,
        "gain": result.gain,
        "fallbacks": result.fallbacks,
        "ms_per_1000_chars": result.ms_per_1000_chars,
        "settings": dataclasses.asdict(result.settings),
    }


def python_source(work: Path) -> Path:
    """The first 100,000 characters of this Python's standard library sources, sorted by name:
    a new domain for an English model, and not tinyshakespeare."""
    path = work / "python100k.txt"
    text = ""
    for source in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text += source.read_text(encoding="utf-8", errors="replace")
        if len(text) >= ENGLISH_CHARS:
            break
    path.write_text(text[:ENGLISH_CHARS], encoding="utf-8")
    return path


def validation_tail(text: str, fraction: float = 0.1) -> str:
    """The text charrnn validates on: the last `fraction` of the characters."""
    return text[len(text) - int(round(len(text) * fraction)) :]


def english(args: argparse.Namespace) -> dict:
    work, t, reuse = args.work, args.threads, args.reuse
    wiki = work / "wikitext.txt"
    if not wiki.is_file():
        parts = [
            (SHARED / "wikitext-2" / name).read_text(encoding="utf-8")
            for name in ("valid.txt", "test.txt")
        ]
        wiki.write_text("".join(parts), encoding="utf-8")
    shakes = shakespeare().read_text(encoding="utf-8")
    small = work / "shakespeare100k.txt"
    small.write_text(shakes[:ENGLISH_CHARS], encoding="utf-8")
    result: dict = {}
    source = work / "en-source"
    result["source"] = run(wiki, source, args.source_minutes, t, reuse)
    if args.sweep:
        tail = validation_tail(wiki.read_text(encoding="utf-8"))[:ENGLISH_CHARS]
        grid = [
            AdaptSettings(lr=lr, decay=decay, segment=segment)
            for lr, decay, segment in [
                (1e-4, 1e-3, 50), (3e-4, 1e-3, 50), (1e-3, 1e-3, 50), (3e-3, 1e-3, 50),
                (1e-2, 1e-3, 50), (1e-3, 0.0, 50), (1e-3, 1e-2, 50), (3e-4, 1e-2, 50),
                (1e-4, 1e-2, 50), (1e-3, 1e-3, 20), (1e-3, 1e-3, 100), (3e-4, 1e-3, 100),
                (3e-4, 1e-2, 100),
            ]
        ]  # fmt: skip
        result["adapt_sweep"] = [adapt_scores(source / "best.pt", tail, s) for s in grid]
        python = python_source(work)
        hidden = api.info(source).model.hidden
        result["python_lr_sweep"] = {
            share: run(python, work / f"en-python-{share:g}", args.ft_minutes, t, reuse,
                       init_from=source, train={"lr": lr_for(hidden) * share})
            for share in (0.1, 0.3, 1.0)
        }  # fmt: skip
        print_table(
            "fine-tuning lr (share of lr_for), 100K characters of Python source",
            ["share", "best val loss"],
            [[k, f"{v['best_val_loss']:.4f}"] for k, v in result["python_lr_sweep"].items()],
        )
        print_table(
            "adaptation settings, WikiText held-out tail (nats/char)",
            ["lr", "decay", "segment", "static", "adapted", "gain", "ms/1k chars"],
            [
                [s.lr, s.decay, s.segment, f"{r['static']:.4f}", f"{r['adapted']:.4f}", f"{r['gain']:.4f}", f"{r['ms_per_1000_chars']:.0f}"]
                for s, r in zip(grid, result["adapt_sweep"], strict=True)
            ],
        )  # fmt: skip
    if args.sweep_only:
        return result
    compare(result, args, small, source, "en")
    full = run(shakespeare(), work / "en-shakespeare", args.source_minutes, t, reuse)
    result["shakespeare_model"] = full
    tail = validation_tail(shakes)
    result["dynamic_eval"] = {
        "shakespeare_model": adapt_scores(work / "en-shakespeare", tail),
        "fine_tuned": adapt_scores(work / "en-ft", tail),
    }
    rows = [
        [name, f"{r['static']:.4f}", f"{r['adapted']:.4f}", f"{r['gain']:.4f}", r["fallbacks"], f"{r['ms_per_1000_chars']:.0f}"]
        for name, r in result["dynamic_eval"].items()
    ]  # fmt: skip
    print_table(
        "dynamic evaluation, tinyshakespeare validation split (nats/char)",
        ["model", "static", "adapted", "gain", "fallbacks", "ms per 1,000 chars"],
        rows,
    )
    return result


def tang_slices(work: Path) -> tuple[Path, Path, Path, int]:
    """The rest of tang_poems.txt, and two slices of the lines holding its rarest characters."""
    lines = (SHARED / "tang_poems.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    counts = collections.Counter("".join(lines))

    def rarity(i: int) -> tuple[int, int]:
        return min((counts[c] for c in lines[i] if c not in "，。\n"), default=0), i

    chosen: list[int] = []
    size = 0
    for i in sorted(range(len(lines)), key=rarity):
        if size >= 2 * SLICE_CHARS:
            break
        chosen.append(i)
        size += len(lines[i])
    held = set(chosen)
    sweep = [lines[i] for i in sorted(chosen[0::2])]
    bench = [lines[i] for i in sorted(chosen[1::2])]
    rest = [line for i, line in enumerate(lines) if i not in held]
    paths = work / "tang-rest.txt", work / "tang-sweep.txt", work / "tang-slice.txt"
    for path, part in zip(paths, (rest, sweep, bench), strict=True):
        path.write_text("".join(part), encoding="utf-8")
    new_chars = set("".join(bench)) - set("".join(rest))
    return *paths, len(new_chars)


def chinese(args: argparse.Namespace) -> dict:
    work, t, reuse = args.work, args.threads, args.reuse
    rest, sweep, small, new_chars = tang_slices(work)
    result: dict = {"slice_new_characters": new_chars}
    source = work / "zh-source"
    result["source"] = run(rest, source, args.source_minutes, t, reuse)
    if args.sweep:
        hidden = api.info(source).model.hidden
        result["lr_sweep"] = {}
        for scale in (1.0, 0.3, 0.1, 0.03, 0.01):  # evaluating once per epoch, as planned
            out = work / f"zh-sweep-{scale:g}"
            config = {"lr": lr_for(hidden) * scale}
            result["lr_sweep"][scale] = run(
                sweep, out, args.ft_minutes, t, reuse, init_from=source, train=config
            )
        print_table(
            "fine-tuning lr (share of lr_for), Tang sweep slice",
            ["share", "best val loss"],
            [[k, f"{v['best_val_loss']:.4f}"] for k, v in result["lr_sweep"].items()],
        )
    if args.sweep_only:
        return result
    compare(result, args, small, source, "zh")
    model = api.load(work / "zh-ft")
    result["wujue"] = [model.generate(form="wujue", seed=seed) for seed in range(3)]
    for poem in result["wujue"]:
        print(poem, "\n")
    return result


def compare(result: dict, args: argparse.Namespace, small: Path, source: Path, lang: str) -> None:
    """Fine-tuned from `source` against from scratch (short and long budgets) on `small`."""
    work, t, reuse = args.work, args.threads, args.reuse
    result["fine_tuned"] = run(
        small, work / f"{lang}-ft", args.ft_minutes, t, reuse, init_from=source
    )
    result["scratch_short"] = run(small, work / f"{lang}-scratch-short", args.ft_minutes, t, reuse)
    result["scratch_long"] = run(small, work / f"{lang}-scratch-long", args.long_minutes, t, reuse)
    names = {
        "fine_tuned": f"fine-tuned {args.ft_minutes:g} min (from a {args.source_minutes:g}-min source)",
        "scratch_short": f"from scratch {args.ft_minutes:g} min",
        "scratch_long": f"from scratch {args.long_minutes:g} min",
    }
    best_scratch = min(
        result["scratch_short"]["best_val_loss"], result["scratch_long"]["best_val_loss"]
    )
    result["lead_over_best_scratch"] = best_scratch - result["fine_tuned"]["best_val_loss"]
    rows = [
        [names[k], result[k]["model"], result[k]["steps"], f"{result[k]['best_val_loss']:.4f}"]
        for k in names
    ]
    print_table(
        f"{args.language}: validation loss on the small corpus's held-out tail (nats/char); "
        f"fine-tuned leads the better scratch run by {result['lead_over_best_scratch']:.4f}",
        ["run", "model", "best at step", "best val loss"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--language", choices=("en", "zh"), required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/charrnn-bench-adapt"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--source-minutes", type=float, default=10)
    parser.add_argument("--ft-minutes", type=float, default=2)
    parser.add_argument("--long-minutes", type=float, default=12)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs under --work")
    parser.add_argument("--sweep-only", action="store_true", help="stop after --sweep")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = english(args) if args.language == "en" else chinese(args)
    settings = {k: str(v) for k, v in vars(args).items()}
    write_result(
        f"adapt_{args.language}" + ("_sweep" if args.sweep_only else ""),
        {
            "settings": settings,
            "fine_tune_lr_share": FINE_TUNE_LR_SCALE,
            "adapt_defaults": dataclasses.asdict(AdaptSettings()),
            "torch_threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - started,
            **json.loads(json.dumps(result, default=str)),
        },
    )


if __name__ == "__main__":
    main()
