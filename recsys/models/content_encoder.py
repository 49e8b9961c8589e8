"""The content model's torch module: catalog features -> unit item vectors.

Imported only where the content model is trained or items are (re-)encoded, so serving a
bundle never loads torch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.content_vocab import PAD, ItemFeatures, ItemVocab


def tensors(features: ItemFeatures, rows: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
    """The four feature arrays as tensors, restricted to ``rows`` when given."""
    arrays = (features.category, features.brand, features.price_bin, features.tokens)
    if rows is not None:
        arrays = tuple(a[rows] for a in arrays)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


class ItemEncoder(nn.Module):
    """Category, brand, price-bin and mean word embeddings -> concat -> MLP -> unit vector."""

    def __init__(self, vocab: ItemVocab, *, dim: int = 64, hidden_dim: int = 128,
                 category_dim: int = 32, brand_dim: int = 16, price_dim: int = 8,
                 text_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.category = nn.Embedding(len(vocab.categories), category_dim)
        self.brand = nn.Embedding(len(vocab.brands), brand_dim)
        self.price = nn.Embedding(vocab.n_price_bins, price_dim)
        # padding_idx: pad entries are left out of the mean; an item with no known word gets 0
        self.words = nn.EmbeddingBag(len(vocab.words), text_dim, mode="mean", padding_idx=PAD)
        self.mlp = nn.Sequential(
            nn.Linear(category_dim + brand_dim + price_dim + text_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
        )

    def forward(self, category: torch.Tensor, brand: torch.Tensor, price_bin: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.category(category), self.brand(brand), self.price(price_bin),
                       self.words(tokens)], dim=1)
        return F.normalize(self.mlp(x), dim=1)

    @torch.no_grad()
    def embed(self, features: ItemFeatures, batch_size: int = 8192) -> np.ndarray:
        """Eval-mode embeddings of all items as float32 C-contiguous numpy (n_items x dim)."""
        was_training = self.training
        self.eval()
        out = [self(*tensors(features, np.arange(s, min(s + batch_size, len(features)))))
               for s in range(0, len(features), batch_size)]
        self.train(was_training)
        return np.ascontiguousarray(torch.cat(out).numpy(), dtype=np.float32)
