"""Spark settings and the session they build.

Defaults are for one machine of 2 cores and 24 GiB shared with other jobs (``local[2]``):

* ``driver_memory = "4g"``: in local mode the driver JVM also runs the executors, so this heap is
  all Spark gets. Aggregations spill to ``local_dir`` when it is full, so more heap buys speed,
  not correctness. With 4g the JVM's resident memory peaked at 4.7 GiB on 51.6M events
  (docs/scaling.md); the machine is shared, so the default leaves room for others.
* ``shuffle_partitions = 32`` instead of Spark's 200: 200 tasks of a few MB each cost more in
  scheduling than they compute on two cores; adaptive execution (on by default) coalesces the
  32 further when the data is small, and 32 keeps each task's hash map small at 50M events.
* the session time zone is UTC: every timestamp of the data contract is UTC, and day buckets
  (user-day baskets) must not depend on the machine's zone;
* ``spark.sql.legacy.parquet.nanosAsLong``: pandas writes nanosecond timestamps, which Spark
  refuses to read as timestamps; read as longs, :mod:`.read` turns them into microseconds;
* scratch Parquet is not compressed (Parquet's dictionary and run-length encodings still apply):
  without Hadoop's native libraries (the PyPI build has none) Snappy and LZ4 run in Java, and
  writing 10M parsed events took 34 s with them against 12-13 s uncompressed or with zstd; zstd
  then cost native memory outside the heap (the JVM peaked at 7.05 GiB on 51.6M events against
  4.73 GiB uncompressed, at the same CPU time). Disk is the cheap resource here;
* no off-heap memory: it would add memory outside the heap that nothing here needs (no caching),
  and keeps "the JVM's RSS" the one number to watch;
* Arrow for results sent to Python (``toArrow``), no Python workers: every step is a DataFrame
  expression that runs in the JVM.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import Field

from recsys.configfile import StrictModel
from recsys.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

INSTALL_HINT = "pip install -e '.[spark]' (PySpark; needs Java 17 or 21 on the PATH)"


class SparkSettings(StrictModel):
    """How to reach Spark; an unknown key is an error."""

    # local[N] runs everything in one JVM with N task threads; spark://host:7077, yarn or
    # k8s://... reach a cluster (then scratch_dir must be on storage every executor can reach)
    master: str = "local[2]"
    app_name: str = "recsys-prepare"
    driver_memory: str = Field("4g", pattern=r"^\d+[kmgt]$")
    shuffle_partitions: int = Field(32, ge=1)
    # where Spark spills shuffle data (None = Spark's default, the system temp directory)
    local_dir: str | None = None
    # any other spark.* setting, e.g. {"spark.executor.memory" = "8g"} for a cluster
    conf: dict[str, str] = Field(default_factory=dict)

    def model_post_init(self, __context: object) -> None:
        bad = [k for k in self.conf if not k.startswith("spark.")]
        if bad:
            raise ConfigError(f"spark.conf: key(s) {bad} (expected Spark settings, 'spark.*')")

    def spark_conf(self) -> dict[str, str]:
        conf = {
            "spark.driver.memory": self.driver_memory,
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.legacy.parquet.nanosAsLong": "true",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.parquet.compression.codec": "none",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        }
        if self.local_dir:
            conf["spark.local.dir"] = self.local_dir
        if self.master.startswith("local"):
            conf["spark.driver.host"] = "127.0.0.1"
            conf["spark.driver.bindAddress"] = "127.0.0.1"
        conf.update(self.conf)
        return conf


def require_pyspark() -> None:
    """Fail with the install command when PySpark is missing (instead of an ImportError)."""
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError(f"the Spark engine needs PySpark, which is not installed: "
                          f"{INSTALL_HINT}")


def spark_session(settings: SparkSettings | None = None) -> SparkSession:
    """Get or create the session. Settings that size the JVM (driver memory) only take effect
    when this call starts it; an already running session is returned as it is."""
    require_pyspark()
    from pyspark.sql import SparkSession

    settings = settings or SparkSettings()
    if settings.master.startswith("local"):
        # one machine: keep the driver on loopback instead of the first network interface
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder: Any = SparkSession.builder.master(settings.master).appName(settings.app_name)
    for key, value in settings.spark_conf().items():
        builder = builder.config(key, value)
    with quiet_pandas_check():      # getOrCreate imports pyspark.testing, which checks pandas
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def quiet_pandas_check() -> Iterator[None]:
    """PySpark 4.3 warns that pandas 3 is "not yet fully supported" whenever it checks the
    pandas version, even for Arrow-only calls that use no pandas; silence that one warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                                category=FutureWarning)
        yield


def to_arrow(frame: DataFrame) -> pa.Table:
    """Collect a (small) result to the driver as an Arrow table."""
    with quiet_pandas_check():
        return frame.toArrow()


def from_arrow(spark: SparkSession, table: pa.Table) -> DataFrame:
    """A Spark table from an Arrow table built on the driver (id maps, the catalog's ids)."""
    with quiet_pandas_check():
        return spark.createDataFrame(table)
