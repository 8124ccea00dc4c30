"""The GPU checks and timings in one prepared run: the CUDA tests, training steps under autocast, DDP
with NCCL, and the per-image latency of the three detectors per backend, printed as one table.

Written before any GPU was lent to the project, so that a short loan (about 15 minutes of device time
a session) is not wasted: the script downloads nothing, asks nothing, and finishes in under 8 minutes
on one H100-class GPU. Each step runs in a child process with its own time limit (``BUDGETS``); no
step starts once ``TOTAL_BUDGET_S`` has passed. A case that fails, a child that crashes or runs out
of time becomes a ``failed`` row and the run goes on. Steps:

1. **CUDA tests**: ``pytest -q -m cuda tests`` (the tests marked ``cuda``, which skip without a GPU);
   passed / failed / skipped counts.
2. **Training step** through the project's ``Trainer(config, DistContext(0, 1, cuda))``, on a small
   config (``shapes_small``) and on the official CornerNet-Saccade one (``coco_official``: batch 12,
   the original's per-GPU batch, and 5 classes for the generated data), each with ``amp`` none, bf16,
   fp16 (with the gradient scaler) and auto (the row says what it chose and why). The trainer's own
   optimizer step runs on micro-batches built beforehand (untimed), ``torch.cuda.synchronize()``
   around each; the row gives the median seconds per iteration after the warm-up ones and their
   spread (min-max), crops/s, the loss and the peak memory.
3. **DDP**: ``torchrun --standalone --nproc_per_node=1 -m cornernet_saccade train`` on a small
   generated shapes dataset must finish and write ``last.pt``. One process forms no process group
   (WORLD_SIZE 1 trains as a plain process), so a second row runs the same Trainer in a process
   group of one over NCCL, told it is distributed: its network wrapped in DistributedDataParallel,
   the gradient all-reduce and the trainer's collectives through NCCL.
4. **Latency** per image, one image per call, of CornerNet-Saccade (2 + up to 30 crops on demo.jpg),
   CornerNet-Squeeze and CornerNet: official architectures with the reference fill (as
   benchmarks/family.py), on the original's demo.jpg when present, else examples/shapes_scene.jpg.
   Backends eager, auto (the row says what it picked), fast and fast-bf16, and auto's fast path with
   CUDA graphs (``FastNetwork(cuda_graphs=True)``: a graph captured per input shape during the
   warm-up, replayed afterwards). Median and min-max of the timed runs after warm-up, synchronized;
   ``x eager`` is eager's median over the row's, in this run. ``torch.compile`` is left out:
   compiling the official networks takes minutes per input shape (benchmarks/inference.py
   ``--backends fast-compile`` times it).
5. The table, after the machine: CPU model and flags, torch, CUDA, cuDNN and NCCL versions, the
   GPU's name and memory. ``--out`` also writes it to a file.

``--dry-run`` rehearses every step on the CPU in miniature: tiny networks, a tiny image, one timed
iteration, gloo instead of NCCL. fp16 autocast and CUDA graphs need CUDA: their rows are ``skipped``
in the dry run (and only there). tests/test_gpu_script.py runs it.

    python benchmarks/gpu.py --out docs/gpu_table.md     # on a GPU machine
    python benchmarks/gpu.py --dry-run                   # anywhere: the rehearsal, under a minute
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from common import ROOT, argument_parser, default_images, machine_header, markdown_table, run_seconds
from family import MODELS, filled_model
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cornernet_saccade.backends import make_backend, resolve_backend
from cornernet_saccade.backends.device import resolve_device
from cornernet_saccade.backends.distributed import DistContext
from cornernet_saccade.backends.fast import FastNetwork
from cornernet_saccade.backends.hardware import choose_amp, detect_capability
from cornernet_saccade.datasets.shapes import SceneConfig, make_shapes_dataset
from cornernet_saccade.engine.loader import stream_loader
from cornernet_saccade.engine.train_config import load_train_config
from cornernet_saccade.engine.trainer import MicroBatch, Trainer, grouped
from cornernet_saccade.images import read_image
from cornernet_saccade.inference.detector import Detector
from cornernet_saccade.inference.results import Detections
from cornernet_saccade.model.base import CornerNetBase
from cornernet_saccade.testing import fill_model

STEP_TESTS, STEP_TRAINING, STEP_DDP, STEP_LATENCY = "1 CUDA tests", "2 training", "3 DDP", "4 latency"
STEPS = (STEP_TESTS, STEP_TRAINING, STEP_DDP, STEP_LATENCY)
HEADER = ("step", "case", "status", "result", "s")
#: A worker's stdout line holding one table row (JSON), as the parent reads it.
ROW_PREFIX = "@gpu-row "
#: Time limit of each unit in seconds: (GPU run, dry run). The GPU limits add up to 450 s.
BUDGETS = {
    "cuda-tests": (60, 120), "train-small": (45, 90), "train-official": (100, 90), "ddp-torchrun": (45, 90),
    "ddp-group": (40, 90), "latency-saccade": (80, 90), "latency-squeeze": (35, 90), "latency-cornernet": (45, 90),
}
#: No unit starts after this many seconds of the run, and none runs past it: (GPU run, dry run).
TOTAL_BUDGET_S = (420, 400)
#: Timed and warm-up iterations or detections: (GPU run, dry run).
REPEATS, WARMUP = (5, 1), (2, 1)
TRAIN_AMPS = ("none", "bf16", "fp16", "auto")
#: The training configs of step 2 (bundled names) and what each changes for this run.
TRAIN_CONFIGS = {"small": ("shapes_small", ()),
                 "official": ("coco_official", ("batch_size=12", "model.num_classes=5", "data.image_root=null",
                                                "data.val_image_root=null"))}
#: The network of every training config in the dry run, and of the tiny detectors.
TINY_MODEL: dict[str, Any] = {"num_stacks": 1, "dims": [8, 8, 8, 8], "modules": [1, 1, 1, 1], "stem_dim": 8, "pool_dim": 8, "head_dim": 8}
DRY_TRAIN_OVERRIDES = tuple(f"model.{key}={json.dumps(value)}" for key, value in TINY_MODEL.items()) + ("batch_size=2",)
#: The DDP runs of step 3: a few iterations, no learning-rate warm-up or decay, one checkpoint at the end.
DDP_RUN = ("optim.max_iter=3", "optim.warmup_iters=0", "optim.decay_steps=[]", "checkpoint_every=0")
GRAPHS = "auto + CUDA graphs"
LATENCY_VARIANTS = ("eager", "auto", "fast", "fast-bf16", GRAPHS)
#: The scenes of the generated training data: small, so that building crops stays cheap.
SCENES = SceneConfig(min_width=320, max_width=480, min_height=240, max_height=360, max_objects=8, max_object_size=160)


# ---------------------------------------------------------------- rows


@dataclass
class Row:
    """One line of the table: a case of a step, ``ok`` / ``skipped`` / ``failed``, what it found."""

    step: str
    case: str
    status: str
    result: str
    seconds: float = 0.0

    def cells(self) -> list[str]:
        return [self.step, self.case, self.status, self.result, f"{self.seconds:.1f}"]


def emit(row: Row) -> None:
    """Hand ``row`` to the parent (a worker's stdout)."""
    print(ROW_PREFIX + json.dumps(dataclasses.asdict(row)), flush=True)


def parse_rows(stdout: str) -> list[Row]:
    """The rows a worker emitted."""
    return [Row(**json.loads(line[len(ROW_PREFIX):])) for line in stdout.splitlines() if line.startswith(ROW_PREFIX)]


def attempt(step: str, case: str, measure: Callable[[], tuple[str, str]]) -> Row:
    """The row of one case (``measure() -> (status, result)``); an exception is a failed row."""
    start = time.perf_counter()
    try:
        status, result = measure()
    except Exception as exc:  # a failed case is reported and the step goes on
        status, result = "failed", describe_error(exc)
    finally:
        release_memory()
    return Row(step, case, status, result, time.perf_counter() - start)


def run_case(step: str, case: str, measure: Callable[[], tuple[str, str]]) -> None:
    """A worker's case: :func:`attempt` it and emit its row."""
    emit(attempt(step, case, measure))


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(str(exc))}"


