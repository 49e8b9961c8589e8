"""Turn a validated dataset and its split into :class:`~recsys.models.base.TrainingData`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.data.idmap import IdMap
from recsys.data.interactions import InteractionConfig, build_matrix
from recsys.models.base import TrainingData


def prepare_training(train_events: pd.DataFrame, items: pd.DataFrame,
                     config: InteractionConfig | None = None) -> TrainingData:
    """Users = those with a train event; items = the whole catalog (cold items included, so the
    content model can embed them). ``reference_time`` is the last train event."""
    item_map = IdMap(items[C.ITEM_ID].astype(str).to_numpy())
    user_map = IdMap.from_values(train_events[C.USER_ID])
    reference_time = train_events[C.TIMESTAMP].max()
    matrix = build_matrix(train_events, user_map, item_map, config, reference_time)
    events = train_events.copy()
    events["user_idx"] = user_map.to_internal(events[C.USER_ID], missing="minus_one")
    events["item_idx"] = item_map.to_internal(events[C.ITEM_ID], missing="minus_one")
    events = events[(events["user_idx"] >= 0) & (events["item_idx"] >= 0)].reset_index(drop=True)
    item_table = items.reset_index(drop=True)
    assert np.array_equal(item_table[C.ITEM_ID].astype(str).to_numpy(), item_map.external_ids)
    return TrainingData(matrix, user_map, item_map, events, item_table,
                        pd.Timestamp(reference_time))
