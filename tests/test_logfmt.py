"""Log lines are logfmt a standard parser reads back exactly, whatever the values hold."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from django_dbtasks.logfmt import Fields, quote

PAIR = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^ ]*))')
ESCAPES = {"n": "\n", "r": "\r"}


def parse(line: str) -> dict[str, str]:
    """A logfmt reader as log shippers have it: bare values, or quoted with escapes."""
    fields = {}
    position = 0
    for match in PAIR.finditer(line):
        assert line[position : match.start()].strip() == "", line
        key, quoted, bare = match.groups()
        if quoted is None:
            fields[key] = bare
        else:
            fields[key] = re.sub(r"\\(.)", lambda m: ESCAPES.get(m[1], m[1]), quoted)
        position = match.end()
    assert line[position:].strip() == "", line
    return fields


keys = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
values = st.one_of(st.text(), st.integers(), st.floats(allow_nan=False).map(str))


@given(st.dictionaries(keys, values, max_size=6))
def test_every_line_reads_back_as_its_fields(fields):
    line = str(Fields(**fields))
    assert parse(line) == {key: str(value) for key, value in fields.items()}


def test_values_are_bare_when_they_can_be_and_quoted_when_not():
    line = str(Fields(job=17, outcome="SUCCESSFUL", reason="lease lost (rescued)", gone=None))
    assert line == 'job=17 outcome=SUCCESSFUL reason="lease lost (rescued)"'
    assert quote("") == '""' and quote('say "hi"') == '"say \\"hi\\""'
    assert quote("two\nlines") == '"two\\nlines"' and quote("a=b") == '"a=b"'
