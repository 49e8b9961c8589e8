"""Adjusting p-values when one readout tests many things.

A readout with 5 metrics per treatment has a ~23% chance that at least one raw p-value falls
under 0.05 when nothing differs; a segment table with 10 segments x 3 models x 2 metrics has
60 chances. Two adjustments, both from statsmodels' ``multipletests`` (maintained, checked
against the published procedures; no reason to write them again):

* **Holm** (family-wise error rate) for the metrics of an experiment readout: a launch decision
  reads "any significant metric", so the chance of any false positive is what to bound; with a
  handful of tests Holm costs little power and is uniformly better than Bonferroni;
* **Benjamini-Hochberg** (false discovery rate) for segment tables: dozens of cells are
  exploratory, and bounding the share of false discoveries among the flagged cells keeps power
  where Holm would flag almost nothing.

The raw p-value is always kept beside the adjusted one.

>>> adjust([0.01, 0.04, 0.03], "holm")
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from statsmodels.stats.multitest import multipletests

HOLM = "holm"
BH = "fdr_bh"
METHOD_NAMES = {HOLM: "Holm (family-wise error rate)", BH: "Benjamini-Hochberg (false "
                "discovery rate)"}


def adjust(p_values: Sequence[float | None], method: str) -> list[float | None]:
    """Adjusted p-values in the same order; ``None``/NaN entries (tests not run) stay ``None``
    and do not count towards the family."""
    raw = np.array([np.nan if p is None else float(p) for p in p_values], dtype=np.float64)
    ok = np.isfinite(raw)
    out: list[float | None] = [None] * len(raw)
    if ok.any():
        adjusted = multipletests(np.clip(raw[ok], 0.0, 1.0), method=method)[1]
        for i, value in zip(np.flatnonzero(ok), adjusted, strict=True):
            out[int(i)] = round(float(value), 15) if math.isfinite(value) else None
    return out
