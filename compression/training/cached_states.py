"""The teacher's cached states as training targets: first-token states in memory, or every token's states read
from a memory-mapped cache, per batch.

Both standardise per (layer, dimension): MPNet's hidden channels have outliers 35-500x their median, which would
dominate a plain MSE. Row ``r`` of the training split owns cached row ``r`` (the ``row`` column of
:func:`~compression.training.distill.tokenize`); parts (the data's texts, augmented texts, transfer texts) follow
each other in the order the training split concatenates them.
"""

from __future__ import annotations

import numpy as np
import torch

from compression.core.errors import LabError

SAMPLE_TOKENS = 20_000  # tokens the per-dimension mean and spread are estimated on (x layers x 1.5 KB in memory)


def _layer_index(cached_layers, layer_map) -> list[int]:
    missing = [layer for layer in layer_map if layer not in cached_layers]
    if missing:
        raise LabError(f"teacher layers {missing} are not in the cached states (layers {list(cached_layers)})")
    return [list(cached_layers).index(k) for k in layer_map]


def _moments(sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(layer, dimension) mean and spread of ``sample`` (N, layers, hidden), in float32 chunks."""
    chunks = sample.split(4096)
    mean = sum(c.float().sum(0) for c in chunks) / len(sample)
    variance = sum(((c.float() - mean) ** 2).sum(0) for c in chunks) / len(sample)
    return mean, variance.sqrt().clamp_min(1e-4)


class CachedStates:
    """The teacher's first-token states for every training text at the teacher layers one student matches."""

    positions = "first"

    def __init__(self, states: np.ndarray, cached_layers: list[int], layer_map: list[int]):
        self.layer_map = list(layer_map)
        self.values = torch.from_numpy(np.ascontiguousarray(states[:, _layer_index(cached_layers, layer_map)]))
        self.mean, self.std = _moments(self.values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def width(self) -> int:
        return self.values.shape[-1]

    @property
    def megabytes(self) -> float:
        return self.values.numel() * 2 / 1e6

    def targets(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, layers, hidden) float32 standardised states of the given training rows."""
        return (self.values[rows.cpu()].float() - self.mean) / self.std


class CachedTokenStates:
    """Every token's teacher states for every training text (memory-mapped parts, see
    :class:`~compression.training.teacher_targets.TokenStates`). Texts the two tokenizers cut differently
    (``mismatched`` rows) are matched at their first token only: their later positions need not agree."""

    positions = "tokens"

    def __init__(self, parts: list, layer_map: list[int], mismatched: tuple[int, ...] = ()):
        self.parts, self.layer_map = parts, list(layer_map)
        self.index = [_layer_index(part.layers, layer_map) for part in parts]
        self.starts = np.cumsum([0] + [len(part) for part in parts])
        self.mismatched = frozenset(mismatched)
        step = max(1, sum(int(part.offsets[-1]) for part in parts) // SAMPLE_TOKENS)  # evenly spaced tokens
        sample = np.concatenate([np.asarray(part.values[::step])[:, index] for part, index in zip(parts, self.index)])
        self.mean, self.std = _moments(torch.from_numpy(sample))

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def width(self) -> int:
        return self.parts[0].values.shape[-1]

    @property
    def megabytes(self) -> float:
        return sum(part.values.size for part in self.parts) * 2 / 1e6

    def targets(self, rows: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, layers, length, hidden) float32 standardised states of the given training rows, and a (B, length)
        mask of the positions that hold one (a text's own tokens; only the first for a mismatched text)."""
        out = torch.zeros(len(rows), len(self.layer_map), length, self.width)
        mask = torch.zeros(len(rows), length)
        for b, row in enumerate(rows.tolist()):
            p = int(np.searchsorted(self.starts, row, side="right")) - 1
            states = self.parts[p].rows(row - int(self.starts[p]))[:length]
            if row in self.mismatched:
                states = states[:1]
            values = torch.from_numpy(np.asarray(states[:, self.index[p]], dtype=np.float32))  # (n, layers, H)
            out[b, :, :len(values)] = ((values - self.mean) / self.std).transpose(0, 1)
            mask[b, :len(values)] = 1
        return out, mask
