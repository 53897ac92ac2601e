"""`lightly-assets run [DATASET ...]`: materialize the whole chain with its checks on the instance in DAGSTER_HOME."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_HOME = ".dagster_home"


def _prepare_home() -> Path:
    """Use DAGSTER_HOME, or a project-local folder, so runs show in `dagster dev` started from the same place."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch(exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightly-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize file_index … uploaded_dataset for datasets under the data root")
    run.add_argument("datasets", nargs="*", help="dataset folder names (default: every dataset under the data root)")
    run.add_argument("--data-dir", help="data root (default: $LIGHTLY_ASSETS_DATA_DIR or data)")
    run.add_argument("--output-dir", help="output root (default: $LIGHTLY_ASSETS_OUTPUT_DIR or outputs)")
    sub.add_parser("list", help="list the datasets under the data root")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "data_dir", None):
        os.environ["LIGHTLY_ASSETS_DATA_DIR"] = args.data_dir
    if getattr(args, "output_dir", None):
        os.environ["LIGHTLY_ASSETS_OUTPUT_DIR"] = args.output_dir
    from lightly_assets.dataset.roots import find_datasets
    from lightly_assets.dataset.scan import DatasetError

    try:
        root = find_datasets()
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, why in root.invalid.items():
        print(f"warning: skipping folder '{name}': {why}", file=sys.stderr)
    if args.command == "list":
        for name, path in root.datasets.items():
            print(f"{name}\t{path}")
        return 0
    names = args.datasets or list(root.datasets)
    hidden = [n for n in names if n.startswith(".")]
    if hidden:
        print(f"error: {', '.join(hidden)}: hidden folders (names starting with '.') are ignored", file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in root.datasets]
    if unknown:
        print(f"error: no dataset folder {', '.join(unknown)} under {root_dir()}", file=sys.stderr)
        return 2
    if not names:
        print(f"error: no dataset folder under {root_dir()}", file=sys.stderr)
        return 2
    from lightly_assets.runner import run_datasets

    _prepare_home()
    summaries = run_datasets(names)
    for s in summaries:
        print(s.render())
    return 0 if all(s.ok for s in summaries) else 1


def root_dir() -> Path:
    from lightly_assets.dataset.roots import data_dir

    return data_dir()


if __name__ == "__main__":
    sys.exit(main())
