"""Frame selection as one value: built once from the data config's flat keys, stored in
checkpoints (also read from checkpoints written before it existed), validated with clear errors,
and open to a new sampler with a setting of its own without touching the library."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
from hydra.utils import instantiate

from hydra_helpers import compose_config
from vidistill.data import FrameSelection, YT8MDataset
from vidistill.data.datamodule import YT8MDataModule
from vidistill.data.frames import config_keys, teacher_view
from vidistill.data.samplers import SAMPLERS, FrameSampler, build_sampler, video_rng
from vidistill.inference.predictor import frame_selection
from vidistill.lit.checkpoints import CHECKPOINT_KEY, run_config

BUILT_IN = list(SAMPLERS)


def test_the_command_line_keys_make_the_selection(tmp_path):
    cfg = compose_config(
        tmp_path, ["data.sampler=stride", "data.stride=5", "data.max_frames=80", "seed=1"]
    )
    selection = FrameSelection.from_config(cfg.data)
    assert selection == FrameSelection("stride", 30, 80, 1, {"stride": 5})  # k=30: the default
    assert selection.frames_per_video == 16  # frames 0, 5, ..., 75
    assert teacher_view(cfg.data) is None
    cfg = compose_config(tmp_path, ["data.sampler=uniform", "k=10", "data.teacher_sampler=all"])
    assert FrameSelection.from_config(cfg.data) == FrameSelection("uniform", 10)
    assert teacher_view(cfg.data) == FrameSelection("all")
    # Built once, by the data module Hydra instantiates from the same keys.
    datamodule = instantiate(cfg.data, _convert_="all")
    assert datamodule.frames == FrameSelection("uniform", 10)
    assert datamodule.teacher_frames == FrameSelection("all")
    assert FrameSelection.from_config({}) == FrameSelection()  # all of 300 frames, seed 0
    # A config that leaves max_frames and seed to a checkpoint (eval.py, localize.py) still
    # makes a data module, to resolve its files.
    assert FrameSelection.from_config({"max_frames": None, "seed": None}) == FrameSelection()


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_selection_picks_what_its_sampler_picks(name):
    settings = {"stride": 4} if name == "stride" else {}
    selection = FrameSelection.from_config({"sampler": name, "k": 7, "seed": 2, **settings})
    sampler = selection.build_sampler()
    for n in (3, 7, 50, 300):
        expected = build_sampler(name, 7, **settings)(n, video_rng(2, "v"))
        np.testing.assert_array_equal(sampler(n, video_rng(2, "v")), expected)


def test_a_selection_is_a_value():
    selection = FrameSelection("stride", 10, 120, 3, {"stride": 4})
    assert FrameSelection.from_dict(selection.to_dict()) == selection
    assert json.loads(json.dumps(selection.to_dict())) == {
        "sampler": "stride",
        "k": 10,
        "max_frames": 120,
        "seed": 3,
        "stride": 4,
    }
    assert pickle.loads(pickle.dumps(selection)) == selection
    assert len({selection, FrameSelection("stride", 10, 120, 3, [("stride", 4)])}) == 1
    assert selection != FrameSelection("stride", 10, 120, 3, {"stride": 5})
    with pytest.raises(dataclasses.FrozenInstanceError):
        selection.k = 3
    with pytest.raises(TypeError):
        selection.settings["stride"] = 5
    # k means nothing to all frames: selections of the same frames are equal.
    assert FrameSelection("all", k=30) == FrameSelection("all")
    assert FrameSelection("all", k=30).to_dict()["k"] is None


def test_old_checkpoints_frame_keys_are_read():
    """Version 1 checkpoints kept the frame selection flat in their ``data`` entry, with
    ``stride: None`` for every sampler but stride."""
    old = {"sampler": "random", "k": 5, "stride": None, "max_frames": 300, "seed": 3}
    assert FrameSelection.from_dict(old) == FrameSelection("random", 5, seed=3)
    strided = {**old, "sampler": "stride", "k": None, "stride": 6}
    assert FrameSelection.from_dict(strided).settings == {"stride": 6}
    entry = {"model": {}, "data": {**old, "mode": "frame", "num_classes": 20}, "version": 1}
    read = run_config({CHECKPOINT_KEY: entry}, "old.ckpt")
    assert read["data"] == {"frames": old, "mode": "frame", "num_classes": 20}
    assert read["version"] == 2 and entry["data"]["sampler"] == "random"  # not modified
    with pytest.raises(ValueError, match="not frame-selection keys: batch_size"):
        FrameSelection.from_dict({**old, "batch_size": 8})
    with pytest.raises(ValueError, match="old.ckpt: 'vidistill' entry version 3.*versions 1, 2"):
        run_config({CHECKPOINT_KEY: {**entry, "version": 3}}, "old.ckpt")


def test_bad_selections_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown frame sampler 'unifrom'.*uniform, stride"):
        FrameSelection.from_config({"sampler": "unifrom", "k": 10})
    with pytest.raises(ValueError, match="sampler 'uniform' takes no setting 'stride'"):
        FrameSelection.from_config({"sampler": "uniform", "k": 10, "stride": 5})
    assert FrameSelection.from_config({"sampler": "uniform", "k": 10, "stride": None}).k == 10
    with pytest.raises(ValueError, match="k=400 frames but .* max_frames=300"):
        FrameSelection.from_config({"sampler": "uniform", "k": 400})
    with pytest.raises(ValueError, match="needs a positive integer stride, got 0"):
        FrameSelection("stride", settings={"stride": 0})
    with pytest.raises(ValueError, match="needs k"):
        FrameSelection("first")
    with pytest.raises(ValueError, match="max_frames must be a positive integer, got 0"):
        FrameSelection.from_config({"max_frames": 0})
    with pytest.raises(ValueError, match="max_frames must be a positive integer, got None"):
        FrameSelection(max_frames=None)
    with pytest.raises(ValueError, match="unknown frame sampler None"):
        FrameSelection.from_config({"sampler": None})
    with pytest.raises(ValueError, match="seed must be an integer"):
        FrameSelection(seed=1.5)
    with pytest.raises(TypeError, match="unexpected arguments strides: no frame sampler"):
        YT8MDataModule(num_classes=10, sampler="stride", strides=5)


def test_the_teacher_view_shares_max_frames_and_seed():
    data = {"sampler": "uniform", "k": 6, "max_frames": 80, "seed": 2, "teacher_sampler": "all"}
    assert teacher_view(data) == FrameSelection("all", max_frames=80, seed=2)
    strided = {**data, "teacher_sampler": "stride", "teacher_stride": 3}
    assert teacher_view(strided) == FrameSelection("stride", None, 80, 2, {"stride": 3})
    assert FrameSelection.from_config(strided) == FrameSelection("uniform", 6, 80, 2)
    with pytest.raises(ValueError, match="student sees up to 6 .* teacher only 4"):
        YT8MDataModule(num_classes=10, **{**data, "teacher_sampler": "first", "teacher_k": 4})


def test_overriding_a_stored_selection():
    """eval.py and predict.py: the checkpoint's selection with the config's keys that are set."""
    stored = FrameSelection("stride", None, 300, 3, {"stride": 5}).to_dict()
    kept = {"sampler": None, "k": None, "stride": None, "max_frames": None, "seed": None}
    assert frame_selection("a.ckpt", stored, kept) == FrameSelection.from_dict(stored)
    assert frame_selection("a.ckpt", stored, {"stride": 2}).settings == {"stride": 2}
    # Another sampler drops the stored one's settings; a k without a sampler is Uniform-k.
    other = frame_selection("a.ckpt", stored, {**kept, "sampler": "first", "k": 10})
    assert other == FrameSelection("first", 10, seed=3)
    assert frame_selection("a.ckpt", {"sampler": None}, {"k": 4}) == FrameSelection("uniform", 4)
    with pytest.raises(ValueError, match="sampler 'first' takes no setting 'stride'"):
        frame_selection("a.ckpt", other.to_dict(), {"stride": 2})


# --------------------------------------------------------------------------------------------
# A new sampler with a setting of its own
# --------------------------------------------------------------------------------------------


@pytest.fixture
def offset_sampler():
    """A sampler defined here, not in the library: frames from ``offset`` on (the last frame of
    a shorter video), at most ``k``. Defining the class registers it."""

    class OffsetSampler(FrameSampler):
        name = "offset"
        settings = ("offset",)

        def __init__(self, k: int | None = None, offset: int = 0):
            super().__init__(k)
            self.offset = offset

        def __call__(self, n, rng=None):
            return np.arange(min(self.offset, n - 1), n, dtype=np.int64)[: self.k]

    yield OffsetSampler
    del SAMPLERS["offset"]


def test_a_new_sampler_with_a_new_setting_is_one_class(offset_sampler, shards, tmp_path):
    data = {"sampler": "offset", "k": 4, "offset": 2, "max_frames": 300, "seed": 0}
    selection = FrameSelection.from_config(data)
    assert selection.settings == {"offset": 2} and "offset" in config_keys()
    assert FrameSelection.from_dict(selection.to_dict()) == selection
    with pytest.raises(ValueError, match="sampler 'uniform' takes no setting 'offset'"):
        FrameSelection.from_config({**data, "sampler": "uniform"})

    # From the command line, through the data config: data.sampler=offset k=4 +data.offset=2.
    cfg = compose_config(tmp_path, ["data.sampler=offset", "k=4", "+data.offset=2"])
    assert FrameSelection.from_config(cfg.data) == selection
    assert instantiate(cfg.data, _convert_="all").frames == selection

    # The data module and its datasets read the frames it picks.
    directory, videos = shards
    datamodule = YT8MDataModule(
        test_files=str(directory / "*.tfrecord"),
        num_classes=10,
        num_workers=0,
        **data,
    )
    assert datamodule.frames == selection
    datamodule.setup("test")
    assert isinstance(datamodule.datasets["test"], YT8MDataset)
    seen = 0
    for batch in datamodule.test_dataloader():
        assert batch["frames"].shape[1] == 4
        for row, video_id in enumerate(batch["ids"]):
            _, rgb, _ = videos[video_id]
            picks = np.arange(min(2, len(rgb) - 1), len(rgb))[:4]
            assert batch["num_frames"][row] == len(picks)
            np.testing.assert_array_equal(batch["frames"][row, : len(picks), :1024], rgb[picks])
            seen += 1
    assert seen == len(videos)


def test_sampler_names_and_settings_are_checked_when_defined():
    with pytest.raises(ValueError, match="name 'uniform' is taken by UniformSampler"):

        class Uniform(FrameSampler):
            name = "uniform"

    with pytest.raises(ValueError, match="'shifted': k cannot be a setting's name"):

        class Shifted(FrameSampler):
            name = "shifted"
            settings = ("k",)

    class Base(FrameSampler):  # no name of its own: a base for samplers, not one
        pass

    assert list(SAMPLERS) == BUILT_IN
