"""Shards behind fsspec URLs (a real local HTTP server, the memory filesystem, file://) and
gzip-compressed shards: the same records, plans, checksums and errors as local files."""

from __future__ import annotations

import gzip
import importlib.util
import shutil
import struct
from pathlib import Path

import fsspec
import pytest
from torch.utils.data import DataLoader

from rangeserver import HttpServer
from vidistill.data import YT8MDataset
from vidistill.data.datamodule import read_vocabulary
from vidistill.data.framing import CorruptRecordError, iter_payloads, masked_crc32c, scan_offsets
from vidistill.data.sharding import expand_files, record_offsets
from vidistill.data.shards import BLOCK_SIZE, filesystem


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    http = HttpServer(root, tmp_path / "requests.log")
    yield http
    http.stop()


def ids(dataset: YT8MDataset) -> list[str]:
    return [video for batch in dataset for video in batch["ids"]]


def worker_ids(files) -> list[str]:
    """The ids a training epoch read by 2 DataLoader worker processes delivers."""
    dataset = YT8MDataset(files, 10, batch_size=4, train=True, num_workers=2)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    return [video for batch in loader for video in batch["ids"]]


def consumer_ids(files, **kwargs) -> list[list[str]]:
    """The ids each of 2 ranks x 1 reader reads (evaluation: every record once)."""
    return [
        ids(YT8MDataset(files, 10, batch_size=4, rank=rank, world_size=2, **kwargs))
        for rank in range(2)
    ]


def test_http_shards_are_read_like_local_files(shards, server):
    directory, videos = shards
    shutil.copytree(directory, server.root / "frame")
    local = sorted(str(p) for p in directory.glob("*.tfrecord"))
    urls = [f"{server.url}/frame/{Path(p).name}" for p in local]
    assert expand_files(urls) == urls
    remote = consumer_ids(urls)
    assert remote == consumer_ids(local)
    assert sorted(remote[0] + remote[1]) == sorted(videos)
    assert sorted(worker_ids(urls)) == sorted(videos)  # fsspec in forked worker processes
    # Records come in large sequential blocks: the whole shard in one request, not one per record.
    for url in urls:
        fetched = server.requests(Path(url).name)
        assert 1 <= len(fetched) <= 5  # the index, then each of 2 ranks and 2 workers' share
        assert all(stop - start <= BLOCK_SIZE for start, stop in fetched)


def test_vocabulary_from_a_url(server):
    (server.root / "vocabulary.csv").write_text("Index,TrainVideoCount,Name\n0,5,a\n2,3,c\n")
    assert list(read_vocabulary(f"{server.url}/vocabulary.csv")) == [5, 0, 3]


def test_http_has_no_glob_and_missing_urls_are_named(server):
    with pytest.raises(ValueError, match="HTTP cannot list files"):
        expand_files(f"{server.url}/frame/train*.tfrecord")
    with pytest.raises(FileNotFoundError, match="no TFRecord files match.*nothing.tfrecord"):
        expand_files(f"{server.url}/nothing.tfrecord")


def test_url_index_is_cached_until_size_or_etag_changes(shards, server, tmp_path):
    directory, _ = shards
    shard = server.root / "train0000.tfrecord"
    shutil.copy(directory / "train0000.tfrecord", shard)
    url = f"{server.url}/train0000.tfrecord"
    cache = tmp_path / "index"
    offsets, _ = record_offsets(url, cache)
    assert len(offsets) == 7 and len(list(cache.glob("*.npy"))) == 1
    before = len(server.requests("train0000.tfrecord"))
    assert list(record_offsets(url, cache)[0]) == list(offsets)
    assert len(server.requests("train0000.tfrecord")) == before  # served from the cache
    shutil.copy(directory / "train0001.tfrecord", shard)  # a new object at the same URL
    assert list(record_offsets(url, cache)[0]) == list(scan_offsets(str(shard))[0])
    assert len(list(cache.glob("*.npy"))) == 2


def test_corrupt_remote_record_names_the_url(shards, server):
    directory, _ = shards
    data = bytearray((directory / "train0001.tfrecord").read_bytes())
    offsets, _ = scan_offsets(str(directory / "train0001.tfrecord"))
    data[int(offsets[3]) + 20] ^= 0xFF  # inside record 3's payload
    (server.root / "bad.tfrecord").write_bytes(bytes(data))
    url = f"{server.url}/bad.tfrecord"
    with pytest.raises(CorruptRecordError, match=rf"{url}: record 3 .*payload checksum"):
        ids(YT8MDataset(url, 10))
    skipped = ids(YT8MDataset(url, 10, on_corrupt="skip"))
    assert len(skipped) == 6


def test_training_streams_http_shards(server, tmp_path):
    """train.py with ``data.train_files`` naming shards on the HTTP server."""
    from hydra_helpers import compose_config
    from vidistill.runs import build_datamodule, train

    directory = build_datamodule(compose_config(tmp_path, [], run="generate")).directory
    shutil.copytree(directory / "frame", server.root / "frame")
    urls = ",".join(f"'{server.url}/frame/train{i:04d}.tfrecord'" for i in range(2))
    cfg = compose_config(
        tmp_path,
        [
            f"data.train_files=[{urls}]",
            "model.backbone.clusters=4",
            "model.backbone.hidden_size=16",
            "trainer.max_epochs=1",
            "test=false",
        ],
    )
    train(cfg)
    fetched = server.requests("train0000.tfrecord") + server.requests("train0001.tfrecord")
    assert fetched and (tmp_path / "run" / "metrics.json").exists()


