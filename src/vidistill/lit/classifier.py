"""VideoClassifier: any backbone (or mixture) trained with a pluggable objective."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from vidistill.distill import LabelLoss, multilabel_bce
from vidistill.metrics import SegmentMAPAtK, video_metrics
from vidistill.models.base import BackboneOutput
from vidistill.models.mixture import place
from vidistill.models.selection import FrameChoice, agreement_reward, run_on_choice

TASKS = ("video", "segment")
OptimizerFactory = Callable[..., torch.optim.Optimizer]
Objective = Callable[[BackboneOutput, dict], dict[str, torch.Tensor]]


def staircase_decay(decay_steps: int, gamma: float) -> Callable[[int], float]:
    """LR factor ``gamma ** floor(step / decay_steps)``, the papers' staircase schedule."""
    return lambda step: gamma ** (step // max(decay_steps, 1))


class VideoClassifier(pl.LightningModule):
    """Trains a backbone on video labels and reports the official YT8M metrics.

    Args:
        backbone: maps (frames [B, T, D], mask [B, T]) to a :class:`BackboneOutput`.
        num_classes: C, for the metrics.
        optimizer: a factory taking the parameters (Hydra ``_partial_``), Adam by default.
        lr_decay_rate, lr_decay_examples: multiply the learning rate by ``lr_decay_rate`` every
            ``lr_decay_examples`` training examples (counted over all ranks).
        top_k: classes kept per video by the metrics (GAP@k, mAP@k).
        init_output_bias: start the output biases at the log-odds of the class priors (from the
            data's vocabulary), when the backbone supports it. With hundreds of classes and
            p = 0.5 everywhere, the first hundreds of steps only learn that labels are rare.
        classifier_weight_decay: L2 penalty on the backbone's ``classifier`` parameters only
            (the papers' 1e-5), added to their gradients as TensorFlow's l2 regularizer does.
        clip_grad_norm_per_tensor: clip each parameter's gradient to this L2 norm on its own,
            as the papers' code did, instead of the trainer's ``gradient_clip_val`` (which
            clips the global norm).
        objective: maps (output, batch) to named loss terms, summed for training and each
            logged as ``train/<name>`` (see :mod:`vidistill.distill`); BCE by default. An
            objective with state (a teacher, a projection) is an ``nn.Module``, trained and
            checkpointed with the model; it may define ``attach(backbone)`` (called here once)
            and ``initialize_output_bias(backbone, log_odds)`` (then it decides where outputs
            start). It is training-only: :func:`vidistill.lit.checkpoints.load_model` leaves it out.
        placement: model parallelism for a mixture backbone (MOD paper): one device per member
            of its root (:func:`vidistill.models.mixture.place`); one process only.
        task: ``video`` (video-level labels: GAP, mAP, Hit@1, PERR) or ``segment`` (rated
            5-frame segments: the 2019 challenge's MAP@K over the evaluated segments, ``map_k``).
        dropout: when set, the rate of every dropout layer of the backbone (the MOD paper
            finetunes on segments with 0.75, whatever the model).
        bootstrap_resamples: the test GAP's 95% percentile bootstrap interval over this many
            resamples of the test videos is logged as ``test/gap_ci_low`` and
            ``test/gap_ci_high`` (0: not computed).
        bootstrap_seed: seeds the resamples; fixed, so every model of a comparison is scored on
            the same resamples of one test set.
        selector: a learned frame selector (:mod:`vidistill.models.selection`) that picks the k
            frames the backbone sees from every frame of the batch (``data.sampler=learned``).
            It is trained with the backbone by REINFORCE (the ``selector`` loss term), rewarded
            by the agreement of the backbone's prediction with the teacher's probabilities
            under distillation (``batch["teachers"].probabilities()``), with the labels
            without.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        lr_decay_rate: float = 1.0,
        lr_decay_examples: int = 2_000_000,
        top_k: int = 20,
        init_output_bias: bool = True,
        classifier_weight_decay: float = 0.0,
        clip_grad_norm_per_tensor: float | None = None,
        objective: Objective | None = None,
        placement: Sequence[str] | None = None,
        task: str = "video",
        map_k: int = 100_000,
        dropout: float | None = None,
        bootstrap_resamples: int = 1000,
        bootstrap_seed: int = 0,
        selector: nn.Module | None = None,
    ):
        super().__init__()
        if placement is not None:  # plain strings: checkpoints hold no config objects
            placement = [str(device) for device in placement]
        self.save_hyperparameters(
            ignore=["backbone", "optimizer", "objective", "selector"], logger=False
        )
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if selector is not None and task != "video":
            raise ValueError("a learned frame selector needs video-level training (task=video)")
        self.selector = selector
        self.backbone = backbone if placement is None else place(backbone, placement)
        if dropout is not None:
            for module in self.backbone.modules():
                if isinstance(module, nn.Dropout):
                    module.p = dropout
        self.objective = objective if objective is not None else LabelLoss()
        attach = getattr(self.objective, "attach", None)
        if attach is not None:
            attach(self.backbone)
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=2e-4))
        self.val_metrics = self._metrics("val/")
        self.test_metrics = self._metrics("test/")
        # The evaluation loss, averaged over videos as a metric: its float sums are synced
        # exactly under DDP, where self.log's own batch-size weights are not (an odd total
        # count of videos is truncated when ranks average it). Not saved in checkpoints.
        self.eval_loss = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self.test_member_metrics = nn.ModuleList()  # see on_test_epoch_start

    def _metrics(self, prefix: str) -> MetricCollection:
        h = self.hparams
        if h.task == "segment":
            return MetricCollection(
                {"map_at_k": SegmentMAPAtK(h.num_classes, k=h.map_k)}, prefix=prefix
            )
        return video_metrics(h.num_classes, top_k=h.top_k, prefix=prefix)

    def setup(self, stage: str) -> None:
        if self.hparams.placement is not None and self.trainer.world_size > 1:
            raise ValueError(
                "model.placement spreads one model over several devices of one process; it "
                f"cannot run under {self.trainer.world_size} processes: use trainer=gpu"
            )
        # Runs before a resumed checkpoint is loaded, so resuming keeps the trained biases.
        if stage != "fit" or not self.hparams.init_output_bias:
            return
        initialize = getattr(self.backbone, "initialize_output_bias", None)
        if hasattr(self.objective, "initialize_output_bias"):
            initialize = functools.partial(self.objective.initialize_output_bias, self.backbone)
        priors_of = getattr(getattr(self.trainer, "datamodule", None), "class_priors", None)
        priors = priors_of() if initialize is not None and priors_of is not None else None
        if priors is not None:
            initialize(torch.logit(priors))

    def on_train_start(self) -> None:
        if self.hparams.placement is None:
            return
        # A resumed run gets its optimizer state back on the root device; the state of placed
        # members must live with their parameters.
        for optimizer in self.trainer.optimizers:
            for parameter, state in optimizer.state.items():
                for key, value in state.items():
                    if torch.is_tensor(value) and key != "step":
                        state[key] = value.to(parameter.device)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        """frames [B, T, D], mask [B, T] -> the backbone's output (on the selector's k frames
        of each video when there is a selector)."""
        return self._predict(frames, mask)[0]

    def _predict(
        self, frames: torch.Tensor, mask: torch.Tensor
    ) -> tuple[BackboneOutput, FrameChoice | None]:
        return run_on_choice(self.backbone, self.selector, frames, mask)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        output, choice = self._predict(batch["frames"], batch["mask"])
        terms = self.objective(output, batch)
        if choice is not None:
            terms["selector"] = self._selector_term(output, choice, batch)
        loss = sum(terms.values())
        if not torch.isfinite(loss):  # one check per step; the culprit is looked up only then
            name, value = next(
                ((n, v) for n, v in terms.items() if not torch.isfinite(v)), ("loss", loss)
            )
            raise FloatingPointError(
                f"train/{name} is {value.item()} at global step {self.global_step}"
            )
        size = len(batch["ids"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        # Every term by name, even alone: a loss schedule switches terms on and off.
        self.log_dict({f"train/{name}": value for name, value in terms.items()}, batch_size=size)
        if self.hparams.classifier_weight_decay:
            # Adam's weight_decay adds decay * w to the classifiers' gradients: the gradient of
            # this penalty, logged (not added to the loss) as the regularization loss the MOD
            # paper plots.
            self.log("train/l2", self._classifier_penalty(), batch_size=size)
        return loss

    def _selector_term(self, output: BackboneOutput, choice: FrameChoice, batch: dict):
        """The selector's REINFORCE term; its reward, the mean agreement, is logged."""
        teachers = batch.get("teachers")
        target = batch["labels"] if teachers is None else teachers.probabilities().detach()
        reward = agreement_reward(output.logits, target)
        self.log("train/selector_reward", reward.mean(), batch_size=len(batch["ids"]))
        return self.selector.reinforce_loss(choice, reward)

    @torch.no_grad()
    def _classifier_penalty(self) -> torch.Tensor:
        squares = sum(p.pow(2).sum() for p in self._classifier_parameters())
        return 0.5 * self.hparams.classifier_weight_decay * squares

    def _evaluate(self, batch: dict, metrics, stage: str) -> None:
        output = self(batch["frames"], batch["mask"])
        if stage == "test":
            for member, member_metrics in zip(
                output.members, self.test_member_metrics, strict=False
            ):
                member_metrics.update(torch.sigmoid(member.logits), batch["labels"])
        # The prediction's own BCE, comparable across objectives (the metrics score it too).
        loss = multilabel_bce(output.logits, batch["labels"], batch.get("label_weights"))
        if self.hparams.task == "segment":  # only the rated (segment, class) pairs count
            metrics.update(torch.sigmoid(output.logits), batch["labels"], batch["label_weights"])
        else:
            metrics.update(torch.sigmoid(output.logits), batch["labels"])
        self.eval_loss[stage].update(loss, weight=len(batch["ids"]))
        self.log(f"{stage}/loss", self.eval_loss[stage], batch_size=len(batch["ids"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        # A mixture's members are also scored alone at test time (test/member<i>/gap...): the
        # MOD paper's "NeXtVLAD distill" is one member used without the others. Built here, for
        # the backbone being tested (eval.py member=... may have swapped in a sub-tree).
        members = getattr(self.backbone, "members", None)
        count = len(members) if self.hparams.task == "video" and members is not None else 0
        self.test_member_metrics = nn.ModuleList(
            self._metrics(f"test/member{i}/") for i in range(count)
        ).to(self.device)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        if self.hparams.task == "video" and self.hparams.bootstrap_resamples:
            gap = self.test_metrics["gap"]
            with gap.sync_context():
                low, high = gap.bootstrap_interval(
                    self.hparams.bootstrap_resamples, seed=self.hparams.bootstrap_seed
                )
            self.log_dict({"test/gap_ci_low": low, "test/gap_ci_high": high})
        self.test_metrics.reset()
        for member_metrics in self.test_member_metrics:
            self.log_dict(member_metrics.compute())
            member_metrics.reset()

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Per-tensor clipping, when configured, replaces the trainer's global clipping: the
        papers' recipe clips each tensor and nothing else."""
        limit = self.hparams.clip_grad_norm_per_tensor
        if limit is None:
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
            return
        for parameter in self.parameters():
            if parameter.grad is not None:
                torch.nn.utils.clip_grad_norm_(parameter, limit)

    def parameter_groups(self) -> list[dict]:
        """The trainable parameters: everything else, then the classifiers (with
        ``classifier_weight_decay``): every module named ``classifier``, so each member of a
        mixture and a teacher trained alongside count too."""
        head_ids = {id(p) for p in self._classifier_parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if id(p) not in head_ids]},
            {
                "params": [p for p in trainable if id(p) in head_ids],
                "weight_decay": self.hparams.classifier_weight_decay,
            },
        ]
        return [group for group in groups if group["params"]]

    def _classifier_parameters(self) -> list[torch.nn.Parameter]:
        return [
            p
            for name, module in self.named_modules()
            if name.rpartition(".")[2] == "classifier"
            for p in module.parameters()
        ]

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(self.parameter_groups())
        examples_per_step = self._examples_per_step()
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            staircase_decay(
                self.hparams.lr_decay_examples // examples_per_step, self.hparams.lr_decay_rate
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _examples_per_step(self) -> int:
        trainer = self.trainer
        datamodule = getattr(trainer, "datamodule", None)
        batch_size = getattr(getattr(datamodule, "hparams", None), "batch_size", 1)
        return max(1, batch_size * trainer.world_size * trainer.accumulate_grad_batches)
