"""What the notebooks in ``notebooks/`` compute, as functions: finding sweeps, tabulating them
the way the papers do, reading training logs, and running trained models over videos.

Sweeps and runs:

* :func:`latest_multirun` / :func:`directories_from_env`: where a preset's sweep landed.
* :func:`collect_runs`: :func:`vidistill.results.collect` over several sweeps, plus what each
  run *is* (method label, frames seen, backbone, temperature), read from its recorded config.
* :func:`fewer_frames_table`: the fewer-frames paper's Table 1 layout (method x k, GAP and mAP).
* :func:`read_log` / :func:`training_curves`: a run's CSV log, one row per step.

Models over videos:

* :func:`split_files`: the shards of a split, as the run's data config resolves them.
* :func:`embed`: a checkpoint's video representations (``BackboneOutput.embedding``).
* :func:`evaluate_members`: every node of a mixture tree scored alone, next to the mixture.
* :func:`joint_tsne`, :func:`representation_gap`, :func:`videos_of_top_classes`: the
  fewer-frames paper's Figure 3 (teacher and student representations of the same videos).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vidistill.results import METRICS_FILE, collect

# Where the CSV logger (conf/logger/csv.yaml: name "csv", version "") writes in a run directory.
CSV_LOG = Path("csv") / "metrics.csv"

# The fewer-frames paper's names of the frame-selection baselines, in its Table 1 order.
SAMPLER_LABELS = {
    "uniform": "Uniform-k",
    "random": "Random-k",
    "first": "First-k",
    "middle": "Middle-k",
    "last": "Last-k",
    "first_middle_last": "First-Middle-Last-k",
    "stride": "Stride-k",
}
# The student's loss terms (conf/distill/loss/) as the paper writes them, in its order.
LOSS_LABELS = {"rep": "Lrep", "rep_blocks": "Lrep-blocks", "pred": "Lpred", "ce": "LCE"}
# The objectives' class names (conf/distill/): matched on the last part of ``_target_``, which
# may name the class through its package or its module.
TEACHER_STUDENT_TARGET = "vidistill.distill.TeacherStudentDistillation"
ONLINE_TARGET = "vidistill.distill.OnlineMixtureDistillation"
# Columns collect_runs adds to collect()'s (named so that none collides with an override key).
SETTING_COLUMNS = ("sweep", "path", "method", "family", "sampler", "frames", "temperature")
TABLE_METRICS = {"gap": "GAP", "map": "mAP"}


# --------------------------------------------------------------------------------------------
# Finding runs
# --------------------------------------------------------------------------------------------


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The vidistill checkout containing ``start`` (default: the working directory): the
    nearest directory upwards holding ``conf/config.yaml``; ``start`` itself if there is none.

    Notebooks run with their own folder as working directory, the presets write their sweeps
    under the checkout's ``logs/``: this is how a notebook finds them.
    """
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "conf" / "config.yaml").is_file():
            return directory
    return here


