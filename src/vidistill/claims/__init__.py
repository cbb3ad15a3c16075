"""The claims report: every claim of both papers measured over seeds, kept as evidence.

``python -m vidistill.claims run <study> [--quick]`` trains a study's sweeps (the experiment
presets, through Hydra's joblib launcher, two one-thread jobs at a time, resuming where it
stopped); ``report <study>`` rebuilds ``results/<study>/runs.csv``, ``claims.csv`` and
``claims.md`` from the runs; ``readme`` writes the README's results section from those files.
The studies and their claims are declared in :mod:`vidistill.claims.studies`.
"""

from vidistill.claims.evidence import build_evidence, claim_rows, verdict
from vidistill.claims.studies import STUDIES, Claim, Study, Sweep

__all__ = ["STUDIES", "Claim", "Study", "Sweep", "build_evidence", "claim_rows", "verdict"]
