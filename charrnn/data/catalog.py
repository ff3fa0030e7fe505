"""Corpora known by name: built-in ones made on this machine, and public ones to download.

Nothing third-party is shipped: `python-stdlib` is written from the running interpreter's own
standard library, and downloads are checked against a fixed size and sha256 before use.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CharRNNError

STDLIB_CAP_BYTES = 4 * 1024 * 1024


class CatalogError(CharRNNError):
    """An unknown corpus name, a failed download or a file that is not the expected one."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    licence: str
    size: int | None  # bytes; None where it depends on this machine
    sha256: str | None
    url: str | None
    builtin: bool = False


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            "python-stdlib",
            "Python source: this interpreter's standard library, fixed order, first 4 MB",
            "PSF (ships with Python)",
            None,
            None,
            None,
            builtin=True,
        ),
        CatalogEntry(
            "tinyshakespeare",
            "40,000 lines of Shakespeare, the classic char-rnn benchmark",
            "public domain",
            1_115_394,
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        ),
        CatalogEntry(
            "tang-poems",
            "72,513 couplets of classical Chinese 5-character verse, one per line",
            "public domain (Tang dynasty texts)",
            2_683_016,
            "ffc4d1112de038bc26cd0271ef3094fe9bae98e36c72537f4997959dec167154",
            None,  # no public address serves this exact file: install it with --from
        ),
    )
}


def data_dir() -> Path:
    """Where downloaded corpora and token caches live: $CHARRNN_DATA or ./data."""
    return Path(os.environ.get("CHARRNN_DATA", "data"))


def corpus_path(name: str) -> Path:
    return data_dir() / "corpora" / f"{name}.txt"


def lookup(name: str) -> CatalogEntry:
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(CATALOG)
        raise CatalogError(f"unknown corpus {name!r}: known corpora are {known}") from None


def is_present(name: str) -> bool:
    return lookup(name).builtin or corpus_path(name).is_file()


def resolve(name: str) -> Path:
    """The file for a corpus name, building a built-in corpus on first use."""
    entry = lookup(name)
    path = corpus_path(name)
    if entry.builtin:
        if not path.is_file():
            _write_atomic(path, build_python_stdlib())
        return path
    if not path.is_file():
        raise CatalogError(
            f"corpus {name!r} is not installed: run `charrnn data get {name}` "
            f"(or `charrnn data get {name} --from FILE` offline)"
        )
    return path


def build_python_stdlib(cap: int = STDLIB_CAP_BYTES) -> bytes:
    """Concatenate the interpreter's stdlib sources in sorted order until `cap` bytes."""
    root = Path(sysconfig.get_paths()["stdlib"])
    pieces: list[bytes] = []
    total = 0
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part in ("site-packages", "test", "tests", "idlelib") for part in relative.parts):
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        chunk = f"# file: {relative.as_posix()}\n{text.replace(chr(13), '')}\n".encode()
        if total + len(chunk) > cap:
            break
        pieces.append(chunk)
        total += len(chunk)
    if not pieces:
        raise CatalogError(f"no Python sources found under {root}")
    return b"".join(pieces)


def _check_bytes(entry: CatalogEntry, data: bytes, origin: str) -> None:
    if entry.size is not None and len(data) != entry.size:
        raise CatalogError(
            f"{origin} is {len(data):,} bytes, but {entry.name} is {entry.size:,} bytes: "
            "not the expected file"
        )
    digest = hashlib.sha256(data).hexdigest()
    if entry.sha256 is not None and digest != entry.sha256:
        raise CatalogError(
            f"{origin} has sha256 {digest}, expected {entry.sha256} for {entry.name}"
        )


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".tmp-") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except OSError as error:
        raise CatalogError(
            f"cannot write {path}: {error.strerror or error}; set CHARRNN_DATA to a writable folder"
        ) from None


ProgressCallback = Callable[[int, int | None], None]


def fetch(
    name: str,
    source_file: str | os.PathLike | None = None,
    url: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
) -> Path:
    """Install corpus `name` from `source_file`, or download it; verify it; return its path."""
    entry = lookup(name)
    if entry.builtin:
        return resolve(name)
    if source_file is not None:
        try:
            data = Path(source_file).read_bytes()
        except OSError as error:
            raise CatalogError(f"cannot read {source_file}: {error.strerror}") from None
        _check_bytes(entry, data, str(source_file))
    else:
        address = url or entry.url
        if address is None:
            raise CatalogError(
                f"{name} has no download address; install a copy with "
                f"`charrnn data get {name} --from FILE`"
            )
        data = _download(address, entry, progress, timeout)
        _check_bytes(entry, data, address)
    path = corpus_path(name)
    _write_atomic(path, data)
    return path


def _download(
    address: str, entry: CatalogEntry, progress: ProgressCallback | None, timeout: float
) -> bytes:
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else entry.size
            buffer = bytearray()
            while block := response.read(64 * 1024):
                buffer.extend(block)
                if progress:
                    progress(len(buffer), total)
            return bytes(buffer)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise CatalogError(
            f"cannot download {entry.name} from {address} ({reason}); offline, copy the file "
            f"here and run `charrnn data get {entry.name} --from FILE`"
        ) from None
