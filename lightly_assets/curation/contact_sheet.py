"""A contact sheet of the largest duplicate groups (or of each issue's worst samples): one row per group, its
members side by side.

It is the first thing a user looks at to judge a threshold, so it stays small (64-px thumbnails, a few groups)
to be inlined in Dagster's Markdown as a `data:` image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from lightly_assets.atomic import atomic_output
from lightly_assets.dataset.video import iter_frames

THUMB = 64
GROUPS_SHOWN = 6
MEMBERS_SHOWN = 6
LABEL_WIDTH = 120


def _thumbnails(samples: pd.DataFrame, data_dir: Path) -> dict[str, Image.Image]:
    """Thumbnails by sample name; a video is decoded once, front to back, up to its last wanted frame."""
    out: dict[str, Image.Image] = {}
    for source, rows in samples.groupby("source", sort=False):
        path = Path(data_dir) / str(source)
        try:
            if rows["kind"].iloc[0] == "image":
                with Image.open(path) as image:
                    image.draft("RGB", (THUMB * 2, THUMB * 2))
                    out[str(rows["filename"].iloc[0])] = _fit(image.convert("RGB"))
                continue

            wanted = {int(f): str(n) for f, n in zip(rows["frame"], rows["filename"], strict=True)}
            for number, image in iter_frames(path, size=(THUMB, THUMB)):
                if number in wanted:
                    out[wanted.pop(number)] = _fit(image.convert("RGB"))
                if not wanted:
                    break
        except Exception:  # noqa: BLE001 - a file that cannot be shown gets a grey tile; the groups stay right
            continue
    return out


def _fit(image: Image.Image) -> Image.Image:
    image.thumbnail((THUMB, THUMB))
    tile = Image.new("RGB", (THUMB, THUMB), (240, 240, 240))
    tile.paste(image, ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
    return tile


def write_contact_sheet(
    path: Path, groups: Sequence[pd.DataFrame], samples: pd.DataFrame, data_dir: Path
) -> tuple[Path, bytes]:
    """The PNG at `path`: per group its number, size and kinds, then up to MEMBERS_SHOWN members with their
    similarity; and the bytes of a small version without text that fits inline in Dagster's metadata table."""
    shown = [g.head(MEMBERS_SHOWN) for g in groups[:GROUPS_SHOWN]]
    names = {str(n) for g in shown for n in g["filenames"]}
    thumbs = _thumbnails(samples.loc[samples["filename"].isin(list(names))], data_dir)
    return _full(path, groups, shown, thumbs), _small(shown, thumbs)


# (groups, members, tile px, colours) tried in order until the PNG fits INLINE_BYTES
_SMALL_STEPS = [(3, 4, 24, 16), (3, 3, 20, 8), (2, 3, 16, 8), (2, 2, 16, 4), (1, 2, 12, 4)]
INLINE_BYTES = 640  # base64 makes it ~850 characters: Dagster shows Markdown inline below 1,000


def _small(shown: Sequence[pd.DataFrame], thumbs: dict[str, Image.Image]) -> bytes:
    """The largest groups as rows of tiny tiles, a palette PNG of at most about INLINE_BYTES."""
    data = b""
    for groups, members, tile, colours in _SMALL_STEPS:
        rows = [g.head(members) for g in shown[:groups]]
        sheet = Image.new("RGB", (members * (tile + 2), max(1, len(rows)) * (tile + 2)), "white")
        for r, group in enumerate(rows):
            for c, name in enumerate(group["filenames"]):
                picture = thumbs.get(str(name)) or Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
                sheet.paste(picture.resize((tile, tile)), (c * (tile + 2), r * (tile + 2)))
        out = io.BytesIO()
        sheet.quantize(colors=colours).save(out, format="PNG", optimize=True)
        data = out.getvalue()
        if len(data) <= INLINE_BYTES:
            break
    return data


def _full(path: Path, groups, shown, thumbs) -> Path:
    row_h = THUMB + 14
    sheet = Image.new("RGB", (LABEL_WIDTH + MEMBERS_SHOWN * (THUMB + 4), max(1, len(shown)) * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (group, members) in enumerate(zip(groups, shown, strict=False)):
        y = r * row_h
        kinds = "/".join(sorted(set(group["kind"])))
        caption = f"group {int(group['group'].iloc[0])}\n{len(group)} samples\n{kinds}"
        if "caption" in group:  # a row that is not a duplicate group (data_issues: an issue, its worst samples)
            caption = str(group["caption"].iloc[0])
        draw.text((4, y + 4), caption, fill="black")
        for c, member in enumerate(members.itertuples(index=False)):
            x = LABEL_WIDTH + c * (THUMB + 4)
            tile = thumbs.get(str(member.filenames)) or Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
            sheet.paste(tile, (x, y))
            draw.text((x, y + THUMB), f"{member.similarity:.3f}", fill="black")
    with atomic_output(path) as handle:
        sheet.save(handle, format="PNG", optimize=True)
    return Path(path)
