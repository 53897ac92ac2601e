"""Images and video frames to vectors: `factory.create_embedder` makes an `Embedder`; `pipeline.embed_samples`
runs it over a dataset."""
