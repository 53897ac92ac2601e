"""Named models (torchvision, timm, ONNX): one loading path, each with its own preprocessing, no downloads.

Weights are random-initialised files of the real architectures written by the test: served from 127.0.0.1 for
torch's hub cache, laid into a Hugging Face cache folder for timm. ONNX files are exported by the test.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightly_assets.defs.resources import EmbeddingModelResource
from lightly_assets.embedding.cache import EmbeddingCache
from lightly_assets.embedding.decode import load_image
from lightly_assets.embedding.errors import ModelError, WeightsError
from lightly_assets.embedding.families import build
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.spec import ACCEPTED, BuildOptions, parse_spec
from lightly_assets_tests.media import make_image
from lightly_assets_tests.servers import free_port
from lightly_assets_tests.tables import frame_index_for

TIMM_NAME = "mobilenetv3_small_050.lamb_in1k"  # a real timm model small enough for a quick test


def _photo(path: Path, size: tuple[int, int] = (96, 64), seed: int = 0) -> Path:
    return make_image(path, seed=seed, size=size)


def test_unknown_model_is_one_line_listing_what_is_accepted() -> None:
    for text in ("resnet50", "keras:resnet50", "timm:", "open_clip:ViT-B-32"):
        with pytest.raises(ModelError) as info:
            parse_spec(text)
        message = str(info.value)
        assert "\n" not in message and text in message
        assert "accepted" in message or "ARCH/PRETRAINED" in message
    assert "torchvision:NAME" in ACCEPTED and "onnx:" in ACCEPTED
    assert str(parse_spec(None)) == "lightly" and not parse_spec("lightly").named
    assert parse_spec("timm:vit_small_patch14_dinov2.lvd142m").family == "timm"
    with pytest.raises(ModelError, match=r"torchvision:no_such_net: not a torchvision classification model; accepted"):
        build(parse_spec("torchvision:no_such_net"))
    with pytest.raises(ModelError, match=r"timm:no_such_net: not a timm model with pretrained weights; accepted"):
        build(parse_spec("timm:no_such_net"))


def test_crop_preprocessing_equals_torchvision_transform(tmp_path: Path) -> None:
    from torchvision.models import ResNet18_Weights

    transform = ResNet18_Weights.DEFAULT.transforms()
    prep = Preprocessing.crop(224, 256, interpolation="bilinear")
    for size in ((300, 200), (180, 320), (256, 256)):
        image = Image.open(_photo(tmp_path / f"p{size}.png", size))
        want = transform(image).numpy()
        got = (prep.apply(image).astype(np.float32) / 255 - np.array(prep.mean)) / np.array(prep.std)
        assert np.abs(got.transpose(2, 0, 1) - want).max() < 1e-5


@pytest.mark.e2e
def test_torchvision_weights_served_once_then_offline_and_the_same_vectors(
    tmp_path: Path, file_server, monkeypatch
) -> None:
    import torchvision

    base, root = file_server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    reference = torchvision.models.resnet18().eval()  # random weights of the real architecture
    torch.save(reference.state_dict(), root / Path(url).name)
    mirror = f"{base}/{Path(url).name}"

    network = build(parse_spec("torchvision:resnet18"), BuildOptions(mirror=mirror))
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / Path(url).name
    assert network.weights.path == cached and network.weights.url == mirror and len(network.weights.sha256) == 64
    assert network.dim == 512 and network.preprocessing.shape == (224, 224)
    (root / Path(url).name).unlink()  # offline from now on: the cache serves it
    again = build(parse_spec("torchvision:resnet18"), BuildOptions(mirror=mirror))
    assert again.weights.sha256 == network.weights.sha256

    photo = _photo(tmp_path / "a.png", (300, 200))
    pixels = load_image(photo, network.preprocessing, draft=False)
    x = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(Image.open(photo)).unsqueeze(0)
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():
        want = reference(x).numpy()
        got = again.module(
            (
                torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
                - torch.tensor(network.preprocessing.mean).view(1, 3, 1, 1)
            )
            / torch.tensor(network.preprocessing.std).view(1, 3, 1, 1)
        ).numpy()
    assert np.allclose(got, want, atol=1e-4)


@pytest.mark.e2e
def test_unreachable_named_model_is_one_line_naming_model_and_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    closed = f"http://127.0.0.1:{free_port()}/resnet18.pth"
    with pytest.raises(WeightsError) as info:
        build(parse_spec("torchvision:resnet18"), BuildOptions(mirror=closed, stall_timeout=2))
    message = str(info.value)
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert "\n" not in message and message.startswith("torchvision:resnet18: ")
    assert str(cache) in message and "never falls back to random weights" in message
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hfc, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(WeightsError) as info:
        build(parse_spec(f"timm:{TIMM_NAME}"), BuildOptions(stall_timeout=2))
    assert "\n" not in str(info.value) and str(info.value).startswith(f"timm:{TIMM_NAME}: ")
    assert str(tmp_path / "hf") in str(info.value)


def _fill_hf_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> None:
    """Lay files into Hugging Face's cache layout (refs/main -> snapshots/<commit>/<file>), as a download would."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())


