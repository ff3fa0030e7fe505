"""A conversation with a model: the hidden state carries the whole dialogue from turn to turn.

Each user line is read into the model (the encoder half of N-vs-M: the state after reading it is
the context), then a reply is sampled from that state until `<eos>`, a newline or `max_reply`
tokens. The state is never reset between turns unless asked (`/reset`), so the model remembers.
Slash commands are parsed here; the CLI only reads lines and prints what comes back.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..checks import check_text
from ..config import SampleConfig
from ..data.corpus import CorpusError, read_corpus
from ..errors import ConfigError
from .constraints import Constraint
from .decoding import Decoding, Row, Sampler, Stops, decode
from .request import GenerationRequest
from .sampling import LanguageModel

HELP = """\
/help            this list
/temp T          sampling temperature (> 0)
/topk K          sample from the K most likely tokens (0: off)
/topp P          nucleus sampling mass in (0, 1] (1: off)
/seed N          reseed the sampler
/reset           forget the conversation (state and sampler seed start over)
/history         show the conversation so far
/save FILE       save the transcript (.json for JSON, else text); never replaces a file
/save! FILE      save it, replacing FILE
/retry           sample the last reply again from the same state
/adapt FILE      learn from FILE's text, then talk in its style (the checkpoint is unchanged)
/quit            leave (Ctrl-D works too)"""


# A typed or piped line is read before the reply starts, and Ctrl-C cannot cut the reading of
# one: a 20 MB line held a chat for minutes (issue #41). Longer text belongs in --prime-file.
MAX_MESSAGE = 100_000


@dataclass
class Turn:
    role: str  # "user" or "bot"
    text: str


@dataclass
class CommandResult:
    message: str = ""
    stream: Iterator[str] | None = None  # a reply to print (for /retry)
    quit: bool = False


@dataclass
class ChatSession:
    model: LanguageModel
    # how replies are drawn, and a verse form for a poem model (your line starts a poem, the
    # reply completes it); its length and stops are the chat's own
    request: GenerationRequest = field(default_factory=GenerationRequest)
    user_prefix: str = ""
    bot_prefix: str = ""
    max_reply: int = 200
    transcript: list[Turn] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.verse = self.request.verse(self.model.tokenizer)
        self.request = replace(self.request)
        self.sampling.validate()
        if self.max_reply < 1:
            raise ConfigError(f"--max-reply must be at least 1 (got {self.max_reply})")
        if self.request.seed is None:
            self.request.seed = int.from_bytes(os.urandom(4), "little")
        separator = self.model.tokenizer.separator
        self.turn_end = separator if separator else "\n"
        self.reset()

    @property
    def sampling(self) -> SampleConfig:
        return self.request.sampling

    def _change(self, **settings: object) -> None:
        """New sampling settings, checked before they are taken."""
        changed = replace(self.request, **settings)
        changed.sampling.validate()
        self.request = changed

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to a fresh start: memory holds only the prime (if any), and the sampler is at
        the start of its seed."""
        self.logits, self.state = self.model.feed([])
        if self.request.prime:  # read in windows with the state carried, any length
            self._feed_text(self.request.prime)
        self.rng = np.random.default_rng(self.sampling.seed)
        self._before_reply: tuple[torch.Tensor, list, Constraint | None] | None = None
        self.transcript.clear()

    def _feed_text(self, text: str) -> None:
        ids = self.model.encode(text, "your message")
        if len(ids):
            self.logits, self.state = self.model.feed(ids, self.state)

    # -- turns -------------------------------------------------------------------------------
    def reply(self, user_text: str) -> Iterator[str]:
        """Read the user's line into the state, then yield the reply piece by piece. With a
        verse form the line is the poem's beginning and the reply is the rest of the poem."""
        check_text("your message", user_text)
        if len(user_text) > MAX_MESSAGE:
            raise ConfigError(
                f"your message is {len(user_text):,} characters: a chat line holds at most "
                f"{MAX_MESSAGE:,} (read long text with --prime-file)"
            )
        self.transcript.append(Turn("user", user_text))
        # the reply's constraints, built by the request as `generate` and the pool build theirs
        constraint = self.request.rows(self.model.tokenizer, self.verse)[0].constraint
        if self.verse is not None:
            ids = self.model.encode(user_text, "your line")
            constraint.read(ids.tolist(), "your line")
            self._feed_text(user_text)
        else:
            self._feed_text(self.user_prefix + user_text + self.turn_end + self.bot_prefix)
        self._before_reply = (self.logits, self.state, copy.deepcopy(constraint))
        return self._sample_reply(constraint)

    def retry(self) -> Iterator[str]:
        """Drop the last reply and sample another from the state it started from."""
        if self._before_reply is None:
            raise ConfigError("nothing to retry yet")
        if self.transcript and self.transcript[-1].role == "bot":
            self.transcript.pop()
        self.logits, self.state, constraint = self._before_reply
        return self._sample_reply(copy.deepcopy(constraint))

    def _sample_reply(self, constraint: Constraint | None = None) -> Iterator[str]:
        """The shared decoding loop, one row, stopping at the end of the line (or the poem)."""
        row = Row(seed=self.sampling.seed or 0, rng=self.rng, constraint=constraint)
        decoding = Decoding(self.logits, self.state, [row])
        poem = self.verse is not None
        if poem:
            stops = Stops(length=max(self.max_reply, 4 * sum(self.verse.lengths)))
        else:
            stops = Stops(length=self.max_reply, line_end=True)
        strategy = Sampler(self.sampling)
        pending, shown = "", False  # a poem's line end shows only when more of it follows
        try:
            for _, piece in decode(
                decoding, self.model.stepper, self.model.tokenizer, strategy, stops
            ):
                if not poem:
                    yield piece
                    continue
                text = pending + piece
                pending = "\n" if text.endswith("\n") else ""
                text = text[: len(text) - len(pending)]
                text = text if shown else text.lstrip("\n")  # after a finished couplet
                if text:
                    shown = True
                    yield text
        finally:
            self.logits, self.state = decoding.logits, decoding.state
            self.transcript.append(Turn("bot", row.text.strip("\n") if poem else row.text))
            if row.done and not row.ended_line and not poem:  # cut at --max-reply
                self._feed_text(self.turn_end)

    # -- slash commands ----------------------------------------------------------------------
    def command(self, line: str) -> CommandResult:
        """Run a slash command ('/temp 0.7'); unknown ones get a one-line hint."""
        name, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        name = name.lower()
        try:
            if name in ("/quit", "/exit"):
                return CommandResult(quit=True)
            if name == "/help":
                return CommandResult(HELP)
            if name == "/reset":
                self.reset()
                return CommandResult("(conversation reset)")
            if name == "/history":
                lines = [
                    f"{'you' if t.role == 'user' else 'bot'}: {t.text}" for t in self.transcript
                ]
                return CommandResult("\n".join(lines) or "(no turns yet)")
            if name in ("/save", "/save!"):
                if not argument:
                    return CommandResult(f"usage: {name} FILE")
                if name == "/save" and os.path.lexists(argument):
                    return CommandResult(
                        f"/save: {argument} exists and is kept: /save! {argument} replaces it"
                    )
                return CommandResult(f"(transcript saved to {self.save(argument)})")
            if name == "/retry":
                return CommandResult(stream=self.retry())
            if name == "/adapt":
                if not argument:
                    return CommandResult("usage: /adapt FILE")
                self.model, result = self.model.adapted(read_corpus([argument]))
                self.reset()
                return CommandResult(
                    f"(adapted on {argument}: {result.static.nats_per_token:.3f} -> "
                    f"{result.adapted.nats_per_token:.3f} nats/token while reading it; "
                    "the conversation starts over)"
                )
            if name == "/temp":
                self._change(temperature=float(argument))
                return CommandResult(f"(temperature {self.sampling.temperature})")
            if name == "/topk":
                self._change(top_k=int(argument) or None)
                return CommandResult(f"(top-k {self.sampling.top_k or 'off'})")
            if name == "/topp":
                value = float(argument)
                self._change(top_p=None if value == 1 else value)
                return CommandResult(f"(top-p {self.sampling.top_p or 'off'})")
            if name == "/seed":
                self.request = replace(self.request, seed=int(argument))
                self.rng = np.random.default_rng(self.sampling.seed)
                return CommandResult(f"(seed {self.sampling.seed})")
        except OSError as error:
            return CommandResult(f"{name}: {error.strerror or error}")
        except CorpusError as error:
            return CommandResult(f"{name}: {error}")
        except ValueError as error:
            message = str(error) if isinstance(error, ConfigError) else f"cannot read {argument!r}"
            return CommandResult(f"{name}: {message}")
        return CommandResult(f"unknown command {name}: /help lists the commands")

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if path.suffix.lower() == ".json":
            data = {
                "sampling": {
                    "temperature": self.sampling.temperature,
                    "top_k": self.sampling.top_k,
                    "top_p": self.sampling.top_p,
                    "seed": self.sampling.seed,
                },
                "turns": [{"role": t.role, "text": t.text} for t in self.transcript],
            }
            path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        else:
            lines = [f"{'you' if t.role == 'user' else 'bot'}: {t.text}" for t in self.transcript]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
