"""What the code cannot say about itself: what to do when a check fails, and how to fix an error.

Used by `reference.py` when the site is built. `lightly_assets_tests/test_docs.py` checks every entry against the
code: each check named here is declared by the definitions and each declared check is named here; each error
fragment occurs in the first line of an error the package raises; each error class has a fix.
"""

# check name -> what to do when it fails
CHECKS: dict[str, str] = {
    "no_skipped_files": "Read the `skipped` metadata (or the `skipped:` lines of `lightly-assets run`): each path has "
    "its reason. Fix or remove those files and run again; hidden files (leading dot) are ignored on purpose.",
    "samples_match_files": "A bug or a file that changed during the run: run again; if it persists, report the "
    "`problems` metadata.",
    "all_videos_indexed": "The listed videos cannot be opened or indexed (missing `moov`, truncated, no video "
    "stream). Re-encode or re-copy them (e.g. `ffmpeg -i in.mp4 -c copy out.mp4`), then run again.",
    "finite_values": "The model produced NaN or infinity for the listed samples: try `precision: fp32`, another "
    "`engine`, or another checkpoint.",
    "all_samples_embedded": "The listed samples could not be decoded; re-encode or remove them. A video is published "
    "whole or not at all.",
    "trained_weights": "Offline or no weights: put Lightly's pretrained file where the check says, set "
    "`LIGHTLY_ASSETS_CHECKPOINT` (or `LIGHTLY_ASSETS_PRETRAINED_URL` to a mirror), train one with `lightly-assets "
    "train DATASET`, or name a pretrained model (`LIGHTLY_ASSETS_MODEL`).",
    "knn_better_than_chance": "The vectors do not separate your weak labels: use pretrained or trained weights, or "
    "another model (see Models and engines). 'Not applicable' (fewer than two labels) passes.",
    "column_order": "The CSV is not in Lightly's layout: a custom-embeddings file with odd columns is the usual "
    "cause; fix `.lightly/custom_embeddings.csv` and run again.",
    "label_counts": "The CSV and `frame_index` disagree: a file changed during the run. Run again.",
    "target_counts_match_csv": "The target holds other counts than the CSV: another writer touched the dataset, or an "
    "upload was interrupted. Run again; the next upload completes it.",
    "no_duplicates": "Open `duplicates.csv` or the contact sheet (metadata), or the `duplicates-v<k>` tag in "
    "LightlyStudio; remove copies you do not want, or keep them (the selection never picks two of a group).",
    "similarities_meaningful": "The similarities cannot tell copies from distinct images (random weights, or too "
    "uniform): use pretrained weights or a pretrained model, then run again; ignore the near-duplicate groups "
    "until then.",
    "no_duplicates_selected": "A bug: `selection.txt` holds two members of one duplicate group. Report it with "
    "`duplicates.csv` and `selection.txt`.",
    "no_data_issues": "Open `data_issues.csv` or the `issue-<name>` tags in LightlyStudio; fix or remove the files "
    "(or accept them) and run again.",
}

# error class (or "CLI") -> the usual fix, for rows without a fix of their own
ERROR_CLASSES: dict[str, str] = {
    "CLI": "name a dataset folder that exists under the data root (`lightly-assets list`), or set "
    "`--data-dir` / `LIGHTLY_ASSETS_DATA_DIR`.",
    "BucketError": "check `LIGHTLY_ASSETS_BUCKET_URL`, the credentials (`AWS_*`) and the named file; run again.",
    "ColumnsError": "a table was written by another version: run the chain again from `file_index`.",
    "ConfigurationError": "set the named field (run config or its environment variable) to one of the values listed.",
    "CurationError": "fix the named config value in the Launchpad (`ops: {duplicates|selection: {config: …}}`).",
    "DatasetError": "check the named folder: it must exist and hold at least one image or video.",
    "EmbeddingError": "the named samples cannot be decoded or the index is inconsistent: fix the files, run again.",
    "EmbeddingsFileError": "the named CSV is not in Lightly's format: fix or delete it and run again.",
    "GuiAddressError": "stop the other LightlyStudio on that port, or pick another: `lightly-assets browse --port`.",
    "EngineError": "use `engine: torch` or `precision: fp32` on the `embedding_model` resource.",
    "ModelError": "check `LIGHTLY_ASSETS_MODEL` / `LIGHTLY_ASSETS_CHECKPOINT` and the named file.",
    "OrientationError": "set `embedding_model.orientation` to `upright` or `raw`.",
    "RayExecutorError": "check `RAY_ADDRESS` and that the head node is up, or set `LIGHTLY_ASSETS_EXECUTOR=local`.",
    "SamplingError": "fix the `frame_index` config: `frame_stride` >= 1 or `target_fps` > 0, not both.",
    "StudioError": "check the LightlyStudio database (file or `LIGHTLY_STUDIO_DATABASE_URL`); run again, the next "
    "upload completes a partial one.",
    "TrainingError": "fix the named training option (`lightly-assets train --help`).",
    "VideoError": "the named video is damaged or not a video: re-encode or re-copy it; it is skipped until then.",
    "WeightsError": "check the named weights file or URL, or work offline with a cached file (see Models).",
}

