"""Text search in LightlyStudio on our vectors: `mobileclip:s0` embeds the images, LightlyStudio's GUI (its own
process) embeds the phrase with its built-in MobileCLIP from the same weights file and ranks our vectors.

The weights are a random initialisation of the real MobileCLIP-S0 architecture, served from 127.0.0.1.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from lightly_assets_tests.media import make_image
from lightly_assets_tests.servers import free_port, get_json, start_gui, stop, wait_healthy
from lightly_assets_tests.tables import frame_index, image_rows

pytestmark = pytest.mark.e2e  # LightlyStudio's import, a 54M-parameter model and its GUI server


def _mobileclip_weights(path: Path) -> Path:
    from lightly_studio.vendor import mobileclip

    torch.manual_seed(0)
    model, _, _ = mobileclip.create_model_and_transforms("mobileclip_s0", pretrained=None, reparameterize=False)
    with torch.no_grad():  # a fresh text projection is all zeros: every text would embed to 0 (or NaN once normalised)
        model.text_encoder.projection_layer.normal_(0.0, 512**-0.5)
    torch.save(model.state_dict(), path)
    return path


def test_mobileclip_vectors_are_text_searchable_in_the_lightly_studio_gui(
    tmp_path: Path,
    file_server,
    monkeypatch,
) -> None:
    from lightly_studio.embed import mobileclip_embedder

    from lightly_assets.defs.resources import EmbeddingModelResource
    from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
    from lightly_assets.lightly_csv import write_embeddings_csv
    from lightly_assets.publish.studio import StudioTarget, upload_dataset

    base, served = file_server
    cache = tmp_path / "model-cache"
    monkeypatch.setenv("LIGHTLY_STUDIO_MODEL_CACHE_DIR", str(cache))
    _mobileclip_weights(served / "mobileclip_s0.pt")

    names = [f"a/{i}.png" for i in range(3)] + [f"b/{i}.png" for i in range(3)]
    data = tmp_path / "data" / "things"
    for i, name in enumerate(names):
        make_image(data / name, seed=i, size=(80 + 10 * i, 60))
    frames = frame_index(image_rows(data))

    resource = EmbeddingModelResource(model="mobileclip:s0", weights_url=f"{base}/mobileclip_s0.pt", precision="fp32")
    model = resource.load()
    assert (model.space_key, model.dim) == ("mobileclip_s0", 512)
    assert resource.weights.path == cache / "mobileclip_s0.pt" and sorted(p.name for p in cache.iterdir()) == [
        "mobileclip_s0.pt"
    ]
    result = embed_samples(frames, data, model, options=EmbedOptions(batch_size=4))
    csv = write_embeddings_csv(tmp_path / "embeddings.csv", result.filenames, result.matrix, result.labels)

    # Our vectors are LightlyStudio's own MobileCLIP image embeddings of the same files.
    monkeypatch.setattr(mobileclip_embedder, "LIGHTLY_STUDIO_MODEL_CACHE_DIR", cache)
    studio_own = mobileclip_embedder.MobileCLIPEmbedder().embed_images([str(data / n) for n in names])
    own = studio_own.embeddings / np.linalg.norm(studio_own.embeddings, axis=1, keepdims=True)
    ours = result.matrix / np.linalg.norm(result.matrix, axis=1, keepdims=True)
    assert np.min(np.sum(own * ours, axis=1)) > 0.999

    db = tmp_path / "studio" / "lightly_studio.db"
    db.parent.mkdir()
    upload = upload_dataset(StudioTarget(db_file=db, dataset_name="things"), data, frames, csv, space="mobileclip_s0")
    assert (upload.samples, upload.embeddings) == (6, 6)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_gui(upload.gui_command, port, cache)
    try:
        wait_healthy(url, server, timeout_s=180)
        collection = str(upload.collection_id)
        phrase = "a photo of a cat"
        query = f"{url}/api/text_embedding/for_collection/{collection}?query_text={urllib.parse.quote(phrase)}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(query, timeout=300) as response:  # the first query loads LightlyStudio's MobileCLIP
            text = np.asarray(json.loads(response.read()))
        assert text.shape == (512,) and np.isfinite(text).all() and np.linalg.norm(text) > 0, text[:4]
        assert np.allclose(text, model.embed_text([phrase])[0], atol=1e-4)  # the same text tower as ours

        listed = get_json(f"{url}/api/collections/{collection}/images/list", {"text_embedding": text.tolist()})
        ranked = [Path(s["file_path_abs"]).relative_to(data).as_posix() for s in listed["data"]]
        scores = ours @ (text / np.linalg.norm(text))
        expected = [result.filenames[i] for i in np.argsort(-scores)]
        assert ranked == expected  # LightlyStudio ranks our vectors by the phrase
    finally:
        stop(server)
    assert sorted(p.name for p in cache.iterdir()) == ["mobileclip_s0.pt"], "LightlyStudio downloaded a model"
