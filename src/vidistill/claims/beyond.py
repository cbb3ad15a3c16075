"""The study beyond both papers: a mixture (MOD) as teacher, several teachers, and frames picked
by a learned selector, measured over the same seeds, synthetic set and recipe as the papers'
claims (:mod:`vidistill.claims.studies`). The claims are ours, not the papers': ``paper_value``
says what each paper's method is compared with instead."""

from __future__ import annotations

from vidistill.claims.notes import BEYOND_NOTES
from vidistill.claims.studies import Arm, Claim, Study, Sweep

SELECTION = "experiment=beyond_selection"
TEACHERS = "experiment=beyond_teachers"
SELECTION_K = (5, 10, 30)
# The control arm's budgets: k = 10 was planned; k = 5, where the trained selector moved away
# from Uniform-k's frames, was added once k = 10's control had run (see the study's notes).
CONTROL_K = (5, 10)
DISTILL_MODES = {"none": "trained alone", "serial": "distilled from an all-frames NeXtVLAD"}
# The single-family teachers of the several-teachers arm, in their order in its list.
FAMILIES = {"nextvlad": "NeXtVLAD", "netvlad": "NetVLAD", "hrnn": "H-RNN"}
SEVERAL = "distill.teachers=[{model:nextvlad},{model:netvlad},{model:hrnn}]"
# Both teachers of the MOD comparison see Uniform-30 frames, as every video-level arm of the MOD
# study does: twelve NeXtVLADs on all frames would not fit three seeds in the study's time.
TEACHER_FRAMES = ("data.teacher_sampler=uniform", "data.teacher_k=30")


def _sweep(frames: str, distill: str) -> str:
    """The selection sweeps come in pairs: students alone, and distilled ones (whose jobs are
    told where the study's teachers are, a key that students alone do not have)."""
    return f"{frames}_{'alone' if distill == 'none' else 'distilled'}"


def _uniform(k: int, distill: str) -> Arm:
    return Arm(_sweep("uniform", distill), (f"k={k}",))


def _learned(k: int, distill: str) -> Arm:
    return Arm(_sweep("learned", distill), (f"k={k}",))


def _selection_sweeps() -> list[Sweep]:
    frames = {
        "uniform": ("data.sampler=uniform",),
        "learned": ("selector=audio",),
        "control": ("selector=audio", "model.selector.weight=0"),
    }
    return [
        Sweep(
            _sweep(name, distill),
            (
                SELECTION,
                *overrides,
                f"distill={distill}",
                *((f"k={','.join(map(str, CONTROL_K))}",) if name == "control" else ()),
            ),
            quick=(SELECTION, *overrides, f"distill={distill}", "k=10")
            if distill == "none" and name != "control"
            else None,
            teachers=distill == "serial",
        )
        for name, overrides in frames.items()
        for distill in DISTILL_MODES
    ]


def _single_teacher(family: str) -> Arm:
    if family == "nextvlad":  # the same run as the serial Uniform-10 arm of the selection sweeps
        return _uniform(10, "serial")
    return Arm("single_teachers", (f"distill.teacher.model={family}",))


def _mod_teacher(model: str, k: int) -> Arm:
    return Arm("mod_teacher", (f"distill.teacher.model={model}", f"k={k}"))


def _selection_claims() -> list[Claim]:
    claims = [
        Claim(
            f"learned selection beats Uniform-{k}, {what} (selector's cost included: it adds "
            "less than one student frame)",
            "the fewer-frames paper's next step; Uniform-k is its best baseline",
            "test/gap",
            _learned(k, distill),
            _uniform(k, distill),
            quick=k == 10 and distill == "none",
        )
        for distill, what in DISTILL_MODES.items()
        for k in SELECTION_K
    ]
    claims += [
        Claim(
            f"the selector learns: trained beats the same selector kept at its prior, k = {k}, "
            f"{what}",
            f"control: same sampling in training, Uniform-{k}'s frames at evaluation",
            "test/gap",
            _learned(k, distill),
            Arm(_sweep("control", distill), (f"k={k}",)),
        )
        for distill, what in DISTILL_MODES.items()
        for k in CONTROL_K
    ]
    return claims


def _teacher_claims() -> list[Claim]:
    claims = [
        Claim(
            f"a student of MODNeXtVLAD (T = 20) beats a student of one NeXtVLAD, k = {k} "
            "(teachers on Uniform-30)",
            "MOD's strongest model, never distilled into a cheaper one there",
            "test/gap",
            _mod_teacher("mod", k),
            _mod_teacher("nextvlad", k),
        )
        for k in (10, 30)
    ]
    claims += [
        Claim(
            f"a student of three teachers (NeXtVLAD, NetVLAD, H-RNN) beats a student of the "
            f"{name} teacher alone, k = 10",
            "the fewer-frames paper distils from one teacher of the student's family",
            "test/gap",
            Arm("several_teachers", (SEVERAL,)),
            _single_teacher(family),
        )
        for family, name in FAMILIES.items()
    ]
    return claims


BEYOND = Study(
    name="beyond",
    setup=(
        "default synthetic set (4000 train / 1000 validate / 1000 test videos, 200 classes), "
        "CPU presets, NeXtVLAD students, 3 epochs, test split"
    ),
    recipe=("data.num_workers=0",),
    sweeps=(
        *_selection_sweeps(),
        Sweep(
            "single_teachers",
            (TEACHERS, "distill.teacher.model=netvlad,hrnn"),
            teachers=True,
        ),
        Sweep("several_teachers", (TEACHERS, SEVERAL), teachers=True),
        Sweep(
            "mod_teacher",
            (
                TEACHERS,
                *TEACHER_FRAMES,
                "distill.teacher.model=mod,nextvlad",
                "distill.teacher.objective=online",
                "k=10,30",
            ),
            teachers=True,
        ),
    ),
    claims=(*_selection_claims(), *_teacher_claims()),
    cost=tuple(
        (arm, f"{'learned' if arm.sweep.startswith('learned') else 'Uniform'}-{k}")
        for k in SELECTION_K
        for arm in (_learned(k, "serial"), _uniform(k, "serial"))
    ),
    cost_reference="frames",
    notes=BEYOND_NOTES,
)
