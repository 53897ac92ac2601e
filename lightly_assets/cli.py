"""`lightly-assets run [DATASET ...]`: materialize the whole chain with its checks on the instance in DAGSTER_HOME.

`lightly-assets train DATASET ...` trains Lightly's SimCLR on a dataset; the next `run` embeds with it.
`lightly-assets browse [DATASET ...] [--open]` prints the LightlyStudio link of each dataset and starts the GUI.

Options become run config of the `storage` resource, so one rule holds everywhere: run config (options) >
environment variable > default.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dagster import DagsterInstance

from lightly_assets import collector
from lightly_assets.atomic import write_bytes_atomic
from lightly_assets.browse import enable_search, published, render, studio_database
from lightly_assets.dataset.scan import DatasetError
from lightly_assets.definitions import ENVIRONMENT, SECRET_NAMES
from lightly_assets.defs.partitions import DATASETS
from lightly_assets.errors import LightlyAssetsError
from lightly_assets.publish.studio.browse import gui_address, gui_base_url, start_gui
from lightly_assets.publish.studio.target import StudioTarget
from lightly_assets.runner import open_storage, run_datasets, storage_config, train_datasets

DEFAULT_HOME = ".dagster_home"
# Written only into a dagster.yaml that the CLI creates itself; a user's own dagster.yaml is left as it is.
NEW_INSTANCE_YAML = """\
# Created by `lightly-assets run`: the Dagster instance of this project (edit freely, your settings are kept).
# Telemetry off, so runs do not open with Dagster's telemetry notice.
telemetry:
  enabled: false
"""


def _prepare_home() -> Path:
    """Use DAGSTER_HOME, or a project-local folder, so runs show in `dagster dev` started from the same place."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and not (home / "dagster.yml").exists():
        write_bytes_atomic(home / "dagster.yaml", NEW_INSTANCE_YAML.encode())
    os.environ["DAGSTER_HOME"] = str(home)  # the instance for this process; the one variable Dagster reads itself
    return home


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightly-assets", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize file_index … uploaded_dataset for datasets under the data root")
    run.add_argument("datasets", nargs="*", help="dataset folder names (default: every dataset under the data root)")
    listing = sub.add_parser("list", help="list the datasets under the data root")
    train = sub.add_parser(
        "train", help="train Lightly's SimCLR on datasets (<outputs>/<dataset>/embedding_model.ckpt; slow on a CPU)"
    )
    train.add_argument("datasets", nargs="+", help="dataset folder names")
    train.add_argument("--epochs", type=int, default=100, help="epochs (default 100, as lightly-ssl-train)")
    train.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    train.add_argument("--learning-rate", type=float, default=1.0, help="SGD learning rate (default 1.0)")
    train.add_argument("--max-minutes", type=float, default=60.0, help="time budget; stops early (default 60)")
    train.add_argument("--resume", action="store_true", help="continue from the previous embedding_model.ckpt")
    browse = sub.add_parser("browse", help="print the LightlyStudio link of each dataset; --open starts the GUI")
    browse.add_argument("datasets", nargs="*", help="dataset folder names (default: every published dataset)")
    browse.add_argument("--open", action="store_true", help="start LightlyStudio's GUI on the database (blocks)")
    browse.add_argument("--host", help="GUI host (default: $LIGHTLY_STUDIO_HOST, else 127.0.0.1)")
    browse.add_argument("--port", type=int, help="GUI port (default: $LIGHTLY_STUDIO_PORT, else 8001 or a free one)")
    for p in (run, listing, train, browse):
        p.add_argument("--data-dir", help="data root (default: $LIGHTLY_ASSETS_DATA_DIR, else data)")
        p.add_argument("--output-dir", help="output root (default: $LIGHTLY_ASSETS_OUTPUT_DIR, else outputs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = storage_config(data_dir=args.data_dir, output_dir=args.output_dir)
    storage = open_storage(config)
    try:
        root = storage.datasets()
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
    if args.command == "browse":  # what was published, whether or not its folder is still there
        _prepare_home()
        return _browse(args, names, storage.output_dir)
    hidden = [n for n in names if n.startswith(".")]
    if hidden:
        print(f"error: {', '.join(hidden)}: hidden folders (names starting with '.') are ignored", file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in root.datasets]
    if unknown:
        print(f"error: no dataset folder {', '.join(unknown)} under {storage.data_root()}", file=sys.stderr)
        return 2
    if not names:
        print(f"error: no dataset folder under {storage.data_root()}", file=sys.stderr)
        return 2
    _prepare_home()
    if args.command == "train":
        training = {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "max_minutes": args.max_minutes,
            "resume": args.resume,
        }
        summaries = train_datasets(names, training, storage=config)
    else:
        summaries = run_datasets(names, storage=config)
    for s in summaries:
        print(s.render())
    return 0 if all(s.ok for s in summaries) else 1


def _browse(args: argparse.Namespace, names: list[str], output_dir: str) -> int:
    """Print each published dataset's LightlyStudio links; with --open, serve the GUI on their database."""
    with DagsterInstance.get() as instance:
        if not args.datasets:  # every published dataset, also one whose folder is gone
            names = sorted(set(names) | set(instance.get_dynamic_partitions(DATASETS)))
        items = published(instance, names)
    if not items:
        print(f"error: {', '.join(names)}: not uploaded yet; run `lightly-assets run` first", file=sys.stderr)
        return 2
    db_file, url_env = studio_database(
        os.environ.get(ENVIRONMENT["publish_target"]["studio_db_file"]),
        next((n for n in SECRET_NAMES["publish_target"].values() if os.environ.get(n)), None),
        Path(output_dir),
    )
    target = StudioTarget(db_file=db_file, db_url_env=url_env, dataset_name=items[0].dataset)
    if not args.open:
        print(render(items, gui_base_url(args.host, args.port), target.gui_command(), False), flush=True)
        return 0
    if db_file is not None and not db_file.exists():
        print(f"error: {db_file}: no LightlyStudio database yet", file=sys.stderr)
        return 2
    try:
        host, port, note = gui_address(args.host, args.port)
        enable_search(items, Path(output_dir))
        print(render(items, gui_base_url(host, port), target.gui_command(), True), flush=True)
        if note:
            print(f"note: {note}", flush=True)
        collector.resume()  # the GUI serves until stopped: it collects its cycles
        start_gui(db_file, url_env, host, port)
    except LightlyAssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
