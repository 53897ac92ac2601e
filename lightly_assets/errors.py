"""The one error family of the project.

Every error that means "the input, the configuration or the target is not usable" derives from
`LightlyAssetsError`, so the Dagster layer can show it as one line without a stack trace, and let
everything else (our bugs, library bugs) surface with its traceback.
"""

from __future__ import annotations


class LightlyAssetsError(ValueError):
    """A user-facing error: the message names the file or target and the reason."""
