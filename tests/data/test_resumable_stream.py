"""Resuming the training stream mid-epoch: a loader given the position saved after n batches
delivers exactly the batches an uninterrupted pass delivers after those n, reading none of the
records delivered before (frame and video mode) and whatever the DataLoader's worker order."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from shardtools import random_video
from vidistill.data import FrameSelection, RecordWriter, YT8MDataset, encode_frame_example
from vidistill.data.loader import EpochLoader
from vidistill.data.records import RecordDecoder
from vidistill.data.shuffling import advance_shuffle, shuffled


@pytest.mark.parametrize("total", [0, 1, 5, 12, 40])
@pytest.mark.parametrize("size", [2, 8, 64])
def test_the_shuffle_continues_from_any_output(total, size):
    """advance_shuffle + shuffled(rest, buffer=held) is the uninterrupted shuffle after `skip`."""
    for skip in range(total + 2):
        whole = list(shuffled(range(total), size, np.random.default_rng([3, total, size])))
        rng = np.random.default_rng([3, total, size])
        state = advance_shuffle(total, size, rng, skip)
        if state.draining:
            rest = state.held
        else:
            rest = list(shuffled(range(state.next_position, total), size, rng, state.held))
        assert rest == whole[skip:], (total, size, skip)


def _dataset(files, **settings) -> YT8MDataset:
    options = {"num_classes": 10, "batch_size": 3, "train": True, "shuffle_buffer": 4}
    return YT8MDataset(files, **{**options, **settings})


def _loader(dataset: YT8MDataset, epoch: int = 1, consumed=None) -> EpochLoader:
    return EpochLoader(
        dataset, epoch=lambda: epoch, seed=0, consumed=consumed, num_workers=dataset.num_workers
    )


def _resumed_pass(make_dataset, stops: list[int]) -> list[dict]:
    """One epoch read by a chain of loaders, each stopped after the trainer consumed ``stops[i]``
    batches in all (the DataLoader has prefetched more by then), the next resuming from the
    state the previous one saved; the last reads to the end."""
    batches: list[dict] = []
    state = None
    for stop in [*stops, None]:
        loader = _loader(make_dataset(), consumed=lambda: len(batches))
        if state is not None:
            loader.load_state_dict(state)
        iterator = iter(loader)
        want = None if stop is None else stop - len(batches)
        for batch in itertools.islice(iterator, want):
            batches.append(batch)
        next(iterator, None)  # a prefetched batch the trainer never took
        state = loader.state_dict()
        del iterator
    return batches


def _same_batches(ours: list[dict], theirs: list[dict]) -> None:
    assert [b["ids"] for b in ours] == [b["ids"] for b in theirs]
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(mine[key], value), key


@pytest.mark.parametrize(("num_workers", "batch_size"), [(0, 3), (2, 3), (2, 5)])
def test_a_resumed_epoch_delivers_the_rest_of_the_uninterrupted_one(
    shards, num_workers, batch_size
):
    """Every stop point of an epoch of 21 records (2 workers: 10 and 11 records, so 4 + 4
    batches of <= 3, or 2 + 3 of <= 5: one worker finishes first), random frames and a teacher
    view included; two stops in one epoch too."""
    directory, _ = shards

    def make():
        return _dataset(
            str(directory / "*.tfrecord"),
            num_workers=num_workers,
            batch_size=batch_size,
            frames=FrameSelection(sampler="random", k=4, seed=5),
            teacher_frames=FrameSelection(seed=5),
        )

    whole = list(_loader(make()))
    assert len(whole) == len(make())
    for stop in range(len(whole) + 1):
        _same_batches(_resumed_pass(make, [stop]), whole)
    _same_batches(_resumed_pass(make, [2, 5]), whole)


def test_resuming_reads_none_of_the_records_already_delivered(shards, monkeypatch):
    """The resumed reader decodes only the records not yet delivered: those still held by the
    shuffle buffer and the ones after it, each once."""
    directory, _ = shards
    decoded: list[str] = []
    decode = RecordDecoder.decode_record

    def counting(self, path, index, offset, payload):
        record = decode(self, path, index, offset, payload)
        decoded.append(record.id)
        return record

    monkeypatch.setattr(RecordDecoder, "decode_record", counting)

    def make():
        return _dataset(str(directory / "*.tfrecord"), shuffle_buffer=6)

    whole = [video for batch in _loader(make()) for video in batch["ids"]]
    for stop in (1, 3, 5):
        state = _state_after(make, stop)
        decoded.clear()
        loader = _loader(make())
        loader.load_state_dict(state)
        rest = [video for batch in loader for video in batch["ids"]]
        assert rest == whole[3 * stop :]
        assert sorted(decoded) == sorted(rest)  # nothing delivered before is read again


def _state_after(make, batches: int) -> dict:
    loader = _loader(make(), consumed=lambda: batches)
    iterator = iter(loader)
    for _ in range(batches + 1):  # the trainer's prefetch
        next(iterator, None)
    return loader.state_dict()


def test_a_position_from_another_layout_or_epoch_restarts_the_epoch(shards, caplog):
    directory, _ = shards
    files = str(directory / "*.tfrecord")
    state = _state_after(lambda: _dataset(files, num_workers=2), 2)
    assert state["ranks"] == [{"batches": [1, 1], "next_reader": 0}] and state["epoch"] == 1
    whole = [b["ids"] for b in _loader(_dataset(files))]
    other = _loader(_dataset(files))
    other.load_state_dict(state)
    assert [b["ids"] for b in other] == whole
    assert "another data layout" in caplog.text
    later = _loader(_dataset(files, num_workers=2), epoch=2)
    later.load_state_dict(state)
    assert [b["ids"] for b in later] == [
        b["ids"] for b in _loader(_dataset(files, num_workers=2), 2)
    ]


def _write_segment_shard(path: Path, videos: int) -> None:
    rng = np.random.default_rng(4)
    with RecordWriter(str(path)) as writer:
        for v in range(videos):
            vid, labels, rgb, audio = random_video(rng, f"s{v:02d}", 30)
            starts = sorted(rng.choice([0, 5, 10, 15, 20, 25], size=1 + v % 3, replace=False))
            segments = {
                "segment_start_times": starts,
                "segment_end_times": [s + 5 for s in starts],
                "segment_labels": [int(rng.integers(10)) for _ in starts],
                "segment_scores": [float(rng.integers(2)) for _ in starts],
            }
            writer.write(encode_frame_example(vid, labels, rgb, audio, segments))


def test_segment_mode_resumes_by_reading_again(tmp_path):
    """Segments per record are known only once decoded: the stream is made again up to the
    position, and the batches after it are still exactly the uninterrupted ones."""
    _write_segment_shard(tmp_path / "seg.tfrecord", 12)

    def make():
        return _dataset(str(tmp_path / "seg.tfrecord"), mode="segment", num_workers=2)

    whole = list(_loader(make()))
    for stop in range(len(whole) + 1):
        _same_batches(_resumed_pass(make, [stop]), whole)
