"""The training stream's shuffle buffer, and where it stands after a number of outputs.

A reader's records form one sequence of *positions* ``0 .. total - 1`` (its ranges of
:func:`vidistill.data.sharding.plan_ranges` concatenated). The shuffle's output order depends only
on its random generator and on how many items arrive, never on their content, so the state after
any number of outputs can be computed from positions alone (:func:`advance_shuffle`): a resumed
reader then decodes only the records the buffer still held and those after it, never one that was
already delivered.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

# (file index, first record, end record) ranges of one reader, as plan_ranges gives them.
Ranges = Sequence[tuple[int, int, int]]


def shuffled(
    items: Iterable, size: int, rng: np.random.Generator, buffer: list | None = None
) -> Iterator:
    """Bounded shuffle: keep ``size`` items, emit a random one for each new arrival, then the
    rest in random order.

    ``buffer`` continues a shuffle stopped part-way: the items it held (in slot order, as
    :func:`advance_shuffle` gives them), with ``rng`` in the state it had then and ``items`` the
    arrivals not yet taken."""
    buffer = [] if buffer is None else buffer
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


@dataclass(frozen=True)
class ShuffleState:
    """Where :func:`shuffled` over ``range(total)`` stands after some outputs.

    ``held``: the positions still to come from the buffer. While streaming (``draining`` False)
    they are the buffer's slots in order and ``next_position`` is the first position not yet
    taken in: continue with ``shuffled(positions from next_position, size, rng, held)``. Once
    draining, every position was taken in and ``held`` is the rest of the output, in order."""

    held: list[int]
    next_position: int
    draining: bool


def advance_shuffle(total: int, size: int, rng: np.random.Generator, skip: int) -> ShuffleState:
    """Run :func:`shuffled` over ``range(total)`` for ``skip`` outputs without producing them.

    Draws from ``rng`` exactly what ``shuffled`` draws for those outputs, leaving it in the
    state the continuation needs. Costs one random draw per output skipped; reads nothing."""
    filled = min(total, size)
    buffer = list(range(filled))
    streamed = max(total - size, 0)  # outputs made while arrivals still come
    for step in range(min(skip, streamed)):
        buffer[int(rng.integers(size))] = size + step
    if skip <= streamed:
        return ShuffleState(buffer, filled + skip, draining=False)
    rng.shuffle(buffer)
    return ShuffleState(buffer[skip - streamed :], total, draining=True)


def slice_ranges(ranges: Ranges, start: int, stop: int) -> list[tuple[int, int, int]]:
    """The ``(file, first, end)`` ranges holding positions ``start .. stop - 1`` of ``ranges``."""
    sliced = []
    position = 0
    for file_index, lo, hi in ranges:
        first, last = max(start, position), min(stop, position + hi - lo)
        if first < last:
            sliced.append((file_index, lo + first - position, lo + last - position))
        position += hi - lo
    return sliced


def runs(positions: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted positions as ``(start, stop)`` runs of consecutive ones."""
    ordered = sorted(positions)
    found = []
    for _, group in itertools.groupby(enumerate(ordered), key=lambda pair: pair[1] - pair[0]):
        members = [position for _, position in group]
        found.append((members[0], members[-1] + 1))
    return found


def ranges_of(ranges: Ranges, positions: Iterable[int]) -> list[tuple[int, int, int]]:
    """The ``(file, first, end)`` ranges holding exactly ``positions`` (any order), in position
    order: consecutive positions share one range, so they are read sequentially."""
    return [part for lo, hi in runs(positions) for part in slice_ranges(ranges, lo, hi)]


def position_count(ranges: Ranges) -> int:
    """How many records ``ranges`` hold."""
    return sum(hi - lo for _, lo, hi in ranges)
