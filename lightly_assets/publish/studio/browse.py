"""A way into each published dataset: LightlyStudio's URLs, what its search can do, and its GUI started quietly.

LightlyStudio's home (`/`) opens the newest dataset only, so every other dataset is reached by its URL:
`/datasets/<root collection id>/<sample type>/<collection id>` (the route its web app redirects `/` to; for a
root dataset both ids are the same). The GUI serves `http://$LIGHTLY_STUDIO_HOST:$LIGHTLY_STUDIO_PORT`
(our defaults: 127.0.0.1, 8001).

Why 127.0.0.1 and not LightlyStudio's "localhost": LightlyStudio 1.2 tests a port by binding "localhost" over IPv6
too, and where `/etc/hosts` has no `::1 localhost` every port "fails" (`Could not find an available port`). Bound
to the IPv4 loopback address, the check and the server both work, and browsers reach it by the printed link.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

from lightly_assets.errors import LightlyAssetsError
from lightly_assets.publish.studio.target import ANALYTICS_ENV, SPACE_KEY_PREFIX, StudioDataset

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8001
LOOPBACK_NAMES = ("localhost", "")  # served on DEFAULT_HOST (see the module's docstring)


class GuiAddressError(LightlyAssetsError):
    """The GUI cannot listen where asked (a port in use, a host that is not this machine's)."""


ANALYTICS_404 = "Usage tracking is disabled"


def gui_base_url(host: str | None = None, port: int | None = None, env: Mapping[str, str] = os.environ) -> str:
    """Where LightlyStudio's GUI listens, as `lightly-studio gui` picks it (its environment, else its defaults)."""
    host = host or env.get("LIGHTLY_STUDIO_HOST") or DEFAULT_HOST
    port = port or int(env.get("LIGHTLY_STUDIO_PORT") or DEFAULT_PORT)
    return f"http://{host}:{port}"


def _bind(host: str, port: int) -> int:
    """Bind (host, port) over IPv4 or IPv6 as the host is written, and return the port bound (0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return s.getsockname()[1]


def gui_address(host: str | None, port: int | None, env: Mapping[str, str] = os.environ) -> tuple[str, int, str]:
    """Where the GUI will listen: (host, port, a note when the default port was busy and another one is used).

    "localhost" becomes 127.0.0.1 (see the module's docstring). A port the user chose (option or
    LIGHTLY_STUDIO_PORT) that is in use is an error; LightlyStudio's default port in use means a free one.
    """
    host = host or env.get("LIGHTLY_STUDIO_HOST") or DEFAULT_HOST
    if host in LOOPBACK_NAMES:
        host = DEFAULT_HOST
    chosen = port or (int(env["LIGHTLY_STUDIO_PORT"]) if env.get("LIGHTLY_STUDIO_PORT") else None)
    try:
        _bind(host, chosen or DEFAULT_PORT)
        return host, chosen or DEFAULT_PORT, ""
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise GuiAddressError(f"LightlyStudio cannot listen on {host}: {exc.strerror or exc}") from None
        if chosen:
            raise GuiAddressError(
                f"LightlyStudio cannot listen on {host}:{chosen}: the port is in use (another LightlyStudio?); "
                "stop it or choose another with --port"
            ) from None
    free = _bind(host, 0)
    return host, free, f"port {DEFAULT_PORT} is in use, so LightlyStudio uses port {free}"


def dataset_url(base: str, collection_id: str, sample_type: str) -> str:
    """The page of one LightlyStudio dataset (its samples grid)."""
    return f"{base.rstrip('/')}/datasets/{collection_id}/{sample_type}/{collection_id}"


def links(datasets: Iterable[StudioDataset], base: str) -> dict[str, str]:
    """LightlyStudio dataset name → its URL."""
    return {d.name: dataset_url(base, d.collection_id, d.sample_type) for d in datasets}


def links_markdown(urls: Mapping[str, str]) -> str:
    """The links as Markdown, one line each, for the Dagster UI."""
    return "\n".join(f"- [{name}]({url})" for name, url in urls.items())


def text_search_note(space: str | None = None) -> str:
    """What LightlyStudio's search box can do with our vectors: the one place this is said (UI, README, browse).

    `space` is the LightlyStudio embedding model the vectors are stored under: one LightlyStudio knows itself (a
    CLIP model such as MobileCLIP-S0, `embedder.space_for`) embeds text queries in the same space.
    """
    if space and not space.startswith(SPACE_KEY_PREFIX.rsplit("/", 1)[0] + "/"):
        return (
            f"Text search works: LightlyStudio embeds a query with {space}, the CLIP model that embedded the images "
            "(its text encoder's weights must be in LightlyStudio's cache when offline)."
        )
    return (
        "Search by example image works with every model in the GUI that `lightly-assets browse --open` starts (it "
        "runs the model); search by text needs a CLIP model (LIGHTLY_ASSETS_MODEL set to a CLIP family). A plain "
        "`lightly-studio gui` has no such model: there both fail; use the weak-label tags, the filters and the "
        "embedding view instead."
    )


class QuietAnalytics404(logging.Filter):
    """Drops LightlyStudio's "Server Error 404: Usage tracking is disabled." line.

    With analytics off (as here), its web app still asks `/api/analytics/config` on every page load and the server
    logs the refusal as an error; nothing is wrong, so the line is noise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return ANALYTICS_404 not in record.getMessage()


def quiet_logs() -> None:
    """Install the filter on LightlyStudio's exception logger (idempotent)."""
    log = logging.getLogger("lightly_studio.api.exceptions")
    if not any(isinstance(f, QuietAnalytics404) for f in log.filters):
        log.addFilter(QuietAnalytics404())


def start_gui(db_file: Path | None, db_url_env: str | None, host: str, port: int) -> None:
    """Serve LightlyStudio's GUI on the database (blocks until Ctrl+C), offline and without the 404 noise.

    `host` and `port` come from `gui_address`; a failure to listen is a one-line `GuiAddressError`.
    """
    os.environ[ANALYTICS_ENV] = "false"  # before lightly_studio is imported
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    import lightly_studio
    from lightly_studio.database import db_manager

    quiet_logs()
    url = os.environ[db_url_env] if db_url_env else None
    db_manager.connect(db_file=None if url else str(db_file), db_url=url, must_exist=True)
    try:
        lightly_studio.start_gui(host=host, port=port, open_browser=False)
    except (RuntimeError, OSError) as exc:  # LightlyStudio's port search, or the bind itself
        raise GuiAddressError(f"LightlyStudio cannot listen on {host}:{port}: {exc}") from None