def first_line(text: str, limit: int = 300) -> str:
    lines = text.strip().splitlines()
    return (lines[0] if lines else "")[:limit]


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def spread(seconds: Sequence[float], unit: float = 1.0, digits: int = 3) -> str:
    """``median (min-max)`` of ``seconds`` divided by ``unit``."""
    values = [s / unit for s in seconds]
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def peak_memory() -> str:
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return ""
    return f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"


# ---------------------------------------------------------------- the run's plan and its child processes


@dataclass(frozen=True)
class Plan:
    """What every unit shares: the dry-run switch and the run's scratch folder."""

    dry_run: bool
    work: Path

    @property
    def index(self) -> int:
        """Which element of a (GPU run, dry run) pair applies."""
        return int(self.dry_run)

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    @property
    def train_json(self) -> Path:
        return self.work / "shapes" / "train.json"

    def folder(self, name: str) -> Path:
        """A new, empty run folder under the scratch folder."""
        return Path(tempfile.mkdtemp(prefix=f"{name}_", dir=self.work))

    def train_overrides(self, out_dir: Path, extra: Sequence[str] = ()) -> list[str]:
        """``--set`` values that point a bundled config at the generated data and ``out_dir``: no
        validation, no evaluation, no loader processes; the tiny network in the dry run."""
        run = [f"data.train={self.train_json}", "data.val=null", "data.format=coco", "val_every=0", "eval_every=0",
               "workers=0", "init_weights=null", f"device={self.device}", f"out_dir={out_dir}", "log_every=1"]
        return [*run, *extra, *(DRY_TRAIN_OVERRIDES if self.dry_run else ())]


