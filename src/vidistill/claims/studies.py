"""The studies: which sweeps each one trains and which claims of the papers it tests.

A study runs on one recipe per backbone (``Study.recipe``: the synthetic set's size, epochs,
data loading), fixed before it runs; every arm shares it. Each :class:`Sweep` is a Hydra
multirun of an experiment preset (``conf/experiment/``) over the study's seeds. Each
:class:`Claim` compares two arms, paired by seed, in the direction the paper reports: arm ``a``
scores higher than arm ``b`` on ``metric``. An ordering claim is one row per adjacent pair.

The papers' numbers (``paper_value``) are real YouTube-8M results; on the synthetic set only
directions and orders can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vidistill.claims.notes import FEWER_FRAMES_NOTES, MOD_NOTES

SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Sweep:
    """One multirun of a study.

    Args:
        name: the sweep's directory under ``results/<study>/runs/`` and its arms' prefix.
        overrides: the command's overrides: the experiment preset and the arm lists.
        quick: the overrides of ``--quick`` (the smallest arms); None leaves the sweep out.
        script: ``train.py``, or ``localize.py`` for the localization ablation.
        teachers: its jobs distill from a teacher trained first (shared study-wide per seed).
    """

    name: str
    overrides: tuple[str, ...]
    quick: tuple[str, ...] | None = None
    script: str = "train.py"
    teachers: bool = False


@dataclass(frozen=True)
class Arm:
    """The runs of ``sweep`` whose overrides include ``settings`` (``key=value`` strings as
    written on the command line)."""

    sweep: str
    settings: tuple[str, ...] = ()

    def selector(self) -> dict[str, str]:
        """Column -> value, as :func:`vidistill.analysis.results.paired_difference` takes an arm."""
        pairs = (setting.partition("=") for setting in self.settings)
        return {"sweep": self.sweep, **{key: value for key, _, value in pairs}}

    def label(self) -> str:
        return f"{self.sweep}: {' '.join(self.settings)}".strip()


@dataclass(frozen=True)
class Claim:
    """``a`` scores higher than ``b`` on ``metric`` (the paper's direction); ``metric_b``, when
    set, is the metric read from ``b``'s runs (a mixture member's ``test/member0/gap`` against
    a single model's ``test/gap``)."""

    claim: str
    paper_value: str
    metric: str
    a: Arm
    b: Arm
    quick: bool = False  # also tested by --quick (both arms are in the quick sweeps)
    metric_b: str | None = None


@dataclass(frozen=True)
class Study:
    name: str
    setup: str  # one line: data, sizes, epochs
    recipe: tuple[str, ...]  # overrides shared by every sweep of the study
    sweeps: tuple[Sweep, ...]
    claims: tuple[Claim, ...]
    seeds: tuple[int, ...] = SEEDS
    localize_recipe: tuple[str, ...] = field(default=())  # the recipe as localize.py takes it
    # Students whose cost per video is compared with their teacher's: (arm, the paper's figure).
    cost: tuple[tuple[Arm, str], ...] = field(default=())
    # The heading of the cost table's column for the second entry of each ``cost`` pair.
    cost_reference: str = "paper (Table 3)"
    # What happened while the study ran (a bug fixed midway and the arms rerun, a recipe's
    # known limit), printed under the claims table and carried into the README.
    notes: tuple[str, ...] = field(default=())

    def sweep(self, name: str) -> Sweep:
        for sweep in self.sweeps:
            if sweep.name == name:
                return sweep
        raise KeyError(f"study {self.name} has no sweep {name!r}")


def ordering(
    claim: str,
    metric: str,
    arms: Sequence[tuple[str, Arm]],
    paper_values: Sequence[str],
    quick: bool = False,
) -> list[Claim]:
    """An ordering ``arms[0] > arms[1] > ...``, as one claim per adjacent pair; ``arms`` are
    ``(name, arm)`` and ``paper_values`` the paper's value of each."""
    return [
        Claim(
            f"{claim}: {name_a} > {name_b}",
            f"{value_a} vs {value_b}",
            metric,
            arm_a,
            arm_b,
            quick,
        )
        for (name_a, arm_a), (name_b, arm_b), value_a, value_b in zip(
            arms, arms[1:], paper_values, paper_values[1:], strict=False
        )
    ]


# --------------------------------------------------------------------------------------------
# Fewer frames (Bhardwaj et al.): H-RNN unless said
# --------------------------------------------------------------------------------------------

SAMPLERS = ("uniform", "random", "first_middle_last", "middle", "first", "last")
SAMPLER_NAMES = {
    "uniform": "Uniform",
    "random": "Random",
    "first_middle_last": "First-Middle-Last",
    "middle": "Middle",
    "first": "First",
    "last": "Last",
}
# Table 1, H-RNN, GAP: each baseline at k = 10 and 30; the serial student (L_rep + L_pred +
# L_CE) at k = 6, 10, 15, 20, 30.
PAPER_BASELINES = {
    10: {
        "uniform": 0.759,
        "random": 0.681,
        "first_middle_last": 0.671,
        "middle": 0.600,
        "first": 0.539,
        "last": 0.267,
    },
    30: {
        "uniform": 0.795,
        "random": 0.774,
        "first_middle_last": 0.721,
        "middle": 0.665,
        "first": 0.676,
        "last": 0.317,
    },
}
PAPER_UNIFORM = {6: 0.715, 10: 0.759, 15: 0.777, 20: 0.785, 30: 0.795}
PAPER_STUDENT = {6: 0.731, 10: 0.771, 15: 0.789, 20: 0.798, 30: 0.806}
PAPER_SERIAL_K30 = {  # Table 1, serial, k = 30
    "rep_pred_ce": 0.806,
    "rep_ce": 0.803,
    "rep": 0.802,
    "pred_ce": 0.799,
    "pred": 0.798,
}
LOSS_NAMES = {
    "rep_pred_ce": "L_rep + L_pred + L_CE",
    "rep_ce": "L_rep + L_CE",
    "rep": "L_rep then L_CE",
    "pred_ce": "L_pred + L_CE",
    "pred": "L_pred",
}
STUDENT_K = (6, 10, 15, 20, 30)

BASELINES = "experiment=fewer_frames_baselines"
STUDENTS = "experiment=fewer_frames_losses"


def _baseline(k: int, sampler: str = "uniform", sweep: str | None = None) -> Arm:
    if sweep is None:
        sweep = "baselines" if k in PAPER_BASELINES else "uniform_k"
    return Arm(sweep, (f"data.sampler={sampler}", f"k={k}"))


def _student(k: int) -> Arm:
    return Arm("students", (f"k={k}",))


def _loss_arm(losses: str) -> Arm:
    """The serial k = 30 student trained with a loss combination of conf/losses/."""
    return _student(30) if losses == "rep_pred_ce" else Arm("losses", (f"losses={losses}",))


def _baseline_and_student_claims() -> list[Claim]:
    """Table 1: the baselines' order at k = 10 and 30; the serial student against Uniform-k."""
    claims: list[Claim] = []
    for k in (10, 30):
        claims += ordering(
            f"H-RNN baselines at k = {k}",
            "test/gap",
            [(SAMPLER_NAMES[s], _baseline(k, s)) for s in SAMPLERS],
            [f"{PAPER_BASELINES[k][s]:.3f}" for s in SAMPLERS],
            quick=k == 10,
        )
    for k in STUDENT_K:
        claims.append(
            Claim(
                f"serial student beats Uniform-{k}",
                f"{PAPER_STUDENT[k]:.3f} vs {PAPER_UNIFORM[k]:.3f}",
                "test/gap",
                _student(k),
                _baseline(k),
                quick=k == 10,
            )
        )
    claims.append(
        Claim(
            "the student's gap to the teacher is smaller than Uniform-30's (same teacher per "
            "seed, so this is the student against the baseline)",
            "0.811 - 0.806 vs 0.811 - 0.795",
            "test/gap",
            _student(30),
            _baseline(30),
        )
    )
    return claims


def _training_claims() -> list[Claim]:
    """Table 1's training rows and Table 4: serial against parallel, the loss combinations,
    intermediate representations."""
    claims = [
        Claim(
            "serial >= parallel (L_rep + L_pred + L_CE, k = 30)",
            "0.806 vs 0.806",
            "test/gap",
            _student(30),
            Arm("parallel", ("k=30",)),
        )
    ]
    claims += ordering(
        "serial loss combinations, k = 30",
        "test/gap",
        [(LOSS_NAMES[name], _loss_arm(name)) for name in PAPER_SERIAL_K30],
        [f"{value:.3f}" for value in PAPER_SERIAL_K30.values()],
    )
    claims += [
        Claim(
            f"serial {LOSS_NAMES[name]} beats Uniform-30",
            f"{value:.3f} vs {PAPER_UNIFORM[30]:.3f}",
            "test/gap",
            _loss_arm(name),
            _baseline(30),
        )
        for name, value in PAPER_SERIAL_K30.items()
    ]
    claims.append(
        Claim(
            "matching intermediate (block) representations as well adds nothing",
            "0.806 vs 0.806 (Table 4: no benefit)",
            "test/gap",
            Arm("intermediate", ("k=30",)),
            _student(30),
        )
    )
    return claims


def _backbone_claims() -> list[Claim]:
    """Tables 5 and 6: NetVLAD and NeXtVLAD students against their Uniform-30 baselines."""
    return [
        Claim(
            f"{model} serial student beats its Uniform-30 (Table {table})",
            f"{student:.3f} vs {uniform:.3f}",
            "test/gap",
            Arm("backbones", (f"model={model}",)),
            Arm("backbone_baselines", (f"model={model}",)),
        )
        for model, table, student, uniform in (
            ("netvlad", 5, 0.812, 0.803),
            ("nextvlad", 6, 0.818, 0.812),
        )
    ]


def _hrnn(*overrides: str) -> tuple[str, ...]:
    return (*overrides[:1], "model=hrnn", *overrides[1:])


FEWER_FRAMES = Study(
    name="fewer_frames",
    setup=(
        "default synthetic set (4000 train / 1000 validate / 1000 test videos, 200 classes), "
        "CPU presets (H-RNN: conf/model/hrnn.yaml), 3 epochs, test split"
    ),
    recipe=("data.num_workers=0",),
    sweeps=(
        Sweep("baselines", _hrnn(BASELINES, "k=10,30"), quick=_hrnn(BASELINES, "k=10")),
        Sweep(
            "students",
            _hrnn(STUDENTS, "distill=serial", "losses=rep_pred_ce", "k=6,10,15,20,30"),
            quick=_hrnn(STUDENTS, "distill=serial", "losses=rep_pred_ce", "k=10"),
            teachers=True,
        ),
        Sweep("uniform_k", _hrnn(BASELINES, "data.sampler=uniform", "k=6,15,20")),
        Sweep(
            "losses",
            _hrnn(STUDENTS, "distill=serial", "losses=rep,rep_ce,pred,pred_ce", "k=30"),
            teachers=True,
        ),
        Sweep("parallel", _hrnn(STUDENTS, "distill=parallel", "losses=rep_pred_ce", "k=30")),
        Sweep(
            "intermediate",
            _hrnn(
                STUDENTS,
                "distill=serial",
                "losses=rep_pred_ce",
                "distill.weights.rep_blocks=1",
                "k=30",
            ),
            teachers=True,
        ),
        Sweep(
            "backbone_baselines",
            (BASELINES, "model=netvlad,nextvlad", "data.sampler=uniform", "k=30"),
        ),
        Sweep(
            "backbones",
            ("experiment=fewer_frames_backbones", "model=netvlad,nextvlad", "k=30"),
            teachers=True,
        ),
    ),
    claims=(*_baseline_and_student_claims(), *_training_claims(), *_backbone_claims()),
    # Table 3 (H-RNN, FLOPs per video in billions; the teacher 5.058 at all frames).
    cost=tuple(
        (_student(k), paper)
        for k, paper in ((10, "0.167 vs 5.058"), (20, "0.268 vs 5.058"), (30, "0.520 vs 5.058"))
    ),
    notes=FEWER_FRAMES_NOTES,
)


# --------------------------------------------------------------------------------------------
# MOD (Deep mixture of NeXtVLADs with online distillation)
# --------------------------------------------------------------------------------------------

TEMPERATURES = {"mix_t20": 0.820, "mix_t10": 0.816, "mix_t1": 0.811, "mix_t0": 0.808}  # Table 2


def _variant(name: str, sweep: str = "temperature") -> Arm:
    return Arm(sweep, (f"variant={name}",))


def _mixture_claims() -> list[Claim]:
    """Table 2 and the mixtures against single models (video-level test GAP here; the paper
    scores localization after finetuning)."""
    claims = ordering(
        "MixNeXtVLAD improves with the temperature",
        "test/gap",
        [(f"T = {name.removeprefix('mix_t')}", _variant(name)) for name in TEMPERATURES],
        [f"{value:.3f}" for value in TEMPERATURES.values()],
    )
    claims += [
        Claim(
            "MODNeXtVLAD (4 x 3) beats MixNeXtVLAD (3), T = 20",
            "0.825 vs 0.820",
            "test/gap",
            _variant("mod_t20"),
            _variant("mix_t20"),
        ),
        Claim(
            "MixNeXtVLAD (T = 20) beats one NeXtVLAD of its leaves' size",
            "0.820 vs 0.796 (Table 1, NeXtVLAD)",
            "test/gap",
            _variant("mix_t20"),
            _variant("nextvlad_leaf"),
            quick=True,
        ),
        Claim(
            "MixNeXtVLAD (T = 20) beats one wider NeXtVLAD with more parameters",
            "0.820 vs 0.806 (NeXtVLAD large)",
            "test/gap",
            _variant("mix_t20"),
            _variant("nextvlad"),
        ),
        Claim(
            "one member of MixNeXtVLAD (T = 20), alone, beats the same NeXtVLAD trained alone",
            "0.815 vs 0.796 (Table 1, NeXtVLAD distill)",
            "test/member0/gap",
            _variant("mix_t20"),
            _variant("nextvlad_leaf"),
            quick=True,
            metric_b="test/gap",
        ),
    ]
    return claims


def _segment_claims(segment_metric: str) -> list[Claim]:
    """Table 1 on segments and the localization ablation, by MAP@K."""
    claims = [
        Claim(
            "pretrained then finetuned beats trained on segments from scratch (NeXtVLAD)",
            "0.796 vs 0.770",
            segment_metric,
            _variant("pretrained_nextvlad", "finetune"),
            _variant("scratch_nextvlad", "finetune"),
        ),
        Claim(
            "NeXtVLAD beats DBoF, both from scratch on segments",
            "0.770 vs 0.699",
            segment_metric,
            _variant("scratch_nextvlad", "finetune"),
            _variant("scratch_dbof", "finetune"),
        ),
    ]
    for other, paper in (
        ("video_only", "0.796 vs 0.648 (dummy prediction)"),
        ("segment_only_finetuned", "not reported"),
    ):
        claims.append(
            Claim(
                f"localization: Pvid^0.05 Pseg^0.95 beats {other.replace('_', ' ')}",
                paper,
                "test/map_at_k",
                _variant("combined_finetuned", "ablation"),
                _variant(other, "ablation"),
            )
        )
    return claims


# Every arm of the MOD study sees Uniform-30 frames (video-level training, pretraining, the
# ablation's video model): the two-level MODNeXtVLAD trains 12 NeXtVLADs, and all frames would
# not fit three seeds of every arm in the study's time on a 2-core machine. Segment models read
# 5-frame segments whatever the sampler.
MOD_FRAMES = ("data.sampler=uniform", "k=30")
MOD = Study(
    name="mod",
    setup=(
        "default synthetic set (4000 train / 1000 validate / 1000 test videos, 200 classes; "
        "500 rated videos per rated split), CPU presets, Uniform-30 frames for video-level "
        "models, 3 video-level epochs, 10 segment epochs"
    ),
    recipe=(
        *MOD_FRAMES,
        "data.num_workers=0",
        'pretrain.overrides=["data.sampler=uniform","k=30"]',
    ),
    localize_recipe=(
        "data.num_workers=0",
        'ablation.train_overrides=["data.sampler=uniform","k=30","data.num_workers=0"]',
    ),
    sweeps=(
        Sweep(
            "temperature",
            ("experiment=mod_temperature",),
            quick=("experiment=mod_temperature", "variant=mix_t20,nextvlad_leaf"),
        ),
        Sweep(
            "finetune",
            (
                "experiment=mod_finetune",
                "variant=scratch_dbof,scratch_nextvlad,pretrained_nextvlad",
            ),
        ),
        Sweep("ablation", ("experiment=localization_ablation",), script="localize.py"),
    ),
    claims=(*_mixture_claims(), *_segment_claims("test/map_at_k")),
    notes=MOD_NOTES,
)


def _all_studies() -> dict[str, Study]:
    from vidistill.claims.beyond import BEYOND  # its module builds on this one's classes

    return {study.name: study for study in (FEWER_FRAMES, MOD, BEYOND)}


STUDIES = _all_studies()
