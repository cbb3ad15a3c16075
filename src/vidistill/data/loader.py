"""The DataLoader of the streaming dataset: it passes the trainer's epoch to the dataset and keeps
a resumable position in it (Lightning's stateful-loader protocol, ``state_dict`` /
``load_state_dict``).

Lightning saves a training loader's ``state_dict()`` in every checkpoint (the fit loop's
``combined_loader`` entry) and hands it to ``load_state_dict()`` when a run resumes, before the
loader's first iterator is made. The position is, for every rank, the number of batches each of
its readers (DataLoader workers) delivered that the training loop has consumed. Batches name
their reader (:data:`vidistill.data.datasets.READER_KEY`, removed here before the trainer sees
them), so the count is exact whatever order the DataLoader hands workers' batches out in; and it
counts what the trainer consumed, not what the DataLoader prefetched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from vidistill.data.datasets import READER_KEY, YT8MDataset

log = logging.getLogger(__name__)


@dataclass
class Position:
    """Where a rank's pass over an epoch stands: ``batches`` each reader delivered (by reader),
    and the reader whose batch comes next in the DataLoader's round-robin (it cycles through
    the workers in order, skipping those that have finished)."""

    batches: list[int]
    next_reader: int = 0

    @classmethod
    def start(cls, readers: int) -> Position:
        return cls([0] * readers)


@dataclass
class _Pass:
    """One iterator's pass over an epoch: the position it started from and the reader of every
    batch it delivered since, in order."""

    epoch: int
    start: Position
    readers: list[int] = field(default_factory=list)

    def position(self, consumed: int | None) -> Position:
        """The position after the first ``consumed`` batches of the epoch (None: all this pass
        delivered)."""
        delivered = len(self.readers)
        taken = delivered if consumed is None else consumed - sum(self.start.batches)
        if not 0 <= taken <= delivered:
            log.warning(
                "the trainer counts %s batches of epoch %d, this loader delivered %d after %d: "
                "saving the position of what it delivered",
                consumed,
                self.epoch,
                delivered,
                sum(self.start.batches),
            )
            taken = min(max(taken, 0), delivered)
        batches = list(self.start.batches)
        for reader in self.readers[:taken]:
            batches[reader] += 1
        if not taken:
            return Position(batches, self.start.next_reader)
        return Position(batches, (self.readers[taken - 1] + 1) % len(batches))


class EpochLoader(DataLoader):
    """A DataLoader of a :class:`YT8MDataset` (``batch_size=None``: the dataset batches) that
    tells the dataset the trainer's epoch before each pass, so shuffling and random frames change
    every epoch and a resumed run repeats the epoch it was interrupted in, and keeps its position
    in the epoch for checkpoints.

    Args:
        dataset: the streaming dataset; its batches get tagged with their reader.
        epoch: the epoch the next pass reads (Lightning's finished training passes).
        seed: seeds the loader's own random generator. Creating an iterator draws a worker base
            seed, and drawing it from the global stream would shift every later dropout draw by
            one, differently in a resumed run (which creates the iterator at another moment)
            than in an uninterrupted one.
        consumed: batches of the current epoch the training loop has consumed; None counts the
            batches this loader delivered (a consumer that prefetches nothing).

    Guarantee: a loader given the ``state_dict()`` taken after the trainer consumed ``n``
    batches of epoch ``e`` delivers, in its next pass over epoch ``e``, exactly the batches the
    uninterrupted pass would have delivered after those ``n``, in the same order, provided the
    dataset and its layout (files, ranks, workers, batch size) are the same. A pass over another
    epoch starts at that epoch's beginning. With another layout the position cannot be carried
    over: a warning says so and the epoch is read from its start.
    """

    def __init__(
        self,
        dataset: YT8MDataset,
        epoch: Callable[[], int],
        seed: int,
        consumed: Callable[[], int] | None = None,
        **kwargs: Any,
    ):
        generator = torch.Generator().manual_seed(seed)
        super().__init__(dataset, batch_size=None, generator=generator, **kwargs)
        dataset.tag_batches = True
        if self.persistent_workers:  # workers that outlive a pass read the next pass's state
            dataset.share_pass_state()
        self._epoch = epoch
        self._consumed = consumed
        self._pass: _Pass | None = None
        self._loaded: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[dict]:
        epoch = self._epoch()
        start = self._resume_position(epoch) or Position.start(self.dataset.readers)
        self.dataset.set_epoch(epoch, resume=start.batches, first_reader=start.next_reader)
        self._pass = _Pass(epoch, start)
        return _untagged(super().__iter__(), self._pass.readers)

    # -- Lightning's stateful-loader protocol --------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "ranks", "layout"}``: ``ranks`` holds each rank's :class:`Position` as a
        dict. Under DDP every rank calls it (Lightning dumps a checkpoint on every rank) and the
        ranks' positions are gathered, since only the global zero writes the checkpoint."""
        if self._pass is None:  # nothing read yet: the position is the one loaded, if any
            return dict(self._loaded or {})
        consumed = self._consumed() if self._consumed is not None else None
        position = asdict(self._pass.position(consumed))
        return {
            "epoch": self._pass.epoch,
            "ranks": from_every_rank(position),
            "layout": self._layout(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the position for the next pass over its epoch."""
        self._loaded = dict(state_dict) if state_dict else None

    def _layout(self) -> dict[str, int]:
        """What must be equal for a position to mean the same records."""
        dataset = self.dataset
        _, world = dataset.placement()
        return {
            "world_size": world,
            "readers": dataset.readers,
            "batch_size": dataset.batch_size,
            "drop_last": int(dataset.drop_last),
            "records": int(sum(dataset.counts)),
        }

    def _resume_position(self, epoch: int) -> Position | None:
        """This rank's loaded position if it belongs to ``epoch``'s pass (then it is used up)."""
        loaded, self._loaded = self._loaded, None
        if not loaded or loaded.get("epoch") != epoch:
            return None
        if loaded.get("layout") != self._layout():
            log.warning(
                "the checkpoint's position in epoch %d was saved with another data layout (%s, "
                "now %s): the epoch is read from its start, so some of its batches are trained "
                "again",
                epoch,
                loaded.get("layout"),
                self._layout(),
            )
            return None
        rank, _ = self.dataset.placement()
        return Position(**loaded["ranks"][rank])


def _untagged(batches: Iterator[dict], readers: list[int]) -> Iterator[dict]:
    """The batches without their reader tag, which is appended to ``readers``."""
    for batch in batches:
        readers.append(int(batch.pop(READER_KEY)))
        yield batch


def from_every_rank(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), by rank; ``[value]`` outside DDP. A collective: under
    DDP every rank must call it, as every rank dumps a checkpoint."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values