def test_memory_filesystem_globs(shards):
    directory, videos = shards
    fs = fsspec.filesystem("memory")
    for path in directory.glob("*.tfrecord"):
        fs.pipe(f"/vidistill-test/frame/{path.name}", path.read_bytes())
    try:
        files = expand_files("memory://vidistill-test/frame/train*.tfrecord")
        assert [Path(f).name for f in files] == [f"train000{i}.tfrecord" for i in range(3)]
        assert all(f.startswith("memory://") for f in files)
        local = sorted(str(p) for p in directory.glob("*.tfrecord"))
        assert consumer_ids(files) == consumer_ids(local)
    finally:
        fs.rm("/vidistill-test", recursive=True)


def test_file_urls_are_local_paths(shards):
    directory, _ = shards
    files = expand_files(f"file://{directory}/train*.tfrecord")
    assert files == sorted(str(p) for p in directory.glob("*.tfrecord"))


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed")
def test_a_missing_protocol_package_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install 'vidistill\[gcs\]'"):
        filesystem("gs://bucket/frame/train0000.tfrecord")
    with pytest.raises(ImportError, match=r"vidistill\[gcs\]"):
        expand_files("gs://bucket/frame/train*.tfrecord")


# -- gzip ------------------------------------------------------------------------------------


def gzip_shards(directory: Path, target: Path, suffix: str = ".tfrecord.gz") -> list[str]:
    """Every shard of ``directory`` gzip-compressed into ``target`` (the bytes TensorFlow's
    ``TFRecordOptions(compression_type="GZIP")`` writes: a gzip stream of the framed records)."""
    target.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sorted(directory.glob("*.tfrecord")):
        compressed = target / (path.stem + suffix)
        compressed.write_bytes(gzip.compress(path.read_bytes()))
        out.append(str(compressed))
    return out


def test_gzip_shards_read_the_same_records(shards, tmp_path):
    directory, videos = shards
    local = sorted(str(p) for p in directory.glob("*.tfrecord"))
    gz = gzip_shards(directory, tmp_path / "gz")
    assert expand_files(str(tmp_path / "gz" / "*.gz")) == gz
    assert consumer_ids(gz) == consumer_ids(local)
    # Offsets are positions in the decompressed stream: those of the uncompressed shard.
    assert list(record_offsets(gz[1])[0]) == list(scan_offsets(local[1])[0])
    # Any name, with data.compression=gzip; the index is cached apart from an uncompressed read.
    named = gzip_shards(directory, tmp_path / "named", suffix=".tfrecord")
    assert consumer_ids(named, compression="gzip") == consumer_ids(local)
    with pytest.raises(CorruptRecordError, match="length checksum mismatch"):
        YT8MDataset(named, 10)
    assert sorted(worker_ids(gz)) == sorted(videos)


def test_gzip_errors_match_uncompressed_ones(shards, tmp_path):
    directory, _ = shards
    data = bytearray((directory / "train0001.tfrecord").read_bytes())
    offsets, _ = scan_offsets(str(directory / "train0001.tfrecord"))
    data[int(offsets[3]) + 20] ^= 0xFF
    bad = tmp_path / "bad.tfrecord.gz"
    bad.write_bytes(gzip.compress(bytes(data)))
    message = rf"{bad}: record 3 \(byte offset {offsets[3]}\): payload checksum mismatch"
    with pytest.raises(CorruptRecordError, match=message):
        list(iter_payloads(str(bad)))
    # A shard cut inside record 5, and a gzip stream cut short.
    truncated = tmp_path / "truncated.tfrecord.gz"
    truncated.write_bytes(gzip.compress(bytes(data[: int(offsets[5]) + 30])))
    found, error = scan_offsets(str(truncated))
    assert len(found) == 5 and "record 5" in str(error) and "truncated" in str(error)
    # A length whose checksum holds but runs far past the stream: no huge allocation.
    huge = struct.pack("<Q", 2**40)
    (tmp_path / "huge.gz").write_bytes(
        gzip.compress(huge + struct.pack("<I", masked_crc32c(huge)) + b"abc")
    )
    with pytest.raises(CorruptRecordError, match="record of 1099511627776 bytes runs past"):
        list(iter_payloads(str(tmp_path / "huge.gz")))
    cut = tmp_path / "cut.tfrecord.gz"
    cut.write_bytes(gzip.compress(bytes(data))[:-100])
    with pytest.raises(CorruptRecordError, match=rf"{cut}: record \d+ .*broken gzip stream"):
        YT8MDataset(str(cut), 10)


def test_gzip_shards_over_http(shards, server, tmp_path):
    directory, _ = shards
    gz = gzip_shards(directory, server.root)
    urls = [f"{server.url}/{Path(p).name}" for p in gz]
    local = sorted(str(p) for p in directory.glob("*.tfrecord"))
    assert consumer_ids(urls) == consumer_ids(local)