@dataclass(frozen=True)
class Finished:
    """A child process that ended: exit code (None: killed at its time limit), output, seconds."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    limit_s: float


def run_command(command: Sequence[str], limit_s: float) -> Finished:
    """Run ``command`` in the repository root, killing it and its own children after ``limit_s``."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its own process group: a timeout ends torchrun's workers too
    try:
        stdout, stderr = process.communicate(timeout=limit_s)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        returncode = None
    return Finished(returncode, stdout, stderr, time.perf_counter() - start, limit_s)


@dataclass(frozen=True)
class Unit:
    """One child process of the run: the ``step`` it belongs to, its ``name`` (a key of ``BUDGETS``),
    its command line and how its rows are read from its output."""

    step: str
    name: str
    command: Callable[[Plan], list[str]]
    rows: Callable[[Plan, Finished], list[Row]]


def run_unit(unit: Unit, plan: Plan, limit_s: float) -> list[Row]:
    """The rows of ``unit`` run with time limit ``limit_s``, plus a failed row if it timed out or
    crashed without reporting a failure itself."""
    print(f"{unit.step}: {unit.name} (at most {limit_s:.0f} s)", file=sys.stderr, flush=True)
    finished = run_command(unit.command(plan), limit_s)
    rows = unit.rows(plan, finished)
    if finished.returncode is None:
        rows.append(Row(unit.step, unit.name, "failed",
                        f"stopped at its time limit of {finished.limit_s:.0f} s (rows above it finished)", finished.seconds))
    elif finished.returncode != 0 and not any(row.status == "failed" for row in rows):
        rows.append(Row(unit.step, unit.name, "failed",
                        f"exit code {finished.returncode}: {error_line(finished.stderr)}", finished.seconds))
    for row in rows:  # as they come, so that a run cut short from outside still shows them
        print(f"  {row.case}: {row.status}: {row.result}", file=sys.stderr, flush=True)
    return rows


def error_line(text: str) -> str:
    """The first line of ``text`` that names an error (``Error: ...``, ``ValueError: ...``, pytest's
    ``FAILED ...``), else its last line with words in it (not a rule of ``=`` or ``-``)."""
    lines = [line.strip() for line in text.splitlines() if re.search(r"\w", line)]
    errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b|(FAILED|ERROR) ", line)]
    return (errors or lines or ["(no output)"])[0 if errors else -1][:300]


# ---------------------------------------------------------------- step 1: the CUDA tests


def pytest_command(plan: Plan) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]


def pytest_rows(plan: Plan, finished: Finished) -> list[Row]:
    """One row from pytest's summary line: failed on any failure or error, or when no CUDA test ran
    on the GPU; skipped when all skipped in the dry run."""
    if finished.returncode is None:
        return []
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", finished.stdout)}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    passed, skipped = counts.get("passed", 0), counts.get("skipped", 0)
    summary = f"{passed} passed, {failed} failed, {skipped} skipped (pytest -m cuda)"
    if failed or finished.returncode != 0:
        status, summary = "failed", f"{summary}: {error_line(finished.stdout)}"
    elif passed:
        status = "ok"
    else:
        status = "skipped" if plan.dry_run else "failed"
        summary += "; no CUDA test ran" + (" (no CUDA in the dry run)" if plan.dry_run else "")
    return [Row(STEP_TESTS, "tests marked cuda", status, summary, finished.seconds)]


# ---------------------------------------------------------------- step 2: training steps


