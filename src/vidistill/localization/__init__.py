"""Temporal concept localization (MOD paper, 2019 segment task): the 3-phase pipeline
(:mod:`.pipeline`, with per-batch scoring in :mod:`.scoring` and per-class top K in
:mod:`.ranking`), the 2019 submission, whitelist and rating files (:mod:`.submission`), and the
paper's ablation on one command (:mod:`.ablation`)."""
