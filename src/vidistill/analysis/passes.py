"""Trained models over videos, for the notebooks: a checkpoint's video representations, every
node of a mixture tree scored alone, classifier weight norms, and the fewer-frames paper's
Figure 3 (teacher and student representations of the same videos)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vidistill.analysis.runs import read_record

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
        frames: the frame selection the model saw (``FrameSelection.to_dict()``: ``sampler``,
            ``k``, ``max_frames``, ``seed``, the sampler's settings) with the checkpoint's
            ``mode`` and ``num_classes``.
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
    config["teacher_sampler"] = None
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
    stored = {key: value for key, value in predictor.info["data"].items() if key != "frames"}
    data = {**stored, **predictor.frames.to_dict()}
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

    from vidistill.lit.checkpoints import read_checkpoint

    # Checkpoints written before the terms were named ``terms`` keep them under ``losses.``.
    prefixes = ("objective.terms.rep.projection.", "objective.losses.rep.projection.")
    state = {
        key[len(prefix) :]: value
        for key, value in read_checkpoint(checkpoint)["state_dict"].items()
        for prefix in prefixes
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
    from vidistill.lit.checkpoints import load_model

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