def test_timm_from_the_hf_cache_with_timms_data_config(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants as hfc
    import timm
    from safetensors.torch import save_file

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    reference = timm.create_model(TIMM_NAME, pretrained=False).eval()
    save_file(reference.state_dict(), str(tmp_path / "model.safetensors"))
    _fill_hf_cache(tmp_path / "hf", f"timm/{TIMM_NAME}", {"model.safetensors": tmp_path / "model.safetensors"})

    network = build(parse_spec(f"timm:{TIMM_NAME}"))
    assert network.weights.url == f"hf://timm/{TIMM_NAME}/model.safetensors"
    config = timm.data.resolve_data_config({}, model=reference)
    transform = timm.data.create_transform(**config)
    photo = Image.open(_photo(tmp_path / "a.png", (320, 240)))
    prep = network.preprocessing
    got = (prep.apply(photo).astype(np.float32) / 255 - np.array(prep.mean)) / np.array(prep.std)
    want = transform(photo)
    assert np.abs(got.transpose(2, 0, 1) - want.numpy()).max() < 1e-5
    reference.reset_classifier(0)
    with torch.inference_mode():
        assert np.allclose(network.module(want[None]).numpy(), reference(want[None]).numpy(), atol=1e-5)
    assert network.dim == reference.num_features or network.dim == reference.head_hidden_size


def _export(module: torch.nn.Module, path: Path, shape: tuple[int, ...], dynamic: bool = False) -> Path:
    """TorchScript export (no onnxscript needed); its deprecation warning is not ours."""
    axes = {"x": {0: "b", 2: "h", 3: "w"}} if dynamic else {"x": {0: "b"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            (torch.zeros(shape),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes=axes,
        )
    return path


class _Tiny(torch.nn.Module):
    def __init__(self, flatten: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        return y.mean(dim=(2, 3)) if self.flatten else y


def test_onnx_static_size_statistics_and_pooling(tmp_path: Path) -> None:
    tiny = _Tiny()
    path = _export(tiny, tmp_path / "tiny.onnx", (1, 3, 40, 48))
    network = build(parse_spec(f"onnx:{path}"), BuildOptions(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    assert network.preprocessing == Preprocessing.stretch(40, 48, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert network.dim == 8 and network.onnx_path == path.resolve()
    x = torch.rand(2, 3, 40, 48)
    with torch.inference_mode():
        assert np.allclose(network.module(x).numpy(), tiny(x).numpy(), atol=1e-5)
    # rank 4 output is mean-pooled; a dynamic size takes input_size
    spatial = _export(_Tiny(flatten=False), tmp_path / "spatial.onnx", (1, 3, 16, 16), dynamic=True)
    network = build(parse_spec(f"onnx:{spatial}"), BuildOptions(input_size=24))
    assert network.preprocessing.shape == (24, 24) and network.dim == 8
    x = torch.rand(1, 3, 24, 24)
    with torch.inference_mode():
        assert np.allclose(network.module(x).numpy(), tiny(x).numpy(), atol=1e-5)


def _graph(path: Path, input_shape: list, output_type: int, op: str = "Identity") -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    y = helper.make_tensor_value_info("y", output_type, input_shape)
    attrs = {"to": output_type} if op == "Cast" else {}
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_wrong_rank_channels_or_output_type_is_one_line_naming_file_and_shapes(tmp_path: Path) -> None:
    from onnx import TensorProto

    cases = {
        _graph(tmp_path / "rank.onnx", ["B", 32], TensorProto.FLOAT): r"has shape \['B', 32\]; expected \[B,3,H,W\]",
        _graph(
            tmp_path / "gray.onnx", ["B", 1, 8, 8], TensorProto.FLOAT
        ): r"\['B', 1, 8, 8\]; expected \[B,3,H,W\] RGB",
        _graph(tmp_path / "int.onnx", ["B", 3, 8, 8], TensorProto.INT64, "Cast"): r"is tensor\(int64\) of shape",
    }
    for path, reason in cases.items():
        with pytest.raises(ModelError, match=rf"^{path}: .*{reason}") as info:
            build(parse_spec(f"onnx:{path}"))
        assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx at all")
    with pytest.raises(ModelError, match=rf"^{garbage}: not a usable ONNX model"):
        build(parse_spec(f"onnx:{garbage}"))


def test_resource_loads_a_named_model_and_switching_model_re_embeds(tmp_path: Path, image_tree) -> None:

    names = ["a/1.png", "a/2.png", "b/3.png"]
    data = image_tree(names)
    frames = frame_index_for(data, names)
    first = _export(_Tiny(), tmp_path / "one.onnx", (1, 3, 16, 16))
    second = _export(torch.nn.Sequential(_Tiny(), torch.nn.Linear(8, 5)), tmp_path / "two.onnx", (1, 3, 20, 20))
    cache = EmbeddingCache(tmp_path / "cache.npz")
    results = []
    for path in (first, second, first):
        resource = EmbeddingModelResource(model=f"onnx:{path}")
        model = resource.load()
        assert model.spec == f"onnx:{path}" and resource.weights.path == path.resolve()
        results.append((model, embed_samples(frames, data, model, options=EmbedOptions(batch_size=2), cache=cache)))
    (m1, r1), (m2, r2), (m3, r3) = results
    assert r1.matrix.shape == (3, 8) and r2.matrix.shape == (3, 5)
    assert m1.fingerprint != m2.fingerprint and r2.reused == 0  # another model: nothing reused
    assert m3.fingerprint == m1.fingerprint and np.array_equal(r3.matrix, r1.matrix)
    assert "resized to 16x16" in m1.prep.describe()
    with pytest.raises(Exception, match="checkpoint of the lightly model"):
        EmbeddingModelResource(model=f"onnx:{first}", checkpoint=str(first)).load()


@pytest.mark.e2e  # Dagster materialisations
def test_through_dagster_metadata_names_the_model_and_the_csv_takes_its_dimension(tmp_path: Path) -> None:
    import hashlib

    from dagster import DagsterInstance, materialize

    from lightly_assets.defs.embedding import embeddings
    from lightly_assets.defs.indexing import file_index, frame_index
    from lightly_assets.defs.partitions import datasets_partitions
    from lightly_assets.defs.publishing import embeddings_csv
    from lightly_assets.defs.resources import RayClusterResource, StorageResource
    from lightly_assets.lightly_csv import read_embeddings_csv
    from lightly_assets_tests import EXAMPLE_DATA

    out = tmp_path / "out"
    files = {
        "one": _export(_Tiny(), tmp_path / "one.onnx", (1, 3, 16, 16)),
        "two": _export(torch.nn.Sequential(_Tiny(), torch.nn.Linear(8, 5)), tmp_path / "two.onnx", (1, 3, 24, 24)),
    }
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions(datasets_partitions.name, ["images_weak_labels"])
        for name, dim in (("one", 8), ("two", 5)):
            resources = {
                "storage": StorageResource(data_dir=str(EXAMPLE_DATA), output_dir=str(out)),
                "embedding_model": EmbeddingModelResource(model=f"onnx:{files[name]}"),
                "ray_cluster": RayClusterResource(),
            }
            result = materialize(
                [file_index, frame_index, embeddings, embeddings_csv],
                instance=instance,
                partition_key="images_weak_labels",
                resources=resources,
            )
            assert result.success
            (mat,) = result.asset_materializations_for_node("embeddings")
            meta = {k: v.value for k, v in mat.metadata.items()}
            sha = hashlib.sha256(files[name].read_bytes()).hexdigest()
            assert meta["model_spec"] == f"onnx:{files[name]}" and meta["dimension"] == dim
            assert meta["weights_sha256"] == sha and str(files[name].resolve()) in meta["weights"]
            assert meta["preprocessing"].startswith("whole image resized to")
            assert meta["studio_space"].endswith(f"-{sha[:8]}-{dim}d") and meta["reused"] == 0
            _, matrix, _ = read_embeddings_csv(out / "images_weak_labels" / "embeddings.csv")
            assert matrix.shape[1] == dim


@pytest.mark.e2e  # a 151M-parameter CLIP, random-initialised
def test_open_clip_from_the_hf_cache_with_its_preprocessing_and_text_tower(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants as hfc
    import open_clip
    from safetensors.torch import save_file

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    reference = open_clip.create_model("ViT-B-32", force_quick_gelu=True).eval()  # the openai tag's activation
    save_file(reference.state_dict(), str(tmp_path / "open_clip_model.safetensors"))
    repo = "timm/vit_base_patch32_clip_224.openai"
    _fill_hf_cache(tmp_path / "hf", repo, {"open_clip_model.safetensors": tmp_path / "open_clip_model.safetensors"})

    network = build(parse_spec("open_clip:ViT-B-32/openai"))
    assert network.weights.url == f"hf://{repo}/open_clip_model.safetensors" and network.dim == 512
    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    settings = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode")}
    transform = open_clip.image_transform(224, is_train=False, **settings)
    photo = Image.open(_photo(tmp_path / "a.png", (300, 200)))
    prep = network.preprocessing
    got = (prep.apply(photo).astype(np.float32) / 255 - np.array(prep.mean)) / np.array(prep.std)
    want = transform(photo)
    assert np.abs(got.transpose(2, 0, 1) - want.numpy()).max() < 1e-5
    with torch.inference_mode():
        assert np.allclose(network.module(want[None]).numpy(), reference.encode_image(want[None]).numpy(), atol=1e-4)
        tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a cat"])
        assert np.allclose(network.module.embed_text(["a photo of a cat"]), reference.encode_text(tokens), atol=1e-4)
