"""Publishing a dataset with its precomputed embeddings into LightlyStudio.

LightlyStudio (PyPI `lightly-studio`) keeps datasets in a DuckDB file or a PostgreSQL database and shows them
in its web UI (`lightly-studio gui`). This module mirrors one of our datasets into it:

- Images become image samples; each is tagged with its weak-label name.
- Videos become LightlyStudio video samples with all their frames (its UI shows videos with a frame view).
  Frames are decoded by LightlyStudio itself and matched to our CSV rows by presentation timestamp, or by
  frame number when timestamps do not line up. Frames and their video carry the video's label tag.
- Embeddings come from the Lightly CSV. Images and frames are written in bulk: image samples through
  `image_resolver.create_many` (headers read in parallel, thousands of rows per commit; LightlyStudio's path
  loader commits every 32) and their vectors with `embedding_storage.store_embeddings` (LightlyStudio's own
  validated, batched insert). Videos go through LightlyStudio's supported path for precomputed vectors: an
  embedder registered with `register_default_embedder` that looks the vector up by file path (see LightlyStudio's
  `examples/example_load_existing_embeddings.py`). A video's vector is the mean of its frame vectors, because
  LightlyStudio's 2-D embedding view works on videos, not on frames.
- A dataset of images and videos becomes two LightlyStudio datasets, since a LightlyStudio dataset holds
  one sample type: `D` for the kind it was first created with and `D (videos)` or `D (images)` for the other.

Uploads are resumable rather than one transaction, because LightlyStudio commits in batches: every run
computes what is missing (samples, tags, embeddings, a video whose frames were not all written) and
completes it, and changes nothing that is already right. Samples whose files disappeared are tagged
`missing-file` and lose their embeddings (LightlyStudio has no supported delete for single images, and
annotations made in its UI must not be lost). A DuckDB file has one writer at a time, so uploads take an
exclusive `flock` on `<db file>.lock`.

Nothing is downloaded: the analytics switch is forced off before `lightly_studio` is imported and no built-in
embedder (MobileCLIP, Perception Encoder) is ever asked for, since every collection gets our embedding
model as its default before anything is embedded. `lightly_studio` is imported inside the functions because
the import takes seconds.
"""

from lightly_assets.publish.studio.target import MISSING_TAG, StudioDataset, StudioError, StudioTarget, UploadResult
from lightly_assets.publish.studio.upload import count_in_studio, upload_dataset

__all__ = [
    "MISSING_TAG",
    "StudioDataset",
    "StudioError",
    "StudioTarget",
    "UploadResult",
    "count_in_studio",
    "upload_dataset",
]
