"""The thin Dagster layer: assets, checks, resources, sensors and jobs, each calling one domain package."""
