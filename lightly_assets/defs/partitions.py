"""One dynamic partition per dataset folder under the data root."""

from dagster import DynamicPartitionsDefinition

datasets_partitions = DynamicPartitionsDefinition(name="datasets")
