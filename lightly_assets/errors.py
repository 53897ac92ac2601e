"""The one error family of the project.

Every error that means "the input, the configuration or the target is not usable" derives from
`LightlyAssetsError`, so the Dagster layer can show it as one line without a stack trace, and let
everything else (our bugs, library bugs) surface with its traceback.
"""

from __future__ import annotations


class LightlyAssetsError(ValueError):
    """A user-facing error: the message names the file or target and the reason."""


# Lines that libraries append to an error message that never say what went wrong.
_BOILERPLATE = ("(Background on this error at:", "[SQL:", "[parameters:", "Stack Trace:")


def first_line(error: str | BaseException) -> str:
    """The first line of an error message that says something (not a library's link or SQL echo).

    For an exception whose message says nothing, its type's name; for such a text, "".
    """
    for line in str(error).splitlines():
        line = line.strip()
        if line and not line.startswith(_BOILERPLATE):
            return line
    return type(error).__name__ if isinstance(error, BaseException) else ""


def exception_line(exc: BaseException) -> str:
    """`Type: first line`: for a library's failure, where the type tells which kind it was (OSError, EOFError...)."""
    line = first_line(str(exc))
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
