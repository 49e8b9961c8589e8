"""Event preparation on Apache Spark: the same validation and aggregates as the pandas path.

Install with ``pip install -e '.[spark]'`` (PySpark from PyPI; needs Java 17 or 21). Nothing here
imports pyspark at package import time, so ``import recsys`` never needs Java: the modules of this
package import it inside their functions.

* :mod:`.session`: settings (master URL, memory, partitions) and the session they build;
* :mod:`.read`: raw events with each row's position in the file, for error messages;
* :mod:`.validate`: the rules of :mod:`recsys.data.validate`, same report;
* :mod:`.aggregates`: the functions of :mod:`recsys.data.aggregates`, computed on Spark.
"""