def latest_multirun(task_name: str, log_dir: str | os.PathLike | None = None) -> Path | None:
    """The newest sweep of a preset, ``<log_dir>/<task_name>/multirun/<date>_<time>``, or None.

    ``log_dir`` defaults to the checkout's ``logs`` (:func:`project_root`). Sweep directories
    are named ``%Y-%m-%d_%H-%M-%S`` (conf/hydra/default.yaml), so the newest sorts last.
    """
    base = Path(log_dir) if log_dir is not None else project_root() / "logs"
    sweeps = sorted(path for path in (base / task_name / "multirun").glob("*") if path.is_dir())
    return sweeps[-1] if sweeps else None


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` as given when it exists (or is absolute), else taken from the checkout's root
    (:func:`project_root`): a notebook's kernel runs in ``notebooks/``, while paths such as
    ``logs/...`` are written from the root, where ``train.py`` runs."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    from_root = project_root() / path
    return from_root if from_root.exists() else path


def path_from_env(variable: str) -> Path | None:
    """The path in the environment variable ``variable`` (:func:`resolve_path`), None when it
    is unset or empty; FileNotFoundError naming the variable when the path does not exist."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    path = resolve_path(value)
    if not path.exists():
        raise FileNotFoundError(f"{variable}: no such file or directory: {value}")
    return path


def directories_from_env(variable: str, defaults: Sequence[Path | None]) -> list[Path]:
    """The directories listed in the environment variable ``variable`` (separated by
    ``os.pathsep``, ``:`` on Linux; relative ones as :func:`resolve_path` takes them), else the
    ``defaults`` that exist. FileNotFoundError naming the variable when nothing is found, so a
    notebook stops at its first cell."""
    value = os.environ.get(variable, "").strip()
    if value:
        parts = [part for part in value.split(os.pathsep) if part]
        missing = [part for part in parts if not resolve_path(part).is_dir()]
        if missing:
            raise FileNotFoundError(f"{variable}: no such directory: {', '.join(missing)}")
        return [resolve_path(part) for part in parts]
    found = [Path(path) for path in defaults if path is not None and Path(path).is_dir()]
    if not found:
        raise FileNotFoundError(
            f"no runs: set {variable} to a run or multirun directory, or run the preset first "
            "(see notebooks/README.md)"
        )
    return found


def read_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A finished run's ``metrics.json`` (metrics, config, best checkpoint...);
    FileNotFoundError naming the file when the run did not finish."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the run did not finish, or is no run)")
    return json.loads(path.read_text())


def best_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint a run's metrics were measured on (``best_checkpoint`` of its record).

    Records hold absolute paths; a run directory that was moved or copied still finds its
    checkpoint under its own ``checkpoints/``.
    """
    run_dir = Path(run_dir)
    recorded = read_record(run_dir).get("best_checkpoint")
    if not recorded:
        raise FileNotFoundError(f"{run_dir / METRICS_FILE}: the run saved no checkpoint")
    return _existing(Path(recorded), run_dir)


def teacher_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The teacher checkpoint of a teacher-student run: the one it trained first (in
    ``<run>/teacher``, or shared by a sweep's jobs), else the ``distill.teacher.checkpoint``
    it was given.
    ValueError when the run had no trained teacher (a baseline, or a parallel run whose
    teacher lives only inside its training objective)."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    trained_first = (record.get("teacher") or {}).get("best_checkpoint")
    if trained_first:
        return _existing(Path(trained_first), run_dir)
    distill = record.get("config", {}).get("distill") or {}
    given = (distill.get("teacher") or {}).get("checkpoint")
    if given and not distill.get("parallel", False):
        return _existing(Path(given), run_dir)
    raise ValueError(f"{run_dir}: not a serial teacher-student run, it has no trained teacher")


def teacher_run(run_dir: str | os.PathLike) -> Path | None:
    """The run directory that trained a run's teacher (holding its ``metrics.json``), or None:
    ``<run>/teacher``, a sweep's shared teacher directory, or the run owning the given
    ``distill.teacher.checkpoint``."""
    try:
        checkpoint = teacher_checkpoint(run_dir)
    except ValueError:
        return None
    directory = checkpoint.parent.parent  # <run>/checkpoints/<file>.ckpt
    return directory if (directory / METRICS_FILE).is_file() else None


def _existing(recorded: Path, run_dir: Path) -> Path:
    """``recorded`` (an absolute path from a record) if it exists, else the same file found
    from ``run_dir`` after the runs were moved: the recorded path's last 4, 3 or 2 parts below
    the run or its parent, which covers ``<run>/checkpoints/<file>``,
    ``<run>/teacher/checkpoints/<file>`` and ``<sweep>/teachers/<name>/checkpoints/<file>``
    (a teacher shared by a sweep's jobs)."""
    if recorded.is_file():
        return recorded
    # Longest suffix first: a run's teacher and the run itself may both have a checkpoint of
    # the same file name (epoch_000.ckpt), and only the longer path tells them apart.
    for depth in (4, 3, 2):
        for base in (run_dir, run_dir.parent):
            moved = base.joinpath(*recorded.parts[-depth:])
            if len(recorded.parts) > depth and moved.is_file():
                return moved
    raise FileNotFoundError(f"checkpoint {recorded} not found, nor below {run_dir} or its parent")


# --------------------------------------------------------------------------------------------
# Tables of runs
# --------------------------------------------------------------------------------------------


def describe_run(config: dict[str, Any]) -> dict[str, Any]:
    """What a run is, from its recorded config (``metrics.json``'s ``config``): the
    :data:`SETTING_COLUMNS` after ``sweep`` and ``path``.

    ``method`` names it as the papers do: ``Uniform-k`` (a k-frame baseline), ``Serial Lrep,
    Lpred, LCE`` (a teacher-student run and its loss terms of nonzero weight; ``[First-k]``
    appended when the student's frames are not uniform), ``Online T=20`` (a mixture with online
    distillation), ``All frames``. ``frames`` is what the model sees per video at most (k, or
    ``max_frames`` for all frames), ``family`` the backbone's class (``MixNeXtVLAD[3]`` for a
    mixture tree of branching [3]), ``temperature`` T of online distillation (else NaN).
    """
    from vidistill.data.samplers import build_sampler  # torch is imported only when needed

    data = config.get("data", {})
    distill = config.get("distill") or {}
    sampler = data.get("sampler", "all")
    frames = build_sampler(sampler, data.get("k"), data.get("stride")).output_frames(
        data.get("max_frames", 300)
    )
    objective = _class_name(distill.get("_target_"))
    temperature = float("nan")
    if objective == _class_name(TEACHER_STUDENT_TARGET):
        weights = distill.get("weights") or {}
        terms = [label for name, label in LOSS_LABELS.items() if weights.get(name, 0) > 0]
        method = ("Parallel " if distill.get("parallel") else "Serial ") + ", ".join(terms)
        if sampler != "uniform":  # the paper's students all see uniform frames
            method += f" [{SAMPLER_LABELS.get(sampler, sampler)}]"
    elif objective == _class_name(ONLINE_TARGET):
        temperature = float(distill.get("temperature", 0.0))
        method = f"Online T={temperature:g}"
    elif sampler == "all":
        method = "All frames"
    else:
        method = SAMPLER_LABELS.get(sampler, sampler)
    return {
        "method": method,
        "family": _family(config.get("model", {}).get("backbone") or {}),
        "sampler": sampler,
        "frames": frames,
        "temperature": temperature,
    }


def _class_name(target: str | None) -> str:
    """The last part of a ``_target_`` (``NeXtVLAD``), ``?`` for none."""
    return str(target or "?").rsplit(".", 1)[-1]


def _family(backbone: dict[str, Any]) -> str:
    name = _class_name(backbone.get("_target_"))
    if name == "mixture_tree":
        leaf = _class_name((backbone.get("leaf") or {}).get("_target_"))
        return f"Mix{leaf}{list(backbone.get('branching', []))}"
    return name


def collect_runs(directories: Sequence[str | os.PathLike], flops: bool = False) -> pd.DataFrame:
    """:func:`vidistill.results.collect` of every directory, one frame: its columns, then
    :data:`SETTING_COLUMNS`: ``sweep`` (the directory given), ``path`` (the run directory),
    and :func:`describe_run` of each finished run (missing runs keep NaN there)."""
    frames = []
    for directory in directories:
        table = collect(directory, flops=flops)
        settings = []
        for run, status in zip(table["run"], table["status"], strict=True):
            path = Path(directory) / run
            described = describe_run(read_record(path)["config"]) if status == "done" else {}
            settings.append({"sweep": str(directory), "path": str(path), **described})
        frames.append(table.join(pd.DataFrame(settings, columns=list(SETTING_COLUMNS))))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "frames" in frame:
        frame["frames"] = frame["frames"].astype("Int64")
    return frame


def teacher_runs(frame: pd.DataFrame, flops: bool = False) -> pd.DataFrame:
    """The teachers of the runs in ``frame`` (a :func:`collect_runs` frame), one row per
    teacher run: collected like any run (``method`` ``All frames``, FLOPs at all frames) and
    a ``students`` column counting the rows of ``frame`` it taught."""
    teachers: dict[Path, int] = {}
    for path in frame.get("path", pd.Series(dtype=str)).dropna():
        directory = teacher_run(path) if (Path(path) / METRICS_FILE).is_file() else None
        if directory is not None:
            teachers[directory] = teachers.get(directory, 0) + 1
    if not teachers:
        return pd.DataFrame(columns=["run", "status", *SETTING_COLUMNS, "students"])
    table = collect_runs(list(teachers), flops=flops)
    table["students"] = list(teachers.values())
    return table


def find_serial_run(directories: Sequence[str | os.PathLike]) -> Path:
    """The first finished serial teacher-student run (in :func:`collect_runs` order) under
    ``directories`` (runs or sweeps) whose teacher checkpoint exists; FileNotFoundError when
    there is none."""
    runs = collect_runs(directories)
    for path, status, method in zip(
        runs.get("path", []), runs.get("status", []), runs.get("method", []), strict=True
    ):
        if status == "done" and str(method).startswith("Serial "):
            try:
                teacher_checkpoint(path)
            except (ValueError, FileNotFoundError):
                continue
            return Path(path)
    listed = ", ".join(str(directory) for directory in directories)
    raise FileNotFoundError(f"no finished serial distillation run with its teacher in {listed}")


def pick_split(frame: pd.DataFrame) -> str:
    """``test`` when any run has test metrics, else ``val`` (runs trained with ``test=false``)."""
    column = frame.get("test/gap")
    return "test" if column is not None and column.notna().any() else "val"


def method_order(method: str) -> tuple[int, str]:
    """Sort key putting methods in the paper's order: baselines as in its Table 1 (all frames
    first), then parallel, then serial students, then anything else."""
    baselines = ["All frames", *SAMPLER_LABELS.values()]
    if method in baselines:
        return baselines.index(method), ""
    for rank, prefix in enumerate(("Parallel ", "Serial ", "Online "), start=len(baselines)):
        if method.startswith(prefix):
            return rank, method
    return len(baselines) + 3, method


def fewer_frames_table(
    frame: pd.DataFrame, split: str | None = None, metrics: Sequence[str] = ("gap", "map")
) -> pd.DataFrame:
    """The fewer-frames paper's Table 1 layout: one row per method (and per backbone family
    when there are several), columns ``(k, metric)`` with ``GAP`` and ``mAP`` of ``split``
    (default :func:`pick_split`). Several runs of one cell (seeds) are averaged; cells
    without a run are NaN. Runs on all frames are left out (they are the teacher skyline)."""
    split = split or pick_split(frame)
    columns = [f"{split}/{metric}" for metric in metrics]
    missing = [column for column in columns if column not in frame]
    if missing:
        raise ValueError(f"no {', '.join(missing)} in the runs (their columns: {list(frame)})")
    done = frame[(frame["status"] == "done") & (frame["sampler"] != "all")]
    if done.empty:
        raise ValueError("no finished run on k frames to tabulate")
    index = ["family", "method"] if done["family"].nunique() > 1 else ["method"]
    long = done.melt(id_vars=[*index, "frames"], value_vars=columns, var_name="metric")
    long["metric"] = long["metric"].map(
        lambda name: TABLE_METRICS.get(name.split("/", 1)[1], name.split("/", 1)[1])
    )
    long["value"] = long["value"].astype(float)
    table = long.pivot_table(
        index=index, columns=["frames", "metric"], values="value", aggfunc="mean"
    )
    table.columns = table.columns.set_names(["k", "metric"])
    wanted = [TABLE_METRICS.get(metric, metric) for metric in metrics]
    table = table.reindex(
        columns=pd.MultiIndex.from_product(
            [sorted(table.columns.get_level_values("k").unique()), wanted], names=["k", "metric"]
        )
    )

    def row_order(key: str | tuple[str, str]) -> tuple:
        family, method = key if isinstance(key, tuple) else ("", key)
        return family, *method_order(method)

    return table.reindex(sorted(table.index, key=row_order))


def flatten_columns(table: pd.DataFrame) -> pd.DataFrame:
    """A table with (k, metric) columns and a method index as a flat frame (``k=6 GAP``, ...),
    the index as leading columns: the form :func:`vidistill.results.to_markdown` prints."""
    flat = table.copy()
    names = table.columns.names

    def label(column: Any) -> str:
        if not isinstance(column, tuple):
            return str(column)
        parts = zip(names, column, strict=True)
        return " ".join(f"k={part}" if name == "k" else str(part) for name, part in parts)

    flat.columns = [label(column) for column in table.columns]
    return flat.reset_index()


# --------------------------------------------------------------------------------------------
# Training logs
# --------------------------------------------------------------------------------------------


def read_log(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's CSV log (``<run>/csv/metrics.csv``, or the path of a ``metrics.csv``) with one
    row per global step, sorted by step.

    Lightning's CSV logger writes a row per logging call: at one step the learning rates, the
    training terms and the validation metrics arrive as separate, mostly empty rows. They are
    merged here (per column, the last value logged at that step: a resumed run logs again
    what it repeats). Columns: ``step``, ``epoch`` and every logged name (``train/loss``,
    ``train/bce/level0``, ``val/gap``, ...). After training, the best checkpoint is evaluated
    again: that validation (and the test) is logged at the step after the last training step.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / CSV_LOG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file; the run's CSV log is written by logger=csv (the default) "
            "as <run>/csv/metrics.csv"
        )
    raw = pd.read_csv(path)
    if "step" not in raw:
        raise ValueError(f"{path}: not a Lightning CSV log (no 'step' column)")
    merged = raw.groupby("step", sort=True).last()  # last non-null value per column and step
    merged = merged.reset_index()
    if "epoch" in merged:
        merged["epoch"] = merged["epoch"].astype("Int64")
    return merged


def training_curves(log: pd.DataFrame) -> pd.DataFrame:
    """The training terms of a :func:`read_log` frame (the ``train/...`` columns: the loss, its
    terms, ``train/l2``; not the learning rates), indexed by step, only the steps where one of
    them was logged."""
    columns = [column for column in log.columns if str(column).startswith("train/")]
    curves = log.set_index("step")[columns]
    return curves.dropna(how="all")


# --------------------------------------------------------------------------------------------
# Models over videos
# --------------------------------------------------------------------------------------------


@dataclass
class VideoEmbeddings:
    """Representations of videos by one model.

    Attributes:
        embeddings: float32 [N, E], the backbone's ``embedding`` (what its classifier reads).
        ids: the N video ids, in reading order (file order, then record order).
        labels: bool [N, C] multi-hot labels.
        logits: float32 [N, C] the model's class scores before the sigmoid.
        frames: the frame selection the model saw (``sampler``, ``k``, ``stride``,
            ``max_frames``, ``seed``, ``mode``, ``num_classes``).
    """

    embeddings: np.ndarray
    ids: list[str]
    labels: np.ndarray
    logits: np.ndarray
    frames: dict[str, Any]


def run_datamodule(run_dir: str | os.PathLike) -> Any:
    """The data module of a run, rebuilt from its recorded data config (for the synthetic set:
    its generated directory, generated again if missing), to find its files and vocabulary."""
    from hydra.utils import instantiate

    config = dict(read_record(run_dir)["config"]["data"])
    # The teacher's view only matters for training batches; a view that no longer fits the
    # student's frames would only stop the data module from being built.
    config.update(teacher_sampler=None, teacher_k=None)
    return instantiate(config, _convert_="all")


def split_files(run_dir: str | os.PathLike, split: str = "test") -> list[str]:
    """The shard files of ``split`` (``train``, ``val``, ``test``, ``predict``) as a run's
    recorded data config resolves them. ValueError when the run had no files for that split."""
    from vidistill.data import expand_files

    datamodule = run_datamodule(run_dir)
    files = datamodule.files.get(split)
    if files is None:
        raise ValueError(f"{run_dir}: the run's data has no {split} files")
    return expand_files(datamodule.resolve(files))


def default_split(run_dir: str | os.PathLike) -> str:
    """``test`` when the run's data has test files, else ``val`` (eval.py's rule: real YT8M's
    test files carry no labels and are usually left out)."""
    return "test" if run_datamodule(run_dir).files.get("test") is not None else "val"


def class_names(run_dir: str | os.PathLike) -> dict[int, str]:
    """Class index -> name, from the ``Name`` column of the run's ``vocabulary.csv`` ({} when
    the data has no vocabulary file or no names)."""
    path = run_datamodule(run_dir).vocabulary_path()
    if not path or not Path(path).is_file():
        return {}
    vocabulary = pd.read_csv(path)
    if "Name" not in vocabulary:
        return {}
    named = vocabulary.dropna(subset=["Name"])
    return dict(zip(named["Index"].astype(int), named["Name"].astype(str), strict=True))


def _batches(
    dataset: Any, max_videos: int | None, dequantize_range: tuple[float, float]
) -> Iterator[dict]:
    """The dataset's batches dequantized (float32 frames [B, T, 1152]), at most ``max_videos``
    videos in total."""
    from vidistill.data import dequantize_batch

    seen = 0
    for batch in dataset:
        if max_videos is not None and seen + len(batch["ids"]) > max_videos:
            # Tensors and the ids list slice alike.
            batch = {key: value[: max_videos - seen] for key, value in batch.items()}
        seen += len(batch["ids"])
        if batch["ids"]:
            yield dequantize_batch(batch, *dequantize_range)
        if max_videos is not None and seen >= max_videos:
            return


def embed(
    checkpoint: str | os.PathLike,
    files: Sequence[str] | str,
    max_videos: int | None = None,
    batch_size: int = 64,
    sampler: str | None = None,
    k: int | None = None,
    projection: bool = False,
    dequantize_range: tuple[float, float] = (2.0, -2.0),
) -> VideoEmbeddings:
    """The video representations a checkpoint's model computes for the videos of ``files``.

    The model sees the frames it was trained on (the sampler, k, seed stored in the
    checkpoint): a teacher all frames, a k-frame student its k frames; ``sampler``/``k``
    override that. Videos are read in file order, so two checkpoints given the same files
    embed the same videos in the same order (the first ``max_videos`` of them).

    ``projection``: for a student trained with L_rep through a learned projection (its
    representation's size differs from the teacher's), map its embeddings through that
    projection (stored in the student's checkpoint), into the space L_rep compared them in;
    without one this changes nothing.

    Returns :class:`VideoEmbeddings`: embeddings float32 [N, E] (E the teacher's size when
    projected), ids [N], labels bool [N, C], logits float32 [N, C].
    """
    import torch

    from vidistill.inference import Predictor

    # Read as predict.py reads: file order, every record, random frames fixed per video id.
    predictor = Predictor(checkpoint, device="cpu", frames={"sampler": sampler, "k": k})
    dataset = predictor.dataset(files, batch_size=batch_size, num_workers=0)
    data = {**predictor.info["data"], **predictor.frames}
    project = _rep_projection(checkpoint) if projection else None
    embeddings, logits, labels, ids = [], [], [], []
    with torch.no_grad():
        for batch in _batches(dataset, max_videos, dequantize_range):
            output = predictor.backbone(batch["frames"], batch["mask"])
            embedding = output.embedding if project is None else project(output.embedding)
            embeddings.append(embedding.float().numpy())
            logits.append(output.logits.float().numpy())
            labels.append(batch["labels"].numpy() > 0)
            ids.extend(batch["ids"])
    if not ids:
        raise ValueError(f"no videos in {files}")
    return VideoEmbeddings(
        embeddings=np.concatenate(embeddings),
        ids=ids,
        labels=np.concatenate(labels),
        logits=np.concatenate(logits),
        frames=data,
    )


def _rep_projection(checkpoint: str | os.PathLike) -> Any | None:
    """The L_rep projection (student embedding -> teacher's size) trained with a student, as
    a ``torch.nn.Linear``, or None when the student was compared without one."""
    import torch

    from vidistill.checkpoints import read_checkpoint

    prefix = "objective.losses.rep.projection."
    state = {
        key[len(prefix) :]: value
        for key, value in read_checkpoint(checkpoint)["state_dict"].items()
        if key.startswith(prefix)
    }
    if not state:
        return None
    out_features, in_features = state["weight"].shape
    layer = torch.nn.Linear(in_features, out_features, bias="bias" in state)
    layer.load_state_dict(state)
    return layer.eval()


def member_paths(backbone: Any) -> list[tuple[int, ...]]:
    """Every node of a mixture tree, depth first: ``()`` the whole model, ``(0,)`` the root's
    first member, ``(0, 1)`` that member's second, ... (``[()]`` for a single backbone). Paths
    as :func:`vidistill.models.mixture.subtree` and ``eval.py member=`` take them."""
    members = getattr(backbone, "members", None)
    if members is None:
        return [()]
    return [()] + [
        (index, *path) for index, member in enumerate(members) for path in member_paths(member)
    ]


def _node_outputs(output: Any, path: tuple[int, ...] = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, output
    for index, member in enumerate(output.members):
        yield from _node_outputs(member, (*path, index))


def evaluate_members(
    checkpoint: str | os.PathLike,
    files: Sequence[str] | str,
    max_videos: int | None = None,
    batch_size: int = 64,
    dequantize_range: tuple[float, float] = (2.0, -2.0),
) -> pd.DataFrame:
    """Every node of a mixture checkpoint's tree scored alone on ``files``, in one pass.

    A member of a mixture computes the same logits inside the mixture as alone (the gate only
    weighs them), so one forward pass of the whole model scores every node, which is what
    ``eval.py member=[...]`` does one node at a time. One row per node (:func:`member_paths`
    order): ``member`` (``mixture`` or ``[0]``, ``[1, 2]``...), ``depth``, ``gap``, ``map``,
    ``hit1``, ``perr`` (the official metrics at the model's top_k), and ``gate``: the mean
    weight the parent's gate gave that node over these videos (NaN for the root).
    """
    import torch

    from vidistill.inference import Predictor
    from vidistill.metrics import video_metrics

    predictor = Predictor(checkpoint, device="cpu")
    dataset = predictor.dataset(files, batch_size=batch_size, num_workers=0)
    paths = member_paths(predictor.backbone)
    top_k = predictor.model.hparams.top_k
    scores = {path: video_metrics(predictor.num_classes, top_k, "") for path in paths}
    gate_sums = dict.fromkeys(paths, 0.0)
    videos = 0
    with torch.no_grad():
        for batch in _batches(dataset, max_videos, dequantize_range):
            output = predictor.backbone(batch["frames"], batch["mask"])
            for path, node in _node_outputs(output):
                scores[path].update(torch.sigmoid(node.logits), batch["labels"])
                gate = node.intermediate.get("gate")
                if gate is not None:  # [B, members] weights of this node's children
                    for index, total in enumerate(gate.sum(0).tolist()):
                        gate_sums[(*path, index)] += total
            videos += len(batch["ids"])
    if not videos:
        raise ValueError(f"no videos in {files}")
    rows = []
    for path in paths:
        computed = scores[path].compute()
        metrics = {name: float(computed[name]) for name in ("gap", "map", "hit1", "perr")}
        rows.append(
            {
                "member": "mixture" if not path else str(list(path)),
                "depth": len(path),
                **metrics,
                "gate": gate_sums[path] / videos if path else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def classifier_l2(checkpoint: str | os.PathLike) -> dict[str, float]:
    """The classifiers' L2 regularization at a checkpoint: ``weight_decay`` (the model's
    ``classifier_weight_decay``), ``sum_of_squares`` of the parameters that decay is applied to
    (every module named ``classifier``: each member's in a mixture), and
    ``penalty = weight_decay / 2 * sum_of_squares``, the loss whose gradient that decay adds
    (TensorFlow's ``l2_regularizer``).

    Training logs the same penalty as ``train/l2`` at every step when the decay is nonzero;
    this reads it from the weights, for runs whose log lacks it.
    """
    from vidistill.checkpoints import load_model

    model, _ = load_model(checkpoint)
    # The parameters the optimizer decays (VideoClassifier.parameter_groups), by the same rule.
    squares = sum(
        float((parameter.detach().double() ** 2).sum())
        for parameter in model._classifier_parameters()
    )
    decay = float(model.hparams.get("classifier_weight_decay", 0.0))
    return {"weight_decay": decay, "sum_of_squares": squares, "penalty": decay / 2 * squares}


# --------------------------------------------------------------------------------------------
# Teacher and student representations (fewer-frames paper, Figure 3)
# --------------------------------------------------------------------------------------------


def videos_of_top_classes(
    labels: np.ndarray, num_classes: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Pick videos to colour by class, as the paper's Figure 3 does with YT8M's top 5 classes:
    the ``num_classes`` most frequent classes among ``labels`` (bool [N, C]), and the videos
    carrying exactly one of them (a video of two would need two colours).

    Returns (indices [M] into the N videos, class [M] of each).
    """
    counts = labels.sum(0)
    top = np.argsort(-counts, kind="stable")[:num_classes]
    top = top[counts[top] > 0]
    carried = labels[:, top]  # [N, len(top)]
    single = np.flatnonzero(carried.sum(1) == 1)
    return single, top[carried[single].argmax(1)]


def joint_tsne(
    teacher: np.ndarray,
    student: np.ndarray,
    seed: int = 0,
    perplexity: float | None = None,
    threads: int | None = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """One t-SNE map of teacher [N, E] and student [N, E] representations of the same N
    videos (fitted on both at once, so distances between a teacher point and a student point
    mean something). Returns their 2-d positions, [N, 2] each.

    ``perplexity`` defaults to 30, less for few points (t-SNE needs it below their number).
    ``threads`` caps the OpenMP threads of scikit-learn's Barnes-Hut t-SNE (None: its default,
    every core): its threads wait for each other by spinning, so on a machine shared with
    other jobs one thread was 6x faster (800 points of 512 values, 2 cores, one training
    alongside: 4.4 s against 28.8 s).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher {teacher.shape} and student {student.shape} representations differ in "
            "shape: embed the student with projection=True, or compare models of one size"
        )
    points = np.concatenate([teacher, student]).astype(np.float64)
    if perplexity is None:
        perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
    with threadpool_limits(limits=threads):
        positions = TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed
        ).fit_transform(points)
    return positions[: len(teacher)], positions[len(teacher) :]


def representation_gap(teacher: np.ndarray, student: np.ndarray) -> dict[str, float]:
    """How close a student's representations [N, E] are to its teacher's [N, E] of the same
    videos: ``same_video`` (mean squared distance between the two of one video: L_rep),
    ``other_videos`` (the same between a student and the teacher's other videos), and
    ``nearest_is_same`` (share of videos whose student point has its own teacher point as the
    nearest of all teacher points)."""
    distances = ((student[:, None, :] - teacher[None, :, :]) ** 2).sum(-1)  # [N, N]
    n = len(teacher)
    same = np.diag(distances)
    others = (distances.sum() - same.sum()) / max(n * (n - 1), 1)
    return {
        "same_video": float(same.mean()),
        "other_videos": float(others),
        "nearest_is_same": float((distances.argmin(1) == np.arange(n)).mean()),
    }


# --------------------------------------------------------------------------------------------
# Plots (matplotlib; each draws on ``ax``, a new figure's axes when None, and returns it)
# --------------------------------------------------------------------------------------------


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))[1]


def _method_series(
    runs: pd.DataFrame, columns: Sequence[str]
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """The finished k-frame runs of a :func:`collect_runs` frame that have every one of
    ``columns``, grouped by backbone family and method, in :func:`method_order`: (method, label,
    rows) per group, the label naming the family only when there are several."""
    done = runs[(runs["status"] == "done") & (runs["sampler"] != "all")].dropna(subset=columns)
    families = done["family"].nunique()
    groups = done.groupby(["family", "method"])
    for family, method in sorted(groups.groups, key=lambda key: (key[0], method_order(key[1]))):
        label = f"{family} {method}" if families > 1 else method
        yield method, label, groups.get_group((family, method))


def plot_vs_frames(
    runs: pd.DataFrame, metric: str, teachers: pd.DataFrame | None = None, ax: Any = None
) -> Any:
    """``metric`` (e.g. ``test/gap``) against the frames k a model sees: one line per method
    (and backbone family) of a :func:`collect_runs` frame, baselines dashed, students solid,
    several runs of a point averaged; the teachers of :func:`teacher_runs` as horizontal
    dotted lines (the teacher-skyline of the paper)."""
    ax = _axes(ax)
    frames = set()
    for method, label, group in _method_series(runs, [metric]):
        points = group.groupby("frames")[metric].mean()
        frames.update(points.index.astype(int))
        ax.plot(
            points.index.astype(int),
            points.to_numpy(dtype=float),
            marker="o",
            linestyle="-" if method.startswith(("Serial ", "Parallel ")) else "--",
            label=label,
        )
    if teachers is not None and len(teachers):
        for family, value in teachers.groupby("family")[metric].mean().items():
            ax.axhline(value, color="black", linestyle=":", label=f"{family} teacher, all frames")
    ax.set_xlabel("frames seen, k")
    ax.set_ylabel(metric)
    ax.set_xticks(sorted(frames))
    ax.legend(fontsize="small")
    return ax


def plot_flops_vs_metric(
    runs: pd.DataFrame,
    metric: str,
    teachers: pd.DataFrame | None = None,
    flops: str = "flops_paper",
    ax: Any = None,
) -> Any:
    """Cost against quality: ``flops`` (multiply-adds per video, from ``collect(...,
    flops=True)``) against ``metric`` for every finished run, one marker series per method,
    each point annotated with its k; the teachers as stars."""
    from matplotlib.ticker import NullFormatter

    ax = _axes(ax)
    for _, label, group in _method_series(runs, [metric, flops]):
        ax.scatter(group[flops].astype(float), group[metric].astype(float), label=label)
        for x, y, k in zip(group[flops], group[metric], group["frames"], strict=True):
            ax.annotate(str(k), (float(x), float(y)), fontsize="x-small", alpha=0.7)
    if teachers is not None and len(teachers):
        shown = teachers.dropna(subset=[metric, flops])
        ax.scatter(
            shown[flops].astype(float),
            shown[metric].astype(float),
            marker="*",
            s=150,
            color="black",
            label="teacher, all frames",
        )
    ax.set_xscale("log")
    # The minor ticks' labels of a log axis spanning less than a decade overlap.
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"multiply-adds per video ({flops})")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    return ax


def plot_vs_temperature(runs: pd.DataFrame, metric: str, ax: Any = None) -> Any:
    """``metric`` against the online-distillation temperature T: one line per mixture family
    (a family trained at one T is a single marker), runs without distillation (the wider
    single model) as horizontal lines labelled with their size."""
    ax = _axes(ax)
    done = runs[runs["status"] == "done"].dropna(subset=[metric])
    online = done[done["temperature"].notna()]
    for family, group in online.groupby("family"):
        points = group.groupby("temperature")[metric].mean()
        ax.plot(points.index, points.to_numpy(dtype=float), marker="o", label=family)
    for _, row in done[done["temperature"].isna()].iterrows():
        size = f", {row['params'] / 1e6:.1f}M parameters" if pd.notna(row.get("params")) else ""
        ax.axhline(float(row[metric]), linestyle="--", color="gray", label=f"{row['family']}{size}")
    ax.set_xlabel("temperature T (0: no distillation)")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    return ax


def plot_curves(curves: pd.DataFrame, contains: str, title: str, ax: Any = None) -> Any:
    """The columns of ``curves`` (a :func:`training_curves` frame) whose name contains
    ``contains`` (``/kl/``, ``/bce/``) against the step; a note on the axes when the run logged
    none (a mixture at T = 0 has no distillation term)."""
    ax = _axes(ax)
    chosen = [column for column in curves.columns if contains in str(column)]
    for column in chosen:
        values = curves[column].dropna()
        ax.plot(values.index, values.to_numpy(dtype=float), label=column)
    if chosen:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, f"no {contains} term logged", ha="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel("step")
    return ax


def plot_tsne(
    teacher: np.ndarray,
    student: np.ndarray,
    classes: np.ndarray,
    class_names: dict[int, str] | None = None,
    ax: Any = None,
) -> Any:
    """The paper's Figure 3: t-SNE positions of teacher [M, 2] and student [M, 2] points of
    the same videos, coloured by each video's class [M]: the teacher in the dark shade, the
    student in the light shade of the class's colour."""
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    palette = plt.get_cmap("tab20")  # pairs: colour 2i dark, 2i + 1 its light shade
    for rank, label in enumerate(np.unique(classes)):
        chosen = classes == label
        name = (class_names or {}).get(int(label), f"class {label}")
        dark, light = palette((2 * rank) % 20), palette((2 * rank + 1) % 20)
        ax.scatter(*teacher[chosen].T, color=dark, s=18, label=f"{name}-t")
        ax.scatter(*student[chosen].T, color=light, s=18, marker="s", label=f"{name}-s")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    return ax
