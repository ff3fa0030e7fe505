"""Verse forms kept by construction: at every step, mask the tokens that would break the form.

Chinese forms (a model whose vocabulary is mostly CJK characters): `wujue`, `qijue`, `wulv`,
`qilv` (4 or 8 verses of 5 or 7 characters) or a pattern (`5,5,5,5`, `7x8`). Inside a verse only
CJK characters are allowed; odd verses end with "，", even verses with "。" (ASCII "," "." in a
vocabulary without the full-width marks) followed by a line end, and after "，" the model may go on
in the line or break it. `rhyme=True` makes every even verse end on a character of the rhyme class
of the first even verse: modern finals (pypinyin) grouped into the thirteen classes 十三辙, the
usual modern approximation of the classical rhyme groups. `tones=True` prefers (a logit bonus, not
a mask) the level/oblique pattern 平仄: positions 2, 4, 6 alternate within a verse, are opposed
across a couplet and joined across couplets, odd verses end oblique and even verses level.

English lyrics (word or subword models): the pattern counts syllables per line (`8,6,8,6`, from
the CMU pronouncing dictionary, vowel groups for words it lacks), and `rhyme="AABB"` or `"ABAB"`
makes line-final words rhyme (the CMU rhyming part: the last stressed vowel onwards).

A mask that would leave nothing (a rhyme class with no other member, say) drops the rhyme for that
step rather than the form; a form the vocabulary cannot express at all is an error up front.
"""

from __future__ import annotations

import re

import numpy as np

from ..data.tokenizers import EOS_ID, Tokenizer
from ..errors import ConfigError

NAMED_FORMS = {"wujue": (5, 4), "qijue": (7, 4), "wulv": (5, 8), "qilv": (7, 8)}
RHYME_SCHEMES = ("AABB", "ABAB")
TONE_BONUS = 2.0
_CJK = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]$")
THIRTEEN_CLASSES = {  # 十三辙: finals (pypinyin strict style) to rhyme classes
    **dict.fromkeys(["a", "ia", "ua"], 0),
    **dict.fromkeys(["o", "uo", "e"], 1),
    **dict.fromkeys(["ie", "ve"], 2),
    **dict.fromkeys(["i", "v", "er"], 3),
    **dict.fromkeys(["u"], 4),
    **dict.fromkeys(["ai", "uai"], 5),
    **dict.fromkeys(["ei", "uei"], 6),
    **dict.fromkeys(["ao", "iao"], 7),
    **dict.fromkeys(["ou", "iou"], 8),
    **dict.fromkeys(["an", "ian", "uan", "van"], 9),
    **dict.fromkeys(["en", "in", "uen", "vn"], 10),
    **dict.fromkeys(["ang", "iang", "uang"], 11),
    **dict.fromkeys(["eng", "ing", "ong", "iong", "ueng"], 12),
}


def parse_form(text: str) -> list[int]:
    """'wujue' -> [5, 5, 5, 5]; '7x8' -> eight 7s; '8,6,8,6' as written."""
    name = text.strip().lower()
    if name in NAMED_FORMS:
        size, count = NAMED_FORMS[name]
        return [size] * count
    match = re.fullmatch(r"(\d+)x(\d+)", name)
    parts = [match.group(1)] * int(match.group(2)) if match else name.split(",")
    try:
        lengths = [int(p) for p in parts]
    except ValueError:
        lengths = []
    if not lengths or not all(1 <= n <= 64 for n in lengths) or len(lengths) > 256:
        raise ConfigError(
            f"--form {text!r}: use wujue, qijue, wulv, qilv, a pattern such as 5,5,5,5 or 7x8, "
            "or syllables per line such as 8,6,8,6"
        )
    return lengths


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(
            f"rhyme and syllable constraints need {module}: pip install 'charrnn[verse]'"
        ) from None


