"""Publishing a dataset with its embeddings: LightlyStudio (default) or a bucket datasource."""
