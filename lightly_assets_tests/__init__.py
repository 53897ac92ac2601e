"""The test suite. Tests mirror the package (`embedding/`, `dataset/`, `curation/`, `publish/`, `defs/`, and the
top-level modules beside this file); what they build comes from the modules here that are not tests: `media`
(images and videos), `tables` (frame_index tables and embedding CSVs), `servers` (ports, servers, HTTP),
`real_media`, `ray_cluster`; fixtures and the session's environment from `conftest.py`."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = REPO / "data"  # the example datasets the README's tour uses
# Where every test's pretrained weights come from unless it serves a file: a closed port on 127.0.0.1, refused at once.
OFFLINE_PRETRAINED_URL = "http://127.0.0.1:9/offline/no-pretrained-weights-in-tests.pth"
