"""`lightly-assets` and `python -m lightly_assets`: the CLI, started with the cycle collector paused.

The CLI's module imports Dagster and the definitions, so the collector is paused before it is imported; the run
resumes it when it starts executing (`lightly_assets.launch`), and every other command on its way out.
"""

from __future__ import annotations

import sys

from lightly_assets import collector


def main(argv: list[str] | None = None) -> int:
    collector.pause()
    from lightly_assets.cli import main as cli_main  # after the pause, on purpose

    try:
        return cli_main(argv)
    finally:
        collector.resume()


if __name__ == "__main__":
    sys.exit(main())
