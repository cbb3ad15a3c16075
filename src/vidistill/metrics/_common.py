"""Helpers that the video-level metrics, the segment metric and the bootstrap all use.

* input handling: array-likes to tensors, positive masks, argument and NaN checks;
* chunking: slices that keep the temporaries of a ``[length, width]`` scan bounded;
* ranking: the pessimistic tie rule (positives after everything they tie with);
* metric state: ``cat`` list states and the typed empty placeholders DDP needs.

Each fact lives here once so that the functional forms and the torchmetrics classes cannot drift
apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

ArrayLike = np.ndarray | Tensor


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def as_tensor(x: ArrayLike) -> Tensor:
    """A detached tensor view of ``x``; numpy input shares its memory when it can."""
    if isinstance(x, Tensor):
        return x.detach()
    # from_numpy shares memory but refuses negative strides; ascontiguousarray copies only then.
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x)))


def positive_mask(values: Tensor) -> Tensor:
    """Boolean mask (same shape) of the entries ``> 0``; a bool tensor is returned as it is."""
    return values if values.dtype == torch.bool else values > 0


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int``; ValueError unless it is an integer >= 1 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def reject_nan(values: Tensor, name: str) -> None:
    """ValueError ``"<name> contain NaN"`` if any entry of ``values`` is NaN."""
    if bool(torch.isnan(values).any()):
        raise ValueError(f"{name} contain NaN")


def zero_score(device: torch.device | str | None) -> Tensor:
    """The 0-d float64 zero every metric returns when there is nothing to score."""
    return torch.zeros((), dtype=torch.float64, device=device)


# --------------------------------------------------------------------------------------------
# Chunking and ranking
# --------------------------------------------------------------------------------------------


def chunk_slices(length: int, width: int, budget: int) -> Iterator[slice]:
    """Slices covering ``range(length)``, each of about ``budget // width`` items (at least one),
    so that a chunk of a ``[length, width]`` array holds about ``budget`` elements."""
    step = max(1, budget // max(width, 1))
    for start in range(0, length, step):
        yield slice(start, min(start + step, length))


def rank_order(scores: Tensor, positive: Tensor) -> Tensor:
    """Permutation ranking the last dimension by score descending, positives last among ties.

    Putting tied positives behind the negatives (and anything else) is the pessimistic reading
    of a tie. It depends only on the multiset of (score, positive) pairs of a row, never on the
    entries' positions, which is why batching and DDP sharding cannot change a metric.

    Args:
        scores: ``[..., M]`` float.
        positive: ``[..., M]`` bool.

    Returns:
        ``[..., M]`` int64 indices into the last dimension, best first.
    """
    # Negatives first by a stable sort on the flag, then a stable sort on score keeps that
    # order inside every group of equal scores.
    staged = torch.sort(positive.to(torch.uint8), dim=-1, stable=True).indices
    by_score = torch.sort(scores.gather(-1, staged), dim=-1, descending=True, stable=True).indices
    return staged.gather(-1, by_score)


# --------------------------------------------------------------------------------------------
# Metric state
# --------------------------------------------------------------------------------------------


def cat_state(state: list[Tensor] | Tensor) -> Tensor | None:
    """A ``cat`` list state as one tensor (it is already one after a DDP sync); None if empty."""
    if isinstance(state, list):
        return dim_zero_cat(state) if state else None
    return state


class CatStateMetric(Metric):
    """A non-differentiable, higher-is-better metric whose list states are gathered with ``cat``.

    Subclasses name their list states and dtypes in :meth:`_list_state_dtypes` (and the shape of
    an empty one in :meth:`_empty_state_shape` when rows are not scalars).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def _list_state_dtypes(self) -> dict[str, torch.dtype]:
        raise NotImplementedError

    def _empty_state_shape(self) -> tuple[int, ...]:
        return (0,)

    def _sync_dist(
        self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None
    ) -> None:
        # On a rank that saw no data a list state is empty, and torchmetrics gathers a 1-D tensor
        # of the metric's dtype in its place: all_gather then fails when the other ranks send
        # uint8/int32 states or 2-D ones. Typed empty tensors of the right shape avoid that.
        # sync() has already cached the real (empty) state, which unsync() restores.
        shape = self._empty_state_shape()
        for name, dtype in self._list_state_dtypes().items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.empty(shape, dtype=dtype, device=self.device)])
        super()._sync_dist(dist_sync_fn, process_group)
