"""The LightningDataModule: vocabulary checks, loaders, epoch plumbing, dequantization."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from vidistill.data.datamodule import YT8MDataModule, read_vocabulary_size


def write_vocabulary(path, num_classes):
    rows = [
        "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription"
    ]
    rows += [
        f'{i},{100 - i},/m/{i},"class {i}",,Arts,,,"a class, quoted"' for i in range(num_classes)
    ]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_vocabulary_sets_and_checks_num_classes(shards, tmp_path):
    directory, _ = shards
    vocabulary = write_vocabulary(tmp_path / "vocabulary.csv", 10)
    assert read_vocabulary_size(vocabulary) == 10
    assert (
        YT8MDataModule(train_files=str(directory / "*.tfrecord"), vocabulary=vocabulary).num_classes
        == 10
    )
    with pytest.raises(ValueError, match="num_classes=12 does not match the 10 classes"):
        _ = YT8MDataModule(vocabulary=vocabulary, num_classes=12).num_classes
    with pytest.raises(ValueError, match="needs num_classes or a vocabulary"):
        _ = YT8MDataModule().num_classes
    (tmp_path / "bad.csv").write_text("Name\nfoo\n")
    with pytest.raises(ValueError, match="bad.csv: not a YT8M vocabulary"):
        read_vocabulary_size(tmp_path / "bad.csv")


def test_loaders_follow_the_trainer_epoch_and_dequantize(shards):
    directory, videos = shards
    datamodule = YT8MDataModule(
        train_files=str(directory / "train000[01].tfrecord"),
        val_files=str(directory / "train0002.tfrecord"),
        num_classes=10,
        batch_size=4,
        num_workers=0,
    )
    progress = SimpleNamespace(processed=0)  # Lightning's count of finished training passes
    fit_loop = SimpleNamespace(epoch_progress=SimpleNamespace(current=progress))
    datamodule.trainer = SimpleNamespace(fit_loop=fit_loop, global_rank=0, world_size=1)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    epoch0 = [i for batch in loader for i in batch["ids"]]
    progress.processed = 1
    epoch1 = [i for batch in loader for i in batch["ids"]]
    assert sorted(epoch0) == sorted(epoch1) and epoch0 != epoch1 and len(epoch0) == 14
    assert len(loader) == 4
    val_ids = [i for batch in datamodule.val_dataloader() for i in batch["ids"]]
    assert val_ids == sorted(v for v in videos if v.startswith("v02"))
    batch = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    assert batch["frames"].dtype == torch.float32
    assert torch.all(batch["frames"][~batch["mask"]] == 0)


def test_missing_split_is_a_clear_error(shards):
    directory, _ = shards
    datamodule = YT8MDataModule(
        train_files=str(directory / "*.tfrecord"), num_classes=10, num_workers=0
    )
    with pytest.raises(ValueError, match="no test files configured"):
        datamodule.test_dataloader()
