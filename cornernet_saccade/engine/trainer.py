"""The training loop: Adam with step decay, gradient accumulation, autocast, DDP, checkpoints, resume.

One iteration is one optimizer step on a global batch of ``batch_size`` images, split over the
processes and ``grad_accum`` micro-batches (see :mod:`.data`). The loss of a split batch equals the
loss of the whole batch: every count the loss divides by (positive corners, positive attention
cells, objects) is summed over all micro-batches and processes first
(:func:`~cornernet_saccade.engine.loss.loss_normalizers`, one small all-reduce), the micro-batch losses,
computed with those counts, add up to the whole-batch loss, and each process back-propagates its
part times the number of processes to cancel DDP's gradient averaging. (BatchNorm statistics still
come from each forward pass; ``batchnorm: sync`` or ``frozen`` removes that difference.)

Reproducibility: the initial weights come from ``torch.manual_seed(seed)``, the data of each
iteration is a pure function of ``(seed, iteration)``, and a checkpoint holds the weights, Adam and
scheduler state, the gradient-scaler state, the RNG states and the iteration, so ``--resume``
reproduces the uninterrupted run (bitwise on CPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cornernet_saccade.backends.device import set_threads
from cornernet_saccade.backends.distributed import DistContext, setup, teardown
from cornernet_saccade.backends.hardware import choose_amp, detect_capability
from cornernet_saccade.config import config_to_dict
from cornernet_saccade.data.load import load_dataset
from cornernet_saccade.data.samples import TrainingSampleDataset
from cornernet_saccade.engine.evaluate import evaluate, evaluation_set
from cornernet_saccade.engine.loader import StreamLayout, stream_loader
from cornernet_saccade.engine.loss import (
    NORMALIZER_KEYS,
    CornerNetLoss,
    CornerNetSaccadeLoss,
    LossOutput,
    loss_normalizers,
)
from cornernet_saccade.engine.metrics import METRICS_NAME, MetricsLogger
from cornernet_saccade.engine.run_checkpoints import (
    CheckpointManager,
    capture_rng_state,
    check_restored_optimizer,
    check_training_state,
    restore_rng_state,
)
from cornernet_saccade.engine.train_config import TrainConfig
from cornernet_saccade.engine.weight_average import WeightAverage
from cornernet_saccade.errors import AnnotationError, CheckpointError, ConfigError, TrainingError
from cornernet_saccade.inference.detector import Detector
from cornernet_saccade.model.base import CornerNetBase
from cornernet_saccade.model.checkpoint import (
    StoredCheckpoint,
    check_model_fits,
    load_checkpoint,
    read_checkpoint,
    resolve_weights_path,
)
from cornernet_saccade.model.heads import HeadOutputs
from cornernet_saccade.outputs import make_folder

#: Loss components, in the order of the all-reduced statistics vector.
LOSS_NAMES = ("focal", "attention", "pull", "push", "offset")
MicroBatch = tuple[dict[str, Tensor], list[str]]


@dataclass
class TrainResult:
    """Where a run ended: the iteration, its last checkpoint, the last iteration's loss and the
    numbers of replaced samples and skipped (non-finite) steps."""

    iteration: int
    checkpoint: Path | None
    loss: dict[str, float] = field(default_factory=dict)
    skipped_samples: int = 0
    skipped_steps: int = 0


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's global RNGs."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def batchnorm_layers(model: nn.Module) -> Iterator[nn.BatchNorm2d]:
    return (m for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def set_train_mode(model: nn.Module, batchnorm: str) -> None:
    """Training mode, except BatchNorm layers under ``batchnorm: frozen`` (running statistics)."""
    model.train()
    if batchnorm == "frozen":
        for layer in batchnorm_layers(model):
            layer.eval()


def build_model(config: TrainConfig, context: DistContext, init_weights: bool) -> CornerNetBase:
    """The network of ``config.model``, seeded, with ``init_weights`` loaded when asked, BatchNorm
    set up for ``config.batchnorm``, on ``context.device`` (not yet wrapped in DDP)."""
    seed_everything(config.seed)
    stored = read_checkpoint(resolve_weights_path(config.init_weights)) if init_weights and config.init_weights else None
    if stored is not None:  # names both networks' shapes when they differ, before building the model
        check_model_fits(stored, config.model_class, config.model)
    model = config.model_class(config.model)
    if stored is not None:
        load_checkpoint(model, stored)
    if config.batchnorm == "frozen":
        for layer in batchnorm_layers(model):
            layer.requires_grad_(False)
    elif config.batchnorm == "sync" and context.distributed:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BatchNorm children in place
    model.to(context.device)
    set_train_mode(model, config.batchnorm)
    return model


def training_amp(amp: str, device: torch.device) -> tuple[str, str]:
    """The autocast dtype a run uses (``none``, ``bf16`` or ``fp16``) and why: ``amp`` as configured,
    ``auto`` chosen from the device (:func:`~cornernet_saccade.backends.hardware.choose_amp`)."""
    if amp != "auto":
        return amp, f"amp: {amp} as configured"
    return choose_amp(detect_capability(device))


def check_runtime(config: TrainConfig, context: DistContext, amp: str) -> None:
    """Settings that depend on the device and the process count (``amp``: the resolved autocast dtype)."""
    device = context.device
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"amp: fp16 needs CUDA (device is {device}); use amp: bf16 or none")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"amp: bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
    if config.batchnorm == "sync" and context.distributed and device.type != "cuda":
        raise ConfigError("batchnorm: sync needs CUDA (SyncBatchNorm has no CPU version); use batch or frozen")
    parts = context.world_size * config.grad_accum
    if config.batch_size % parts:
        raise ConfigError(
            f"batch_size {config.batch_size} is not divisible by processes x grad_accum = "
            f"{context.world_size} x {config.grad_accum}"
        )


def autocast_context(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _to_float32(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.float()
    return [_to_float32(item) for item in value]


def outputs_to_float32(outputs: HeadOutputs) -> HeadOutputs:
    """The head outputs in float32 (the loss is computed outside autocast)."""
    return HeadOutputs(**{f.name: _to_float32(getattr(outputs, f.name)) for f in dataclasses.fields(outputs)})


def grouped(loader: Iterable[MicroBatch], size: int) -> Iterator[list[MicroBatch]]:
    """Consecutive groups of ``size`` micro-batches (one iteration's worth)."""
    group: list[MicroBatch] = []
    for item in loader:
        group.append(item)
        if len(group) == size:
            yield group
            group = []


class RunningMean:
    """Mean of the loss dicts added since the last :meth:`pop`."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {name: total / max(self.count, 1) for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


def _check_no_earlier_run(out_dir: str, checkpoints: CheckpointManager) -> None:
    """ConfigError when ``out_dir`` holds an earlier run's checkpoints or metrics (a new run would
    overwrite, prune and mix them), even one whose ``last.pt`` is missing or dangling."""
    earlier = checkpoints.earlier_run_files() + [p for p in [Path(out_dir) / METRICS_NAME] if p.exists()]
    if earlier:
        shown = ", ".join(p.name for p in earlier[:3]) + (f" and {len(earlier) - 3} more" if len(earlier) > 3 else "")
        raise ConfigError(f"{out_dir}: already holds a run ({shown}); pass --resume to continue it or --out to "
                          f"start a new one elsewhere")


class Trainer:
    """One training run (see the module docstring). ``resume``: a training checkpoint to continue."""

    def __init__(self, config: TrainConfig, context: DistContext, resume: StoredCheckpoint | None = None) -> None:
        self.amp, self.amp_reason = training_amp(config.amp, context.device)
        check_runtime(config, context, self.amp)
        self.config = config
        self.context = context
        self.device = context.device
        self.checkpoints = CheckpointManager(config.out_dir, config.keep_last)
        if resume is None:
            _check_no_earlier_run(config.out_dir, self.checkpoints)
        if resume is not None:
            check_training_state(resume)
            check_model_fits(resume, config.model_class, config.model)
        if context.is_main:
            for stale in self.checkpoints.remove_stale_temp_files():
                self._say(f"removed {stale} (left by a save that was interrupted)")
        self.layout = StreamLayout(config.batch_size, config.grad_accum, context.world_size, context.rank)
        self.train_samples = self._samples(config.data.train, config.data.image_root)
        self.class_names = list(self.train_samples.dataset.class_names)
        self.val_samples = (
            self._samples(config.data.val, config.data.val_image_root, self.class_names) if config.data.val else None
        )
        if config.eval_every and config.data.val:  # what evaluation needs, checked before any training
            evaluation_set(config.data.val, config.data.val_image_root, config.data.format, self.class_names,
                           config.model.num_classes)
        self.model = build_model(config, context, init_weights=resume is None)
        optim = config.optim
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=optim.lr, betas=optim.betas, eps=optim.eps,
                                          weight_decay=optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda done: optim.lr_factor(done))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.average = WeightAverage(self.model, optim.ema_decay) if optim.ema_decay else None
        self.iteration = 0
        self.skipped_samples = 0
        self.skipped_steps = 0
        self._saved_at = 0
        self._lr = optim.lr
        if resume is not None:
            self._restore(resume)
        self.network: nn.Module = self.model
        if context.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.loss_fn = CornerNetSaccadeLoss() if config.model_class.has_attention else CornerNetLoss()
        self.logger = MetricsLogger(config.out_dir, context.is_main,
                                    resumed_at=self.iteration if resume is not None else None)

    # ----------------------------------------------------------------------------- setup
    def _samples(self, path: str, image_root: str | None, class_names: list[str] | None = None) -> TrainingSampleDataset:
        dataset = load_dataset(path, image_root=image_root, format=self.config.data.format, class_names=class_names)
        if not dataset.records:
            raise AnnotationError(f"{path}: no usable images ({len(dataset.issues)} problems; run check-data)")
        if dataset.issues:
            self._say(f"{path}: {len(dataset.issues)} annotation problems (items skipped or repaired; run check-data)")
        if len(dataset.class_names) != self.config.model.num_classes:
            raise ConfigError(
                f"{path}: the data has {len(dataset.class_names)} classes {dataset.class_names[:10]} but "
                f"model.num_classes is {self.config.model.num_classes} (set model.num_classes)"
            )
        return TrainingSampleDataset(dataset, self.config.sampling, seed=self.config.seed)

    def _restore(self, stored: StoredCheckpoint) -> None:
        """Continue from a training checkpoint: weights, optimizer, scheduler, scaler, RNG, counters."""
        state = stored.training_state
        load_checkpoint(self.model, stored)  # the checkpoint's weights: the average where the run kept one
        if self.average is not None:  # (a run without an average that goes on with one starts it here)
            self.average.network.load_state_dict(self.model.state_dict())
            self.average.updates = int(state.get("ema_updates", 0))
        if "train_weights" in state:  # the trained weights beside the average
            self._load_train_weights(stored)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state["scaler"] and self.scaler.is_enabled():
                self.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{stored.path}: optimizer state does not fit this run's model ({exc})") from None
        check_restored_optimizer(stored.path, self.optimizer, self.scheduler)
        try:
            restore_rng_state(state["rng"])
        except (ValueError, TypeError, IndexError, RuntimeError) as exc:
            raise CheckpointError(f"{stored.path}: malformed RNG state ({exc})") from None
        self.iteration = self._saved_at = int(state["iteration"])
        self.skipped_samples = int(state["counters"]["skipped_samples"])
        self.skipped_steps = int(state["counters"]["skipped_steps"])

    def _load_train_weights(self, stored: StoredCheckpoint) -> None:
        try:
            self.model.load_state_dict(stored.training_state["train_weights"])
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{stored.path}: malformed trained weights (train_weights: {exc})") from None

    @property
    def averaged_model(self) -> CornerNetBase:
        """The weights a run validates, evaluates and saves: the moving average where there is one."""
        return self.average.network if self.average is not None else self.model

    def describe(self) -> str:
        """What the run is about to do (printed at its start): device, processes and CPU threads, the
        data's image counts and classes, the iterations and batch, the run folder."""
        config, context = self.config, self.context
        val = f", {len(self.val_samples.dataset.records)} validation images" if self.val_samples else ""
        names = ", ".join(self.class_names[:10]) + (", ..." if len(self.class_names) > 10 else "")
        processes = f"{context.world_size} process{'es' * (context.world_size != 1)}"
        threads = torch.get_num_threads()
        start = f"iterations {self.iteration + 1}-{config.optim.max_iter}" if self.iteration else (
            f"{config.optim.max_iter} iterations")
        return "\n".join([
            f"training on {self.device} ({processes}, {threads} CPU thread{'s' * (threads != 1)} each)",
            f"data: {len(self.train_samples.dataset.records)} training images{val}; "
            f"{len(self.class_names)} classes: {names}",
            f"{start}, batch {config.batch_size} (grad_accum {config.grad_accum}), run folder "
            f"{Path(config.out_dir).resolve()}",
            f"precision: {self.amp_reason}" + (
                f"; weights averaged (ema_decay {config.optim.ema_decay})" if self.average is not None else ""),
        ])

    def _say(self, message: str) -> None:
        if self.context.is_main:
            tqdm.write(message, file=sys.stderr)

    # ----------------------------------------------------------------------------- loop
    def run(self) -> TrainResult:
        """Train from the current iteration to ``optim.max_iter``; returns where it ended."""
        config, stop = self.config, self.config.optim.max_iter
        loader = stream_loader(self.train_samples, self.layout, self.iteration, stop, config.workers,
                               pin_memory=self.device.type == "cuda")
        window = RunningMean()
        losses: dict[str, float] = {}
        if self.context.is_main:
            make_folder(Path(config.out_dir))
            self.logger.log("start", self.iteration, config=config_to_dict(config), world_size=self.context.world_size)
        self._say(self.describe())
        bar = tqdm(total=stop, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True,
                   disable=not self.context.is_main)
        try:
            for micro_batches in grouped(loader, config.grad_accum):
                self.iteration += 1
                losses = self._step(micro_batches)
                window.add(losses)
                bar.update(1)
                bar.set_postfix_str(" ".join(f"{k} {v:.3g}" for k, v in losses.items()), refresh=False)
                self._periodic(window)
            if self.iteration > self._saved_at:
                self._save()
        finally:
            bar.close()
            self.logger.close()
        last = self.checkpoints.last_path
        return TrainResult(self.iteration, last.resolve() if last.exists() else None, losses,
                           self.skipped_samples, self.skipped_steps)

    def _periodic(self, window: RunningMean) -> None:
        config, iteration = self.config, self.iteration
        if config.log_every and iteration % config.log_every == 0:
            self.logger.log("train", iteration, lr=self._lr, **window.pop(), skipped_samples=self.skipped_samples,
                            skipped_steps=self.skipped_steps)
        if self.val_samples is not None and config.val_every and iteration % config.val_every == 0:
            self._validate()
        if config.eval_every and iteration % config.eval_every == 0:
            self._evaluate()
        if config.checkpoint_every and iteration % config.checkpoint_every == 0:
            self._save()

    def _step(self, micro_batches: list[MicroBatch]) -> dict[str, float]:
        """One optimizer step on this process's micro-batches; the global batch's loss components."""
        batches = self._unpack(micro_batches)
        normalizers = self._global_normalizers(batches)
        self.optimizer.zero_grad(set_to_none=True)
        self._lr = self.optimizer.param_groups[0]["lr"]
        local = torch.zeros(len(LOSS_NAMES), dtype=torch.float64, device=self.device)
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            sync = contextlib.nullcontext() if last or not self.context.distributed else (
                cast(DistributedDataParallel, self.network).no_sync())
            with sync:
                result = self._loss(self.network, batch, normalizers)
                self.scaler.scale(result.total * self.context.world_size).backward()
            local += self._components(result)
        losses = self._global_losses(local)
        if all(np.isfinite(v) for v in losses.values()):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.average is not None:
                self.average.update(self.model)
        else:
            self._nonfinite(losses)
        self.scheduler.step()
        return losses

    def _unpack(self, micro_batches: list[MicroBatch]) -> list[dict[str, Tensor]]:
        """Micro-batches on the device; replaced (unreadable) samples are counted and logged."""
        failures = [message for _, messages in micro_batches for message in messages]
        count = int(self.context.all_reduce_sum(torch.tensor([len(failures)], device=self.device)).item())
        self.skipped_samples += count
        for message in failures:
            tqdm.write(f"iteration {self.iteration}: skipped a sample: {message}", file=sys.stderr)
            self.logger.log("bad_sample", self.iteration, message=message)
        return [{k: v.to(self.device, non_blocking=True) for k, v in batch.items()} for batch, _ in micro_batches]

    def _global_normalizers(self, batches: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Loss counts of the whole global batch (all micro-batches of all processes)."""
        parts = [loss_normalizers(batch) for batch in batches]
        keys = [key for key in NORMALIZER_KEYS if key in parts[0]]  # CornerNet targets have no attention maps
        local = torch.stack([cast(Tensor, sum(part[key] for part in parts)) for key in keys])
        return dict(zip(keys, self.context.all_reduce_sum(local)))

    def _loss(self, network: nn.Module, batch: dict[str, Tensor], normalizers: dict[str, Tensor],
              **forward_options: Any) -> LossOutput:
        with autocast_context(self.amp, self.device):
            outputs = network(batch["image"], **forward_options)
        return self.loss_fn(outputs_to_float32(outputs), batch, normalizers)

    @staticmethod
    def _components(result: LossOutput) -> Tensor:
        zero = result.total.new_zeros(())  # the attention term of networks without attention
        return torch.stack([result.components.get(name, zero).detach().double() for name in LOSS_NAMES])

    def _global_losses(self, local: Tensor) -> dict[str, float]:
        values = self.context.all_reduce_sum(local).tolist()
        losses = dict(zip(LOSS_NAMES, values))
        return {"loss": sum(values), **losses}

    def _nonfinite(self, losses: dict[str, float]) -> None:
        """A NaN/Inf loss: stop with TrainingError (``on_nonfinite: stop``) or skip the step."""
        detail = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        if self.config.on_nonfinite == "skip":
            self.skipped_steps += 1
            self._say(f"iteration {self.iteration}: non-finite loss ({detail}); step skipped")
            self.logger.log("skipped_step", self.iteration, **losses)
            return
        last = self.checkpoints.last_path
        kept = f"the last good checkpoint is {last.resolve()}" if last.exists() else "no checkpoint was written yet"
        raise TrainingError(
            f"non-finite loss at iteration {self.iteration} ({detail}); training stopped, {kept}. Resume with "
            f"--resume (perhaps with a lower optim.lr), or set on_nonfinite: skip"
        )

    # ----------------------------------------------------------------------------- periodic work
    def _validate(self) -> None:
        """Validation loss: mean over ``val_batches`` fixed batches, BatchNorm in eval mode."""
        assert self.val_samples is not None, "validation runs only with data.val"
        loader = stream_loader(self.val_samples, self.layout, 0, self.config.val_batches, self.config.workers,
                               pin_memory=self.device.type == "cuda")
        total = torch.zeros(len(LOSS_NAMES), dtype=torch.float64, device=self.device)
        model = self.averaged_model.eval()
        with torch.no_grad():
            for micro_batches in grouped(loader, self.config.grad_accum):
                batches = self._unpack(micro_batches)
                normalizers = self._global_normalizers(batches)
                for batch in batches:
                    total += self._components(self._loss(model, batch, normalizers, all_stacks=True))
        set_train_mode(self.model, self.config.batchnorm)
        losses = {k: v / self.config.val_batches for k, v in self._global_losses(total).items()}
        self.logger.log("val", self.iteration, **losses)
        self._say(f"iteration {self.iteration}: validation loss {losses['loss']:.4f}")

    def _evaluate(self) -> None:
        """COCO evaluation of the current weights on ``data.val`` (rank 0; the others wait): the
        saccade detector in ``eval_mode`` for CornerNet-Saccade, the CornerNet tester (official test
        settings of the network's stride) for the others."""
        if self.context.is_main:
            assert self.config.data.val is not None, "TrainConfig: eval_every needs data.val"
            model = self.averaged_model
            settings: dict[str, Any] = {"mode": self.config.eval_mode} if model.has_attention else {}
            detector = Detector(model, class_names=self.class_names, **settings)
            result = evaluate(detector, self.config.data.val, image_root=self.config.data.val_image_root,
                              max_images=self.config.eval_images, progress=False, format=self.config.data.format)
            self.logger.log("eval", self.iteration, **result.as_dict())
            self._say(f"iteration {self.iteration}:\n{result.table()}")
        set_train_mode(self.model, self.config.batchnorm)
        self.context.barrier()

    def _save(self) -> None:
        """Training checkpoint of the current iteration (rank 0 writes)."""
        if self.context.is_main:
            averaged = {} if self.average is None else {
                "train_weights": self.model.state_dict(), "ema_updates": self.average.updates}
            path = self.checkpoints.save(
                self.iteration, self.averaged_model, config=config_to_dict(self.config), class_names=self.class_names,
                optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(), rng=capture_rng_state(),
                counters={"skipped_samples": self.skipped_samples, "skipped_steps": self.skipped_steps},
                **averaged,
            )
            self.logger.log("checkpoint", self.iteration, path=str(path))
        self._saved_at = self.iteration


def run_training(config: TrainConfig, resume: StoredCheckpoint | None = None) -> TrainResult:
    """Train with ``config`` (in a torchrun job: as one of its processes), optionally resuming."""
    threads = set_threads(config.threads)
    if threads.warning:
        warnings.warn(threads.warning, RuntimeWarning, stacklevel=2)
    context = setup(config.device)
    try:
        return Trainer(config, context, resume).run()
    finally:
        teardown(context)
