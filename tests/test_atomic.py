"""Files appear only when complete: a writer that fails midway leaves the previous content and
no temporary file behind."""

from __future__ import annotations

import os

import pytest

from vidistill.atomic import TEMPORARY_PREFIX, atomic_path, atomic_write
from vidistill.data.framing import RecordWriter, iter_payloads
from vidistill.layout import read_record, write_record


def test_atomic_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write(path, "old")
    atomic_write(path, b"new bytes")
    assert path.read_bytes() == b"new bytes"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failure_while_writing_keeps_the_previous_file(tmp_path):
    path = tmp_path / "claims.csv"
    atomic_write(path, "complete,table\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as temporary:
        temporary.write_text("half of a")
        raise KeyboardInterrupt  # a Ctrl-C (or any exception) before the file is done
    assert path.read_text() == "complete,table\n"
    assert os.listdir(tmp_path) == ["claims.csv"]


def test_temporary_files_follow_the_umask_like_any_file(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "shared.json", "{}")
        open(tmp_path / "plain.json", "w").close()  # noqa: SIM115
    finally:
        os.umask(previous)
    mode = (tmp_path / "shared.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o644


def test_metrics_record_is_written_atomically(tmp_path):
    write_record(tmp_path, {"metrics": {"val/gap": 0.5}})
    assert read_record(tmp_path) == {"metrics": {"val/gap": 0.5}}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(TEMPORARY_PREFIX)]


def _payloads(path) -> list[bytes]:
    return [bytes(payload) for _, _, payload in iter_payloads(str(path))]


def test_a_record_writer_that_fails_leaves_no_shard(tmp_path):
    path = tmp_path / "train0000.tfrecord"
    with RecordWriter(str(path)) as writer:
        writer.write(b"first")
    with pytest.raises(RuntimeError), RecordWriter(str(path)) as writer:
        writer.write(b"replacement")
        assert _payloads(path) == [b"first"]  # not visible while being written
        raise RuntimeError("the generator failed")
    assert _payloads(path) == [b"first"]
    assert os.listdir(tmp_path) == ["train0000.tfrecord"]
