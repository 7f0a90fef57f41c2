"""File names that are not valid UTF-8: kept losslessly in memory, shown safely everywhere else.

On POSIX a file name is bytes. Python decodes the bytes that are not UTF-8 (common in archives
made on Windows: latin-1 or cp1252 names) to lone surrogates ("surrogateescape"), so the str
still opens the file, but it cannot be encoded to UTF-8: pyarrow, JSON and most terminals
refuse it. Tables and reports therefore hold `display(name)`, where each such byte is written
as a visible escape (b"\\xe9" -> "\\\\xe9"), and the stages keep the original str to open it.
"""

from __future__ import annotations

import os


def is_utf8(name: str | os.PathLike[str]) -> bool:
    """Whether the name encodes to UTF-8 (False when it holds undecodable bytes)."""
    try:
        os.fspath(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display(name: str | os.PathLike[str]) -> str:
    """The name as printable UTF-8 text: every byte that is not UTF-8 as \\xNN."""
    text = os.fspath(name)
    if is_utf8(text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")
