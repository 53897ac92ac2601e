"""The one place that turns an error into the line a user reads."""

from __future__ import annotations

from lightly_assets.errors import exception_line, first_line


def test_first_line_skips_blank_lines_and_library_boilerplate() -> None:
    text = "\n  \n(Background on this error at: https://sqlalche.me/e/20/e3q8)\n  disk I/O error  \nmore"
    assert first_line(text) == "disk I/O error"
    assert first_line("[SQL: SELECT 1]\nStack Trace:\n") == ""


def test_first_line_of_an_exception_falls_back_to_its_type() -> None:
    assert first_line(ValueError("bad header\nline 2")) == "bad header"
    assert first_line(EOFError()) == "EOFError"


def test_exception_line_says_which_kind_of_failure() -> None:
    assert exception_line(OSError("cannot identify image file\n  at offset 3")) == "OSError: cannot identify image file"
    assert exception_line(KeyError()) == "KeyError"