# a fragment of an error's first line -> its fix (first match wins)
ERRORS: dict[str, str] = {
    "no dataset folder under": "create a folder under the data root (`data/<name>/`) or point `--data-dir` at one.",
    "hidden folders": "rename the folder without the leading dot.",
    "not uploaded yet": "run `lightly-assets run` first.",
    "no LightlyStudio database yet": "run `lightly-assets run` first, or set `LIGHTLY_STUDIO_DB_FILE`.",
    "bucket target needs bucket_url": "set `LIGHTLY_ASSETS_BUCKET_URL=s3://bucket/prefix`.",
    "both map to the Lightly metadata file": "rename one of the two files.",
    "is a checkpoint of the lightly model": "unset `LIGHTLY_ASSETS_CHECKPOINT` or set `LIGHTLY_ASSETS_MODEL=lightly`.",
    "; delete it to start over": "a curation state (duplicates or selection) that cannot be read: delete the named "
    "file; the next run searches all samples again, or selects anew.",
    "data root does not exist": "create `data/` or set `LIGHTLY_ASSETS_DATA_DIR` / `--data-dir`.",
    "no usable": "add images or videos to the folder; the `skipped` list says why each file was left out.",
    "no sample could be decoded": "the folder's files are all unreadable: re-copy or re-encode them.",
    "custom embeddings": "fix `<dataset>/.lightly/custom_embeddings.csv`: a `filenames` column with every sample "
    "once, then numeric columns.",
    "CUDA is not available": "set `device: auto` or `cpu`.",
    "model ‹text› is not understood": "use one of the accepted forms, e.g. `timm:NAME` or `onnx:/path/model.onnx`.",
    "could not be downloaded": "go online once (the file is cached), set `weights_url` to a mirror, or put the "
    "file in the cache path named.",
    "checkpoint file not found": "fix `LIGHTLY_ASSETS_CHECKPOINT`.",
    "neither a lightly checkpoint": "use a `lightly-ssl-train` checkpoint or a torchvision ResNet state dict.",
    "this model has no text tower": "use `mobileclip:s0` (or another CLIP model) for text search.",
    "needs Ray: install the extra": "`pip install -e '.[ray]'`.",
    "cannot be reached": "start the head node or fix `RAY_ADDRESS`; `LIGHTLY_ASSETS_EXECUTOR=local` embeds here.",
    "is being written by another upload": "wait for the other upload, then run again.",
    "must hold a postgresql:// URL": "set `LIGHTLY_STUDIO_DATABASE_URL=postgresql://user:pass@host/db`.",
    "LightlyStudio already has a dataset": "set `publish_target.dataset_id` to another name.",
    "failed while": "run again: what was written is consistent and the next run completes it.",
    "too few to form one batch": "lower `--batch-size`.",
    "formed no batch": "lower `--batch-size` or fix the unreadable files.",
    "cached pretrained weights": "delete the named file; it is downloaded again.",
    "OpenVINO cannot": "set `engine: torch` on the `embedding_model` resource.",
    "int8 needs calibration": "use `precision: auto` or `fp32`, or give the dataset samples.",
    "no sample was embedded": "every sample failed to decode: fix the files; the earlier CSV is kept.",
    "truncated": "the copy is incomplete: copy the video again.",
}
