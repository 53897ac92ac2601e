"""Embedding: the model and its weights, the decode-and-embed pipeline, the cache and the 2-D picture."""