def prefetched(trainer: Trainer, count: int) -> list[list[MicroBatch]]:
    """The micro-batches of the trainer's first ``count`` iterations, built now (in this process)."""
    loader = stream_loader(trainer.train_samples, trainer.layout, 0, count, workers=0, pin_memory=False)
    return list(itertools.islice(grouped(loader, trainer.config.grad_accum), count))


def time_steps(trainer: Trainer, iterations: list[list[MicroBatch]], warmup: int) -> tuple[list[float], dict[str, float]]:
    """Seconds of each of the trainer's optimizer steps on ``iterations`` after the first ``warmup``,
    and the last step's losses."""
    seconds, losses = [], {}
    for index, micro_batches in enumerate(iterations):
        synchronize()
        start = time.perf_counter()
        trainer.iteration += 1
        losses = trainer._step(micro_batches)  # the run's own step: autocast, gradient scaler, Adam, averaging
        synchronize()
        if index >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds, losses


def training_case(plan: Plan, config_key: str, amp: str) -> tuple[str, str]:
    """Time the training step of ``TRAIN_CONFIGS[config_key]`` with ``amp``."""
    if amp == "fp16" and plan.device == "cpu":
        return "skipped", "fp16 autocast needs CUDA (dry run on the CPU)"
    name, extra = TRAIN_CONFIGS[config_key]
    config = load_train_config(name, plan.train_overrides(plan.folder(f"train_{config_key}_{amp}"), [*extra, f"amp={amp}"]))
    trainer = Trainer(config, DistContext(0, 1, resolve_device(plan.device)))
    try:
        batches = prefetched(trainer, REPEATS[plan.index] + WARMUP[plan.index])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        seconds, losses = time_steps(trainer, batches, WARMUP[plan.index])
    finally:
        trainer.logger.close()
    chose = f"chose {trainer.amp} ({trainer.amp_reason}); " if amp == "auto" else ""
    crops = config.batch_size / statistics.median(seconds)
    return "ok", (f"{chose}{spread(seconds)} s/iteration, batch {config.batch_size}, {crops:.1f} crops/s, "
                  f"loss {losses['loss']:.4g}{peak_memory()}")


def training_worker(plan: Plan, config_key: str) -> None:
    """Step 2 for one config: a row per ``amp`` setting."""
    for amp in TRAIN_AMPS:
        run_case(STEP_TRAINING, f"{TRAIN_CONFIGS[config_key][0]}, amp {amp}", lambda: training_case(plan, config_key, amp))


# ---------------------------------------------------------------- step 3: DDP


def torchrun_command(plan: Plan) -> list[str]:
    """``torchrun --standalone --nproc_per_node=1 -m cornernet_saccade train`` of a short shapes_small run."""
    overrides = plan.train_overrides(plan.work / "ddp_torchrun", DDP_RUN)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
            "-m", "cornernet_saccade", "train", "--config", "shapes_small", *itertools.chain(*(("--set", o) for o in overrides))]


def torchrun_rows(plan: Plan, finished: Finished) -> list[Row]:
    """Ok when torchrun finished and the run folder holds ``last.pt``."""
    if finished.returncode is None:
        return []
    checkpoint = plan.work / "ddp_torchrun" / "last.pt"
    said = [line for line in finished.stdout.splitlines() if line.startswith("finished at")]
    if finished.returncode == 0 and checkpoint.is_file() and said:
        status = "ok"
        result = (f"{said[0]}; wrote last.pt ({checkpoint.stat().st_size / 1e6:.1f} MB); one process forms no "
                  f"process group (next row)")
    else:
        status = "failed"
        result = f"exit code {finished.returncode}, last.pt {'written' if checkpoint.is_file() else 'missing'}: {error_line(finished.stderr)}"
    return [Row(STEP_DDP, "torchrun, 1 process, train CLI", status, result, finished.seconds)]


class GroupOfOne(DistContext):
    """A process group of one that the Trainer treats as distributed: it wraps the network in
    DistributedDataParallel and runs its all-reduces and barriers through the group."""

    @property
    def distributed(self) -> bool:
        return True


