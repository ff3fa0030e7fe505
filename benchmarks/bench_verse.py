"""Verse forms on real poetry: train on tang_poems.txt, then write poems with and without --form.

    python benchmarks/bench_verse.py [--minutes 3] [--poems 50] [--run DIR] [--hog]

Trains a char model (eos per line) for the given minutes with the default automatic sizing
(or reuses --run), then for wujue and qilv draws the same seeds three ways:
- unconstrained: plain sampling, as many lines as the form has couplets (`--lines`);
- --form: constrained decoding;
- --form --rhyme: constrained, even verses on one rhyme class (十三辙).
Reports the share of well-formed poems, the share of even verses that rhyme with the first even
verse, and the mean log-probability per token under the model (the price of the constraint).
With --hog, training and generation both run beside a CPU-bound process.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
from pathlib import Path

from common import SHARED, cpu_hog, print_table, write_result

import charrnn
from charrnn.generation.forms import THIRTEEN_CLASSES, parse_form

FORMS = {"wujue": 2, "qilv": 4}  # couplets (lines of the corpus) per poem


def verses_of(text: str, lengths: list[int]) -> list[str] | None:
    """The verses if `text` is a well-formed poem of these lengths, else None."""
    text = text.strip("\n") + "\n"
    punctuation = re.findall(r"[，。？！]", text)
    expected = ["，" if i % 2 == 0 and i < len(lengths) - 1 else "。" for i in range(len(lengths))]
    found = [v for v in re.split(r"[，。？！]", text.replace("\n", "")) if v]
    ok = (
        punctuation == expected
        and text.count("。") == text.count("。\n")
        and [len(v) for v in found] == lengths
        and all(re.fullmatch(r"[\u4e00-\u9fff]+", v) for v in found)
    )
    return found if ok else None


def rhyme_share(poems: list[list[str]]) -> float:
    """Even verses (2nd, 4th...) that rhyme with the poem's first even verse."""
    import pypinyin

    def klass(char: str) -> int:
        final = pypinyin.lazy_pinyin(char, style=pypinyin.Style.FINALS, strict=True)[0]
        return THIRTEEN_CLASSES.get(final, -1)

    hits = total = 0
    for verses in poems:
        ends = [klass(v[-1]) for v in verses[1::2]]
        hits += sum(1 for e in ends[1:] if e == ends[0] and e >= 0)
        total += len(ends) - 1
    return hits / total if total else 0.0


def train_or_reuse(corpus: Path, args: argparse.Namespace, tmp: str) -> tuple[Path, dict]:
    """The run to write with, and what its training cost (tokens, seconds) where known."""
    record = {"minutes": args.minutes, "hog": args.hog}
    if args.run:  # a run trained earlier (e.g. by this script): --minutes labels it
        run = Path(args.run)
        return run, {**record, "best_val_loss": charrnn.info(run).metrics.get("best_val_loss")}
    result = charrnn.train(
        [corpus],
        run_dir=f"{tmp}/run",
        train_config=charrnn.TrainConfig(max_time=args.minutes * 60),
    )
    record.update(best_val_loss=result.best_val_loss, tokens=result.tokens, elapsed=result.elapsed)
    return result.run_dir, record


def score_forms(model: charrnn.LanguageModel, poems: int, record: dict) -> list[list[str]]:
    """Draw each form three ways; fill record["forms"] and return the table's rows."""
    rows = []
    record["forms"] = {}
    for form, couplets in FORMS.items():
        lengths = parse_form(form)
        options = dict(num_samples=poems, seed=1000, temperature=0.8)
        ways = {
            "unconstrained": model.samples(lines=couplets, **options),
            "--form": model.samples(form=form, **options),
            "--form --rhyme": model.samples(form=form, rhyme=True, **options),
        }
        record["forms"][form] = {}
        for way, samples in ways.items():
            parsed = [verses_of(s.text, lengths) for s in samples]
            good = [p for p in parsed if p is not None]
            logprob = statistics.mean(s.mean_logprob for s in samples)
            share, rhymed = len(good) / len(samples), rhyme_share(good)
            lines = [line for s in samples for line in s.text.splitlines() if line.strip()]
            couplet = re.compile(
                rf"[\u4e00-\u9fff]{{{lengths[0]}}}，[\u4e00-\u9fff]{{{lengths[0]}}}。"
            )
            line_share = sum(bool(couplet.fullmatch(line)) for line in lines) / max(1, len(lines))
            rows.append(
                [form, way, f"{share:.0%}", f"{line_share:.0%}", f"{rhymed:.0%}", f"{logprob:.3f}"]
            )
            record["forms"][form][way] = {
                "well_formed": share,
                "lines_well_formed": line_share,
                "even_verses_rhyming": rhymed,
                "mean_logprob": logprob,
                "example": samples[0].text,
            }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--poems", type=int, default=50)
    parser.add_argument("--run", help="reuse this run directory instead of training")
    parser.add_argument("--name", default="verse", help="result file name")
    parser.add_argument(
        "--hog", action="store_true", help="train and generate beside a CPU-bound process"
    )
    args = parser.parse_args()
    corpus = SHARED / "tang_poems.txt"
    if not corpus.is_file():
        raise SystemExit(f"{corpus} not found")
    tmp = tempfile.mkdtemp(prefix="bench-verse-")
    os.environ.setdefault("CHARRNN_DATA", f"{tmp}/data")
    with cpu_hog(args.hog):
        run, record = train_or_reuse(corpus, args, tmp)
        rows = score_forms(charrnn.load(run), args.poems, record)
    print_table(
        f"Verse forms, char model trained {args.minutes:g} min on tang_poems.txt"
        f"{' beside a CPU hog' if args.hog else ''} "
        f"(val loss {record['best_val_loss']:.3f} nats/char), {args.poems} poems per row, same seeds",
        ["form", "decoding", "poems well-formed", "lines", "even verses rhyme", "mean log P/token"],
        rows,
    )
    if "tokens" in record:
        print(f"trained {record['tokens']:,} tokens in {record['elapsed']:.0f} s")
    for form in FORMS:
        print(
            f"\n{form} --rhyme, first sample:\n{record['forms'][form]['--form --rhyme']['example']}"
        )
    write_result(args.name, record)


if __name__ == "__main__":
    main()
