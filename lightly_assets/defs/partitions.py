"""One dynamic partition per dataset folder under the data root."""

from dagster import DynamicPartitionsDefinition

DATASETS = "datasets"  # the partitions' name, which the instance's dynamic-partition calls take
datasets_partitions = DynamicPartitionsDefinition(name=DATASETS)