def ddp_group_case(plan: Plan) -> tuple[str, str]:
    """Train the short DDP_RUN in a process group of one (NCCL on CUDA, gloo in the dry run)."""
    device = resolve_device(plan.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                            device_id=device if device.type == "cuda" else None)
    try:
        overrides = plan.train_overrides(plan.folder("ddp_group"), DDP_RUN)
        trainer = Trainer(load_train_config("shapes_small", overrides), GroupOfOne(0, 1, device))
        wrapped = isinstance(trainer.network, DistributedDataParallel)
        result = trainer.run()
    finally:
        dist.destroy_process_group()
    if not wrapped or result.checkpoint is None or not np.isfinite(result.loss.get("loss", np.nan)):
        return "failed", f"DDP wrapper: {wrapped}, checkpoint: {result.checkpoint}, losses: {result.loss}"
    return "ok", (f"{backend} process group of 1, network in DistributedDataParallel: {result.iteration} iterations, "
                  f"loss {result.loss['loss']:.4g}, wrote {result.checkpoint.name}")


def ddp_worker(plan: Plan) -> None:
    """Step 3's second row: the Trainer with DDP in a process group of one."""
    run_case(STEP_DDP, "process group of 1, Trainer with DDP", lambda: ddp_group_case(plan))


# ---------------------------------------------------------------- step 4: latency


def latency_image(plan: Plan) -> tuple[str, np.ndarray]:
    """The original's demo.jpg when present, else examples/shapes_scene.jpg; a quarter of its
    sides in the dry run."""
    first = default_images(with_demo=True)[0]
    path = first if first.name == "demo.jpg" else ROOT / "examples" / "shapes_scene.jpg"
    pixels = read_image(path)
    return (f"{path.name}/4", np.ascontiguousarray(pixels[::4, ::4])) if plan.dry_run else (path.name, pixels)


def latency_model(plan: Plan, name: str) -> CornerNetBase:
    """The official architecture with the reference fill, or a tiny one in the dry run; eval mode, on the device."""
    if plan.dry_run:
        model = MODELS[name](num_classes=3, **TINY_MODEL)
        fill_model(model)
    else:
        model = filled_model(name)
    return model.eval().to(resolve_device(plan.device))


def variant_network(model: CornerNetBase, variant: str, device: str) -> tuple[nn.Module, str]:
    """The network of a latency variant and its label (``auto`` names its pick)."""
    picked = resolve_backend("auto", device)[0]
    if variant == GRAPHS:
        dtype = torch.bfloat16 if picked == "fast-bf16" else torch.float32
        return FastNetwork(model, dtype=dtype, cuda_graphs=True), f"{picked} + CUDA graphs"
    label = f"auto ({picked})" if variant == "auto" else variant
    return make_backend(model, variant), label


def time_detector(network: nn.Module, pixels: np.ndarray, plan: Plan) -> tuple[list[float], Detections]:
    """Seconds of each timed detection of ``pixels`` (synchronized) and the last detections."""
    detector = Detector(network)
    last: list[Detections] = []

    def detect() -> None:
        last[:] = [detector(pixels)]
        synchronize()

    with torch.inference_mode():
        seconds = run_seconds(detect, REPEATS[plan.index], WARMUP[plan.index])
    return seconds, last[0]


def latency_case(plan: Plan, model: CornerNetBase, variant: str, pixels: np.ndarray, eager: list[float]) -> tuple[str, str]:
    """Time ``variant``; ``eager`` holds eager's median once measured (for ``x eager``)."""
    if variant == GRAPHS and plan.device == "cpu":
        return "skipped", "CUDA graphs need CUDA (dry run on the CPU)"
    network, label = variant_network(model, variant, plan.device)
    seconds, found = time_detector(network, pixels, plan)
    if variant == "eager":
        eager.append(statistics.median(seconds))
    ratio = f", {eager[0] / statistics.median(seconds):.2f}x eager" if eager else ""
    count = len(found.trace.crops)
    views = f"{count} view{'s' * (count != 1)}, {found.trace.network_pixels / 1e6:.2f} Mpx of network input"
    return "ok", f"{label}: {spread(seconds, 1e-3, 1)} ms, {views}{ratio}"


def latency_worker(plan: Plan, name: str) -> None:
    """Step 4 for network ``name``: a row per variant, eager first (the ``x eager`` reference)."""
    image, pixels = latency_image(plan)
    model = latency_model(plan, name)
    eager: list[float] = []
    for variant in LATENCY_VARIANTS:
        run_case(STEP_LATENCY, f"{name}, {variant}, {image}", lambda: latency_case(plan, model, variant, pixels, eager))


# ---------------------------------------------------------------- the units, the header, the report

WORKERS: dict[str, Callable[[Plan], None]] = {
    **{f"train-{key}": functools.partial(training_worker, config_key=key) for key in TRAIN_CONFIGS},
    "ddp-group": ddp_worker,
    **{f"latency-{name}": functools.partial(latency_worker, name=name) for name in MODELS},
}


