"""One Spark session (local mode) for every Spark test: starting a JVM costs seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def spark_settings() -> Iterator[object]:
    pytest.importorskip("pyspark", reason="the Spark engine needs: pip install -e '.[spark]'")
    from recsys.data.spark.session import SparkSettings, spark_session

    # tiny tables: a few shuffle partitions instead of the 32 sized for 50M events
    settings = SparkSettings(shuffle_partitions=4)
    spark = spark_session(settings)   # started once here; prepare() finds it running
    yield settings
    spark.stop()
