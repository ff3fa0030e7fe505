"""The subword tokenizer: sentencepiece (unigram or BPE) with byte fallback, behind the
`Tokenizer` interface of tokenizers.py, its trained model embedded in the tokenizer's dict."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Sequence

import numpy as np

from ..config import DataConfig
from .tokenizers import EOS, EOS_ID, UNK, UNK_ID, StreamDecoder, Tokenizer, TokenizerError


class SubwordTokenizer(Tokenizer):
    """sentencepiece (unigram or BPE) with byte fallback, its model embedded in the dict."""

    level = "subword"

    def __init__(self, eos: str = "line", model: bytes | None = None) -> None:
        super().__init__(eos)
        self.model = model
        self._processor = None
        if model is not None:
            import sentencepiece

            self._processor = sentencepiece.SentencePieceProcessor(model_proto=model)
            size = self._processor.get_piece_size()
            self._pieces = [self._processor.id_to_piece(i) for i in range(size)]
            self.byte_pieces = {
                i: int(piece[3:5], 16)
                for i, piece in enumerate(self._pieces)
                if self._processor.is_byte(i)
            }

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    def fit(self, chunks: Iterable[str], config: DataConfig) -> SubwordTokenizer:
        import sentencepiece

        def sentences():
            for chunk in chunks:
                units = chunk.split(self.separator) if self.separator else [chunk]
                for unit in units:
                    yield from (line for line in unit.split("\n") if line)

        model = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=sentences(),
                model_writer=model,
                model_type=config.subword_model,
                vocab_size=config.vocab_size,
                hard_vocab_limit=False,
                byte_fallback=True,
                character_coverage=0.9995,
                unk_id=UNK_ID,
                eos_id=EOS_ID,
                bos_id=-1,
                pad_id=-1,
                unk_piece=UNK,
                eos_piece=EOS,
                normalization_rule_name="identity",
                add_dummy_prefix=False,
                remove_extra_whitespaces=False,
                max_sentence_length=1 << 16,
                input_sentence_size=2_000_000,
                shuffle_input_sentence=True,
                num_threads=2,
                minloglevel=2,
            )
        except RuntimeError as error:
            message = str(error).strip().splitlines()[-1] if str(error).strip() else "failed"
            raise TokenizerError(f"sentencepiece training failed: {message}") from None
        self.__init__(self.eos, model.getvalue())
        return self

    def encode(self, text: str) -> np.ndarray:
        units = text.split(self.separator) if self.separator else [text]
        encoded = self._processor.encode(units)
        if len(units) == 1:
            return np.asarray(encoded[0], dtype=np.int64)
        pieces: list[int] = []
        for index, unit_ids in enumerate(encoded):
            if index:
                pieces.append(EOS_ID)
            pieces.extend(unit_ids)
        return np.asarray(pieces, dtype=np.int64)

    def token_text(self, token_id: int) -> str:
        if token_id == EOS_ID:
            return self.separator or ""
        if token_id in self.byte_pieces:
            return f"<0x{self.byte_pieces[token_id]:02X}>"
        return self._pieces[token_id].replace("\u2581", " ")

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        ids = [int(i) for i in ids]
        units, start = [], 0
        for position, token_id in enumerate(ids + [EOS_ID]):
            if token_id == EOS_ID:
                units.append(self._processor.decode(ids[start:position]))
                start = position + 1
        return (self.separator or "").join(units)

    def decoder(self) -> StreamDecoder:
        return _SubwordStreamDecoder(self)

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "eos": self.eos,
            "model": base64.b64encode(self.model).decode(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SubwordTokenizer:
        return cls(data["eos"], base64.b64decode(data["model"]))


class _SubwordStreamDecoder(StreamDecoder):
    def __init__(self, tokenizer: SubwordTokenizer) -> None:
        super().__init__(tokenizer)
        import codecs

        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, token_id: int) -> str:
        byte = self.tokenizer.byte_pieces.get(token_id)
        if byte is not None:
            return self._utf8.decode(bytes([byte]))
        return self.flush() + super().__call__(token_id)

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
