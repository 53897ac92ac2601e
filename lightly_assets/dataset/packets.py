"""What a demuxed video packet holds without decoding it: which codecs map one packet to one shown frame, and how
many frames a VP8/VP9 packet shows (its frame header bits). `video.index_video` counts frames with these."""

from __future__ import annotations

# Codecs where one demuxed packet is one decoded frame, given the checks below. Any
# other codec is counted by decoding, because its packet/frame relation is unknown.
PACKET_PER_FRAME_CODECS = frozenset(
    {
        "h264",
        "hevc",
        "av1",
        "vp8",
        "vp9",
        "mpeg4",
        "mpeg1video",
        "mpeg2video",
        "mjpeg",
        "prores",
        "ffv1",
        "rawvideo",
        "dnxhd",
        "h263",
        "msmpeg4v2",
        "msmpeg4v3",
        "wmv1",
        "wmv2",
    }
)
# MPEG-4 part 2 "not coded" VOPs (Xvid dropped frames) are a few bytes long and the
# decoder outputs nothing for them; a packet this small makes the count uncertain.
TINY_MPEG4_PACKET = 16


def shown_frames(codec: str, data: memoryview) -> int:
    """How many frames a decoder outputs for one packet: 1 except for VP8/VP9."""
    if codec == "vp8":
        return (data[0] >> 4) & 1  # show_frame bit of the VP8 frame tag
    if codec == "vp9":
        return sum(_vp9_shown(data[a:b]) for a, b in _vp9_frames(data))
    return 1


def _vp9_frames(data: memoryview) -> list[tuple[int, int]]:
    """Byte ranges of the frames in a VP9 packet (a superframe holds several)."""
    n = len(data)
    marker = data[n - 1]
    if marker & 0xE0 == 0xC0:
        count, size_bytes = (marker & 7) + 1, ((marker >> 3) & 3) + 1
        index_len = 2 + size_bytes * count
        if index_len <= n and data[n - index_len] == marker:
            ranges, start, pos = [], 0, n - index_len + 1
            for _ in range(count):
                size = int.from_bytes(data[pos : pos + size_bytes], "little")
                ranges.append((start, start + size))
                start, pos = start + size, pos + size_bytes
            return ranges
    return [(0, n)]


def _vp9_shown(frame: memoryview) -> int:
    """1 when a VP9 frame header has show_existing_frame or show_frame set."""
    if len(frame) == 0:
        return 0
    bits = frame[0]
    profile = ((bits >> 5) & 1) | (((bits >> 4) & 1) << 1)
    shift = 3 if profile < 3 else 2  # profile 3 has one reserved bit more
    show_existing = (bits >> shift) & 1
    show_frame = (bits >> (shift - 2)) & 1
    return 1 if show_existing or show_frame else 0
