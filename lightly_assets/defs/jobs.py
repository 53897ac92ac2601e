"""The main job: the whole chain, with its checks, for one dataset partition."""

from dagster import AssetSelection, define_asset_job

from lightly_assets.defs.common import GROUP

lightly_assets_job = define_asset_job(
    "lightly_assets_job",
    selection=AssetSelection.groups(GROUP),
    description=(
        "Index, embed, write the Lightly CSV and publish one dataset; find duplicates, select a diverse subset and "
        "publish them beside it, with every asset check."
    ),
)

embedding_model_job = define_asset_job(
    "embedding_model_job",
    selection=AssetSelection.assets("embedding_model").upstream(),
    description="Index one dataset and train Lightly's SimCLR on it (embedding_model.ckpt); runs only on request.",
)
