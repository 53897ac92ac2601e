"""file_index semantics: Lightly's order and labels, and every kind of bad input reported by path and reason."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from lightly_assets.dataset.roots import fingerprint
from lightly_assets.dataset.scan import DatasetError, require_usable, scan_dataset
from lightly_assets_tests.media import make_image
from lightly_assets_tests.reference import lightly_view


def our_view(root: Path) -> tuple[list[str], list[int]]:
    files = scan_dataset(root).files
    return files["filename"].tolist(), files["label"].tolist()


CONFORMANCE = {
    "flat": ["img-10.jpg", "img-2.jpg", "img-1.png", "b.jpeg", "A.jpg", "_x.bmp"],
    "subfolders": ["weak-label-2/img-1.jpg", "weak-label-1/img-2.jpg", "weak-label-1/img-1.jpg",
                   "weak-label-10/a.png", "Zeta/z.jpg"],
    "nested": ["cls_a/x.jpg", "cls_a/sub/y.jpg", "cls_a/sub-2/w.jpg", "cls_a/sub/deeper/v.png",
               "cls_a/a.jpg", "cls_b/sub/q.jpg", "cls_b/p.jpg"],
    "uppercase": ["A.JPG", "b.Png", "c.JPEG", "d.TIF", "e.webp"],
    "odd_names": ["with space.jpg", "comma,name.jpg", "quote'single.jpg", 'quote"double.jpg',
                  "ünïcødé-日本.jpg", "semi;colon.png"],
    "odd_subfolders": ["label one/ä.jpg", "label,two/b c.jpg", "label one/deep er/x.jpg"],
}  # fmt: skip


@pytest.mark.lightly_tools
@pytest.mark.parametrize("case", sorted(CONFORMANCE))
def test_filenames_order_and_labels_equal_lightly(image_tree, case: str) -> None:
    root = image_tree(CONFORMANCE[case], root=case)
    assert our_view(root) == lightly_view(root)


def test_flat_folder_all_label_zero(image_tree) -> None:
    files = scan_dataset(image_tree(["b.jpg", "a.png"])).files
    assert files["filename"].tolist() == ["a.png", "b.jpg"]
    assert set(files["label"]) == {0}
    assert set(files["kind"]) == {"image"}
    assert (files["size"] > 0).all() and (files["mtime_ns"] > 0).all()


def test_subfolder_labels_and_label_names(image_tree) -> None:
    result = scan_dataset(image_tree(["b/1.jpg", "a/deep/2.jpg", "a/3.jpg"]))
    assert result.layout == "subfolders"
    assert result.files[["filename", "label", "label_name"]].values.tolist() == [
        ["a/3.jpg", 0, "a"], ["a/deep/2.jpg", 0, "a"], ["b/1.jpg", 1, "b"],
    ]  # fmt: skip


def test_any_pillow_extension_is_an_image(image_tree) -> None:
    root = image_tree(["a.jpg"])
    make_image(root / "g.gif")
    make_image(root / "t.TIFF")
    assert scan_dataset(root).files["filename"].tolist() == ["a.jpg", "g.gif", "t.TIFF"]


def test_videos_get_one_label_each_in_sorted_order(tmp_path: Path) -> None:
    root = tmp_path / "vids"
    root.mkdir()
    for name in ["c.avi", "a.mp4", "B.mov"]:
        (root / name).write_bytes(b"not checked here")
    files = scan_dataset(root).files
    assert files[["filename", "kind", "label"]].values.tolist() == [
        ["B.mov", "video", 0], ["a.mp4", "video", 1], ["c.avi", "video", 2],
    ]  # fmt: skip


def test_mixed_images_and_videos_keep_every_file_and_never_share_labels(image_tree) -> None:
    root = image_tree(["cats/a.jpg", "dogs/b.jpg"])
    (root / "clip.mp4").write_bytes(b"x")
    (root / "cats" / "cat.mov").write_bytes(b"x")
    files = scan_dataset(root).files
    by_name = dict(zip(files["filename"], files["label"], strict=True))
    assert by_name == {"cats/cat.mov": 0, "clip.mp4": 1, "cats/a.jpg": 2, "dogs/b.jpg": 3}


def test_hidden_files_and_folders_are_ignored(image_tree) -> None:
    root = image_tree(["a.jpg", ".hidden.jpg", ".cache/b.jpg"])
    result = scan_dataset(root)
    assert result.files["filename"].tolist() == ["a.jpg"]
    assert result.skipped == []


def test_bad_files_are_listed_with_reasons(image_tree) -> None:
    root = image_tree(["good/a.jpg"])
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.png").write_text("this is not a png")
    (bad / "notes.txt").write_text("stray")
    (root / "clip.mp4").mkdir()
    (root / "root.jpg").write_bytes((root / "good/a.jpg").read_bytes())
    os.symlink(root, bad / "loop")
    os.symlink(root / "missing.jpg", bad / "dangling.jpg")
    assert "bad/text.png" in scan_dataset(root).files["filename"].tolist()  # contents are not read by default
    result = scan_dataset(root, verify=True)
    reasons = {s.path: s.reason for s in result.skipped}
    assert result.files["filename"].tolist() == ["good/a.jpg"]
    assert reasons["bad/empty.jpg"] == "empty file (0 bytes)"
    assert reasons["bad/text.png"].startswith("not a readable image")
    assert reasons["bad/notes.txt"] == "unsupported file type"
    assert reasons["clip.mp4"] == "is a folder, not a video file"
    assert reasons["root.jpg"].startswith("image at the dataset root beside weak-label folders")
    assert "symlink loop" in reasons["bad/loop"]
    assert reasons["bad/dangling.jpg"] == "broken symlink"


def test_unreadable_file_is_reported_not_raised(tmp_path: Path) -> None:
    """Scan in a forked child that drops to an unprivileged user when we are root, since root reads every file."""
    root = Path(tempfile.mkdtemp(prefix="lightly-assets-perm-", dir="/tmp"))
    try:
        make_image(root / "a.jpg")
        make_image(root / "secret.jpg", seed=1)
        os.chmod(root, 0o755)
        os.chmod(root / "a.jpg", 0o644)
        os.chmod(root / "secret.jpg", 0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                if os.geteuid() == 0:
                    os.setuid(65534)
                r = scan_dataset(root, verify=True)
                out = json.dumps([r.files["filename"].tolist(), [[s.path, s.reason] for s in r.skipped]])
                os.write(write_end, out.encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as fh:
            payload = fh.read()
        os.waitpid(pid, 0)
        assert json.loads(payload) == [["a.jpg"], [["secret.jpg", "permission denied"]]]
    finally:
        shutil.rmtree(root)


def test_truncated_image_header_ok_is_left_for_decoding(image_tree) -> None:
    """A JPEG cut in half still has a header: file_index keeps it, the embedding step reports it."""
    root = image_tree(["a.jpg"])
    make_image(root / "a.jpg", size=(256, 192))
    data = (root / "a.jpg").read_bytes()
    (root / "half.jpg").write_bytes(data[: len(data) // 2])
    assert scan_dataset(root).files["filename"].tolist() == ["a.jpg", "half.jpg"]


def test_missing_folder_and_empty_dataset_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    result = scan_dataset(empty)
    with pytest.raises(DatasetError, match=r"empty: no usable image or video file \(readme.txt: unsupported"):
        require_usable(result, empty)


def test_scan_gives_the_sensor_walks_fingerprint(image_tree) -> None:
    """`file_index` takes the fingerprint from its own scan: the same hash as the sensor's walk (roots.fingerprint)
    for hidden, empty, unsupported and symlinked entries, folders entered through a link, names that are not
    UTF-8 and the custom embeddings file; it changes with a file's size or time."""
    root = image_tree(["cats/a.jpg", "cats/deep/b.png", "dogs/c.jpg", ".cache/x.jpg"])
    (root / "cats" / "empty.jpg").write_bytes(b"")
    (root / "dogs" / "notes.txt").write_text("stray")
    (root / "dogs" / ".hidden.jpg").write_text("x")
    os.symlink(root / "cats" / "a.jpg", root / "dogs" / "link.jpg")
    os.symlink(root / "missing.jpg", root / "dogs" / "dangling.jpg")
    os.symlink(root / "cats" / "deep", root / "dogs" / "linked-folder")  # the scan enters it, the sensor does not
    os.symlink(root, root / "cats" / "loop")
    (root / "dogs" / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"x")
    (root / ".lightly").mkdir()
    (root / ".lightly" / "custom_embeddings.csv").write_text("filenames,embedding_0,labels\n")
    result = scan_dataset(root)
    assert result.fingerprint == fingerprint(root)
    assert "dogs/linked-folder/b.png" in result.files["filename"].tolist()
    os.utime(root / "dogs" / "c.jpg", ns=(1, 1))
    changed = scan_dataset(root).fingerprint
    assert changed == fingerprint(root) != result.fingerprint


def test_scan_leaves_the_fingerprint_to_the_sensor_walk_where_it_skips_a_folder(image_tree) -> None:
    """A folder named like a video is not scanned but is in the sensor's walk: no fingerprint from the scan."""
    root = image_tree(["a.jpg"])
    (root / "clip.mp4").mkdir()
    make_image(root / "clip.mp4" / "inside.jpg")
    assert scan_dataset(root).fingerprint is None
