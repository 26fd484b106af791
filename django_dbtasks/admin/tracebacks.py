"""Reading a stored traceback: its frames, and which of them are the project's own code.

A traceback is text (it was formatted in a pool process, maybe on another
host), so frames are told apart by their file's path: a frame is a library's
when its file is in a ``site-packages`` or ``dist-packages`` directory, in a
Python standard library (this interpreter's, or any ``lib/pythonX.Y``), in
Django or in django-dbtasks itself, or not a file at all (``<frozen ...>``,
``<string>``). Every other frame is the project's code, and is highlighted.
Pure text work: no queries, no settings.
"""

from __future__ import annotations

import os
import re
import sysconfig
from dataclasses import dataclass, field
from functools import cache

import django
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

import django_dbtasks

#: A frame's first line, as ``traceback`` writes it (exception groups prefix ``| ``).
FRAME = re.compile(
    r'^(?P<indent>[ |+\-]*)File "(?P<path>[^"]*)", line (?P<line>\d+), in (?P<name>.*)$'
)
#: Directories of installed distributions, on any host and any system.
PACKAGES = re.compile(r"[\\/](?:site|dist)-packages[\\/]")
#: A Python standard library on any host: ``/usr/lib/python3.12/``, ``C:\\Python312\\Lib\\``.
STANDARD_LIBRARY = re.compile(r"/lib(?:64)?/python\d+(?:\.\d+)?t?/|\\Python\d+\\Lib\\")


@dataclass
class Frame:
    """One frame: where (``path``, ``line``, ``name``) and its lines as written (code, carets)."""

    path: str
    line: int
    name: str
    lines: list[str] = field(default_factory=list)
    own: bool = False

    @property
    def code(self) -> str:
        """The frame's source line, without its indentation ("" when not shown)."""
        return self.lines[1].strip() if len(self.lines) > 1 else ""


@dataclass
class Piece:
    """A run of the traceback's text: a frame, or the lines between frames."""

    text: str
    frame: Frame | None = None


@cache
def _library_directories() -> tuple[str, ...]:
    """This interpreter's standard library, Django and django-dbtasks, as path prefixes."""
    found = {
        sysconfig.get_paths()[name]
        for name in ("stdlib", "platstdlib")
        if name in sysconfig.get_paths()
    }
    found.add(os.path.dirname(django.__file__))
    found.add(os.path.dirname(django_dbtasks.__file__))
    return tuple(os.path.join(os.path.realpath(d), "") for d in found)


def is_own_code(path: str) -> bool:
    """Whether a frame's file is the project's code, not a library's (see the module's rules)."""
    if not path or path.startswith("<"):
        return False
    if PACKAGES.search(path) or STANDARD_LIBRARY.search(path):
        return False
    real = os.path.realpath(path) if os.path.isabs(path) else path
    return not any(real.startswith(d) or path.startswith(d) for d in _library_directories())


def pieces(traceback: str) -> list[Piece]:
    """The traceback cut into frames and the text between them; joined, they are the text."""
    found: list[Piece] = []
    frame: Frame | None = None
    depth = 0
    for line in traceback.splitlines(keepends=True):
        match = FRAME.match(line.rstrip("\r\n"))
        inside = frame is not None and _indent(line) > depth and line.strip() != ""
        if match:
            depth = len(match["indent"])
            frame = Frame(match["path"], int(match["line"]), match["name"], [line])
            frame.own = is_own_code(frame.path)
            found.append(Piece(line, frame))
        elif inside and frame is not None:
            frame.lines.append(line)
            found[-1].text += line
        else:
            frame = None
            if found and found[-1].frame is None:
                found[-1].text += line
            else:
                found.append(Piece(line))
    return found


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" |+-"))


def own_frames(traceback: str) -> list[Frame]:
    """The frames of the project's code, in the order the traceback lists them."""
    return [piece.frame for piece in pieces(traceback) if piece.frame and piece.frame.own]


def highlighted(traceback: str) -> SafeString:
    """The traceback as HTML, the project's frames in ``<mark>`` blocks.

    A block ends its own line, so a frame's last line break is left out of
    its ``<mark>``: the text reads (and copies) as the traceback did.
    """
    return format_html_join(
        "",
        "{}",
        (
            (
                format_html('<mark class="dbtasks-own-frame">{}</mark>', piece.text.rstrip("\n"))
                if piece.frame is not None and piece.frame.own
                else piece.text,
            )
            for piece in pieces(traceback)
        ),
    )