def worker_unit(step: str, name: str) -> Unit:
    """A unit that runs this script's worker ``name`` (its rows: the lines it emits)."""

    def command(plan: Plan) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--work", str(plan.work),
                *(["--dry-run"] if plan.dry_run else [])]

    return Unit(step, name, command, lambda plan, finished: parse_rows(finished.stdout))


UNITS = (
    Unit(STEP_TESTS, "cuda-tests", pytest_command, pytest_rows),
    worker_unit(STEP_TRAINING, "train-small"),
    worker_unit(STEP_TRAINING, "train-official"),
    Unit(STEP_DDP, "ddp-torchrun", torchrun_command, torchrun_rows),
    worker_unit(STEP_DDP, "ddp-group"),
    *(worker_unit(STEP_LATENCY, f"latency-{name}") for name in MODELS),
)


def gpu_header() -> str:
    """The GPU, CUDA, cuDNN and NCCL, and what ``auto`` picks on it (a line saying so without CUDA)."""
    if not torch.cuda.is_available():
        return f"GPU: none (torch {torch.__version__}, CUDA not available)"
    props = torch.cuda.get_device_properties(0)
    nccl = nccl_version() if dist.is_nccl_available() else "not available"
    capability = detect_capability("cuda")
    return "\n".join([
        f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}, "
        f"{torch.cuda.device_count()} visible",
        f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, NCCL {nccl}; fp32 convolutions "
        f"in TF32: {'yes' if torch.backends.cudnn.allow_tf32 else 'no'} (torch.backends.cudnn.allow_tf32)",
        f"on the GPU: backend auto = {resolve_backend('auto', 'cuda')[0]}, amp auto = {choose_amp(capability)[0]}",
    ])


def nccl_version() -> str:
    """NCCL's version as torch reports it (a tuple in recent releases, an int in older ones)."""
    version = torch.cuda.nccl.version()
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def machine() -> str:
    """The machine header (CPU, libraries, GPU), or why it could not be read: the run goes on."""
    try:
        return f"{machine_header(torch.get_num_threads())}\n{gpu_header()}"
    except Exception as exc:
        return f"the machine could not be described: {describe_error(exc)}"


def report(rows: Sequence[Row], header: str, plan: Plan, seconds: float) -> str:
    """The markdown report: the machine (``header``), then the table."""
    title = "`python benchmarks/gpu.py" + (" --dry-run`: the CPU rehearsal, not a measurement" if plan.dry_run else "`")
    return "\n".join([
        f"### {title}", "", "```", header, "```", "",
        markdown_table(HEADER, [row.cells() for row in rows]), "",
        f"{len(rows)} rows, {sum(row.status == 'failed' for row in rows)} failed; the whole run took {seconds:.0f} s.", "",
    ])


def prepare(plan: Plan) -> list[Row]:
    """Generate the training data of steps 2 and 3; a failed row if that failed (those steps fail then too)."""

    def generate() -> tuple[str, str]:
        make_shapes_dataset(plan.work / "shapes", seed=0, num_train=8, config=SCENES)
        return "ok", "8 scenes"

    row = attempt("0 data", "generated shapes scenes", generate)
    return [row] if row.status == "failed" else []


def run_all(plan: Plan) -> list[Row]:
    """Every unit in order, each within its own limit and what is left of the total."""
    start = time.perf_counter()
    rows: list[Row] = []
    for unit in UNITS:
        left = TOTAL_BUDGET_S[plan.index] - (time.perf_counter() - start)
        if left < 1:
            rows.append(Row(unit.step, unit.name, "failed", "not started: the run's total time was spent"))
            continue
        rows += run_unit(unit, plan, min(BUDGETS[unit.name][plan.index], left))
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__ or "")
    parser.add_argument("--dry-run", action="store_true", help="rehearse every step on the CPU in miniature")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) to this file")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)  # a child process: one unit
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)  # the run's scratch folder
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("CUDA is not available here: run it on a GPU machine, or rehearse with --dry-run")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        WORKERS[args.worker](Plan(args.dry_run, args.work))
        return 0
    start = time.perf_counter()
    header = machine()
    print(header, file=sys.stderr, flush=True)  # first, so that a run cut short still shows the machine
    with tempfile.TemporaryDirectory(prefix="gpu_script_") as work:
        plan = Plan(args.dry_run, Path(work))
        rows = prepare(plan) + run_all(plan)
    text = report(rows, header, plan, time.perf_counter() - start)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if any(row.status == "failed" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
