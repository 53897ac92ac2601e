"""`lightly-assets browse`: where the GUI listens (also where `localhost` has no IPv6 entry) and what it prints."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from lightly_assets.browse import Published, render
from lightly_assets.publish.studio import browse
from lightly_assets.publish.studio.browse import GuiAddressError, gui_address
from lightly_assets_tests import REPO
from lightly_assets_tests.servers import NO_IPV6_LOCALHOST, free_port


def _held(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_the_gui_listens_on_the_ipv4_loopback_address_by_default(monkeypatch) -> None:
    port = free_port()
    monkeypatch.setattr(browse, "DEFAULT_PORT", port)
    assert gui_address(None, None, env={}) == ("127.0.0.1", port, "")
    assert gui_address("localhost", None, env={})[:2] == ("127.0.0.1", port)  # LightlyStudio's default name
    assert gui_address(None, None, env={"LIGHTLY_STUDIO_HOST": "localhost"})[:2] == ("127.0.0.1", port)


def test_a_busy_default_port_means_a_free_one_and_a_busy_chosen_port_is_one_line(monkeypatch) -> None:
    with _held() as taken:
        port = taken.getsockname()[1]
        monkeypatch.setattr(browse, "DEFAULT_PORT", port)
        host, other, note = gui_address(None, None, env={})
        assert host == "127.0.0.1" and other != port
        assert note == f"port {port} is in use, so LightlyStudio uses port {other}"
        with pytest.raises(GuiAddressError) as chosen:
            gui_address(None, port, env={})
        assert str(chosen.value) == (
            f"LightlyStudio cannot listen on 127.0.0.1:{port}: the port is in use (another LightlyStudio?); "
            "stop it or choose another with --port"
        )
        with pytest.raises(GuiAddressError, match=f"127.0.0.1:{port}: the port is in use"):
            gui_address(None, None, env={"LIGHTLY_STUDIO_PORT": str(port)})


def test_a_host_that_is_not_this_machine_is_one_line() -> None:
    with pytest.raises(GuiAddressError, match=r"^LightlyStudio cannot listen on 192\.0\.2\.1: "):
        gui_address("192.0.2.1", free_port(), env={})


@pytest.mark.e2e  # a fresh Python process imports LightlyStudio's server (~5 CPU-s)
def test_binding_localhost_over_ipv6_fails_under_the_simulation_and_our_address_works() -> None:
    """The simulation the GUI test runs `browse --open` under reproduces LightlyStudio's failure, and our
    address choice does not meet it."""
    probe = (
        "import socket\n"
        "from lightly_studio.api.server import _get_available_port\n"
        "try:\n"
        "    _get_available_port('localhost', 8001, max_tries=3)\n"
        "except RuntimeError as exc:\n"
        "    print('studio:', exc)\n"
        "from lightly_assets.publish.studio.browse import gui_address\n"
        "print('ours:', gui_address(None, None, env={})[0])\n"
    )
    simulation = NO_IPV6_LOCALHOST.split("sys.argv = ")[0]  # the patch, without running a module
    out = subprocess.run(
        [sys.executable, "-c", simulation + probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert "studio: Could not find an available port." in out.stdout, out.stderr[-2000:]
    assert "ours: 127.0.0.1" in out.stdout


def test_the_search_note_is_printed_once_for_datasets_that_share_it() -> None:
    note = "Text search and search by image need a CLIP model."
    items = [
        Published("animals", "duckdb:/x.db", {"animals": "http://localhost:8001/datasets/a/image/a"}, note),
        Published("clips", "duckdb:/x.db", {"clips": "http://localhost:8001/datasets/c/video/c"}, note),
    ]
    text = render(items, "http://127.0.0.1:8002", "lightly-studio gui", opening=True)
    assert text.count(note) == 1 and f"search: {note}" in text
    assert "  animals: http://127.0.0.1:8002/datasets/a/image/a" in text  # links rebased on the GUI's address
    assert text.endswith("starting LightlyStudio on http://127.0.0.1:8002 (Ctrl+C stops it)")
    items[1].search = "Text search works: LightlyStudio embeds a query with MobileCLIP-S0."
    text = render(items, "http://127.0.0.1:8002", "lightly-studio gui", opening=False)
    assert f"search in animals: {note}" in text and "search in clips: Text search works" in text


class _Model:
    """The part of a loaded model that search uses: preprocessing, image and (optionally) text embedding."""

    def __init__(self, has_text: bool) -> None:
        from lightly_assets.embedding.preprocessing import Preprocessing

        self.dim, self.has_text, self.description, self.prep = 3, has_text, "tiny", Preprocessing.stretch(8)

    def embed(self, batch):
        return batch.reshape(len(batch), -1, 3).mean(axis=1)  # the mean colour: a 3-d vector per image

    def embed_text(self, texts):
        import numpy as np

        return np.ones((len(texts), 3))


@pytest.mark.lightly_studio
def test_query_embedders_embed_example_images_and_text_when_the_model_has_a_text_tower(tmp_path) -> None:
    import io

    from PIL import Image

    from lightly_assets.publish.studio.search import is_ours, query_embedder

    png = io.BytesIO()
    Image.new("RGB", (20, 10), (255, 0, 0)).save(png, format="PNG")
    images = query_embedder(_Model(has_text=False), "lightly-assets/precomputed-3d")
    result = images.embed_image_bytes([b"not an image", png.getvalue()])
    assert result.kept_indices == [1] and result.embeddings.tolist() == [[255.0, 0.0, 0.0]]
    assert images.embedding_space_spec().space_key == "lightly-assets/precomputed-3d"
    assert not hasattr(images, "embed_text")  # no text tower: LightlyStudio is not told it can search by text
    text = query_embedder(_Model(has_text=True), "lightly-assets/clip-x-3d").embed_text(["a cat"])
    assert text.embeddings.shape == (1, 3)
    assert is_ours("lightly-assets/precomputed-32d") and not is_ours("mobileclip_s0")