class Form:
    """What a model's vocabulary offers a verse form: which tokens are verse characters (or
    how many syllables each holds), the punctuation, the line ends, rhyme classes and tones."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        lengths: list[int],
        rhyme: bool | str = False,
        tones: bool = False,
        named: bool = False,
    ) -> None:
        self.lengths = lengths
        vocab = tokenizer.vocab_size
        texts = [tokenizer.token_text(i) if i > EOS_ID else "" for i in range(vocab)]
        self.line_end = np.zeros(vocab, dtype=bool)
        self.line_end[[i for i, t in enumerate(texts) if t == "\n"]] = True
        if tokenizer.separator == "\n":
            self.line_end[EOS_ID] = True
        if not self.line_end.any():
            raise ConfigError(
                "--form needs a model that writes line ends (trained with --eos line)"
            )
        self.cjk = np.array([bool(_CJK.match(t)) for t in texts])
        self.chinese = self.cjk.sum() >= 0.3 * vocab
        if named and not self.chinese:
            raise ConfigError(
                "this --form is a Chinese verse form: the model's vocabulary is not CJK"
            )
        if not self.chinese and tokenizer.level == "char":
            raise ConfigError(
                "syllable forms (--form 8,6,8,6) need a word or subword model; a character "
                "model writes Chinese verse forms only"
            )
        self.rhyme_scheme = rhyme if isinstance(rhyme, str) else ("AABB" if rhyme else "")
        self.tones = tones
        self.spaced = tokenizer.level == "word"  # words are whole tokens: a space comes between
        self.space = np.array([t != "" and t.strip() == "" and "\n" not in t for t in texts])
        if self.chinese:
            self._chinese(texts)
        else:
            self._english(texts)

    def _chinese(self, texts: list[str]) -> None:
        index = {t: i for i, t in enumerate(texts) if t}
        comma, stop = index.get("，", index.get(",")), index.get("。", index.get("."))
        if comma is None or stop is None:
            raise ConfigError("--form: the model's vocabulary has no '，' or '。' to end verses")
        self.comma, self.stop = comma, stop
        if self.rhyme_scheme or self.tones:
            pypinyin = _need("pypinyin")
            finals, tones = [], []
            for text, is_cjk in zip(texts, self.cjk, strict=True):
                final = pypinyin.lazy_pinyin(text, style=pypinyin.Style.FINALS, strict=True)
                tone = pypinyin.lazy_pinyin(text, style=pypinyin.Style.TONE3)
                finals.append(final[0] if is_cjk and final else "")
                tones.append(tone[0][-1:] if is_cjk and tone else "")
            self.rhyme_class = np.array([THIRTEEN_CLASSES.get(f, -1) for f in finals])
            # 1: level (平, tones 1 and 2), 2: oblique (仄, tones 3 and 4), 0: unknown
            self.tone = np.array([{"1": 1, "2": 1, "3": 2, "4": 2}.get(t, 0) for t in tones])

    def _english(self, texts: list[str]) -> None:
        pronouncing = _need("pronouncing") if self.rhyme_scheme else None
        words = [re.sub(r"[^a-z']", "", t.lower().replace("▁", "")) for t in texts]
        self.syllables = np.array([_syllables(w) for w in words])
        self.word = np.array([bool(w) for w in words])
        self.punct = np.array(
            [
                bool(re.fullmatch(r"[.,;:!?'\"-]+", t.strip("▁ "))) and bool(t.strip("▁ "))
                for t in texts
            ]
        )
        self.rhymes = [_rhyming_part(w, pronouncing) if w else "" for w in words]


def _syllables(word: str) -> int:
    if not word:
        return 0
    try:
        import pronouncing

        phones = pronouncing.phones_for_word(word)
        if phones:
            return pronouncing.syllable_count(phones[0])
    except ImportError:
        pass
    return max(1, len(re.findall(r"[aeiouy]+", word)) - (word.endswith("e") and len(word) > 3))


def _rhyming_part(word: str, pronouncing) -> str:
    if pronouncing is None:
        return ""
    phones = pronouncing.phones_for_word(word)
    return pronouncing.rhyming_part(phones[0]) if phones else word[-3:]


def verse_form(
    tokenizer: Tokenizer, form: str | None, rhyme: bool | str = False, tones: bool = False
) -> Form | None:
    """The verse form to keep, or None; rhyme and tones need a form."""
    if form is None:
        if rhyme or tones:
            raise ConfigError("--rhyme and --tones need a --form")
        return None
    if isinstance(rhyme, str) and rhyme.upper() not in (*RHYME_SCHEMES, "ON"):
        raise ConfigError(f"--rhyme must be AABB or ABAB (got {rhyme!r})")
    rhyme = rhyme.upper() if isinstance(rhyme, str) and rhyme.upper() != "ON" else bool(rhyme)
    named = form.strip().lower() in NAMED_FORMS
    return Form(tokenizer, parse_form(form), rhyme, tones, named)
