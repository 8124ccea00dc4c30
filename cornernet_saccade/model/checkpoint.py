"""Reading and writing weights: the official ``.pkl``, the project's checkpoints, safetensors.

Formats accepted by :func:`read_checkpoint`:

* the official ``CornerNet_Saccade_500000.pkl``: a state_dict written by torch 1.0 (legacy, non-zip
  serialisation) whose keys carry a ``module.`` prefix;
* the project's checkpoints (:func:`save_checkpoint`): a torch zip file holding
  ``{"format": "cornernet_saccade", "model": state_dict, "model_config": {...}, ...}`` plus, for
  training checkpoints, optimizer/scheduler/RNG state and the iteration;
* ``.safetensors`` files, with the model config as JSON in the metadata when we wrote them.

Loading never unpickles code: torch files are read with ``weights_only=True`` (torch >= 2.10; older
releases' restricted unpickler had code-execution holes), safetensors holds no code at all. Writes go
to a temporary file in the target folder, are flushed to disk, then renamed over the target, so a
process killed mid-save leaves the previous file intact.
"""
from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from cornernet_saccade.config import check_tree_size, config_from_dict, config_with_overrides
from cornernet_saccade.errors import CheckpointError, ConfigError
from cornernet_saccade.outputs import atomic_write

FORMAT_TAG = "cornernet_saccade"
#: The file a training run folder points at its newest checkpoint with.
RUN_LAST_CHECKPOINT = "last.pt"
OFFICIAL_PREFIX = "module."
#: File name ending of the ONNX exports (``export-onnx``), which only the onnxruntime backend runs.
ONNX_SUFFIX = ".onnx"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
# Heads whose last conv depends on the number of classes (re-initialised when fine-tuning).
CLASS_DEPENDENT_PREFIXES = ("tl_heats.", "br_heats.")


@dataclass
class StoredCheckpoint:
    """What a weights file holds: the model state_dict (unprefixed keys) and optional extras.

    ``model_config``: a dict for the network's config (e.g.
    :class:`~cornernet_saccade.model.cornernet_saccade.CornerNetSaccadeConfig`), when the file has one;
    ``training_state``: everything else a training checkpoint carries (optimizer, iteration, ...).
    """

    path: str
    state_dict: dict[str, Tensor]
    model_config: dict[str, Any] | None = None
    training_state: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str] | None:
        """Class names the file carries (``class_names`` of a training checkpoint, or the JSON-encoded
        ``class_names`` metadata of a safetensors file), else ``None``. CheckpointError when the entry
        is not a list of strings."""
        names = self._entry("class_names")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise CheckpointError(f"{self.path}: class_names is not a list of strings: {_shorten(names)}")
        return names

    @property
    def test_settings(self) -> dict[str, Any] | None:
        """Detector settings stored with the weights (JSON ``test_settings`` metadata of a safetensors
        file, or the entry of a training checkpoint), else ``None``. CheckpointError when the entry is
        not a mapping."""
        settings = self._entry("test_settings")
        if settings is not None and not isinstance(settings, dict):
            raise CheckpointError(f"{self.path}: test_settings is not a mapping: {_shorten(settings)}")
        return settings

    def _entry(self, key: str) -> Any:
        """``training_state[key]``, else the JSON-decoded ``metadata[key]``, else ``None``."""
        value = self.training_state.get(key)
        if value is None and key in self.metadata:
            value = _json_metadata(self.path, self.metadata, key)
        return value


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _json_metadata(path: str | Path, metadata: dict[str, Any], key: str) -> Any:
    """The JSON value of ``metadata[key]``; CheckpointError naming the file and key when malformed."""
    try:
        return json.loads(metadata[key])
    except (TypeError, ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: metadata entry {key!r} is not valid JSON ({exc})") from None


#: Largest pickle (the structure of a torch zip file: ``data.pkl``, tensors apart) read: a training
#: checkpoint of the official network holds under 1 MB; a few hundred KB of deflated pickle opcodes
#: can expand to gigabytes of Python objects.
MAX_PICKLE_BYTES = 16 << 20
#: Largest ratio of a torch zip file's stored (uncompressed) size to its size on disk: ``torch.save``
#: stores its members uncompressed, a file built to expand on reading is refused before it does.
MAX_EXPANSION = 4


def _check_zip_sizes(path: Path) -> None:
    """CheckpointError naming ``path`` when its zip directory declares a pickle above
    :data:`MAX_PICKLE_BYTES` or members that expand beyond :data:`MAX_EXPANSION` times the file
    (only the directory is read; the members are never decompressed here)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load reports the malformed file
    for member in members:
        if member.filename.endswith(".pkl") and member.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path}: its pickle {member.filename} declares {member.file_size:,} bytes, above "
                                  f"the {MAX_PICKLE_BYTES:,} a checkpoint needs; refusing to read it")
    stored = sum(member.file_size for member in members)
    if stored > MAX_EXPANSION * path.stat().st_size + (1 << 20):
        raise CheckpointError(f"{path}: its members expand to {stored:,} bytes, {stored // path.stat().st_size}x the "
                              f"file; torch checkpoints are stored uncompressed, refusing to read it")


def _torch_load(path: Path) -> Any:
    _check_zip_sizes(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file needs code execution to unpickle, or is not a torch "
            f"checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or foreign file: {exc})") from None


def _read_safetensors(path: Path) -> StoredCheckpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    config = _json_metadata(path, metadata, "model_config") if "model_config" in metadata else None
    return StoredCheckpoint(str(path), state_dict, config, metadata=metadata)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def read_checkpoint(path: str | Path) -> StoredCheckpoint:
    """Read any supported weights file without building a model. CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if path.suffix == ONNX_SUFFIX:
        raise CheckpointError(
            f"{path}: an ONNX export (export-onnx), not a weights file: only the onnxruntime backend runs it "
            "(--backend onnxruntime)"
        )
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.suffix == ".safetensors" or (len(head) == 8 and head[:2] != b"PK" and head[:1] != b"\x80"):
        return _checked(_read_safetensors(path))
    obj = _torch_load(path)
    return _checked(_stored_from_torch(path, obj))


def _stored_from_torch(path: Path, obj: Any) -> StoredCheckpoint:
    """What a loaded torch file holds: a project checkpoint or a (possibly ``module.``-prefixed) state_dict."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT_TAG:
        if not _is_tensor_dict(obj.get("model")):
            raise CheckpointError(f"{path}: project checkpoint without model weights")
        metadata = obj.get("metadata", {})
        if not isinstance(metadata, dict):
            raise CheckpointError(f"{path}: metadata is not a mapping: {_shorten(metadata)}")
        extras = {k: v for k, v in obj.items() if k not in ("format", "model", "model_config", "metadata")}
        return StoredCheckpoint(str(path), obj["model"], obj.get("model_config"), extras, metadata)
    if _is_tensor_dict(obj):
        state_dict = obj
        if all(k.startswith(OFFICIAL_PREFIX) for k in state_dict):
            state_dict = {k[len(OFFICIAL_PREFIX):]: v for k, v in state_dict.items()}
        return StoredCheckpoint(str(path), state_dict)
    raise CheckpointError(f"{path}: not a CornerNet-Saccade checkpoint (found {type(obj).__name__}, expected a state_dict)")


def _checked(stored: StoredCheckpoint) -> StoredCheckpoint:
    """``stored``, once its class names and test settings are known to be well-formed and its stored
    data (config, training state) of bounded size (else CheckpointError): a malformed entry is
    reported when the file is read, not deep in a later step."""
    check_tree_size([stored.model_config, stored.training_state], f"{stored.path}: stored data", CheckpointError)
    _ = stored.class_names, stored.test_settings
    return stored


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def _fit_problems(
    own: dict[str, torch.Size], loaded: dict[str, Tensor], allow_class_change: bool = True
) -> tuple[list[str], list[str]]:
    """How ``loaded`` (a file's tensors) fails to fit a model whose state_dict has the shapes ``own``:
    (problem descriptions, class-dependent head keys whose shapes differ). With
    ``allow_class_change`` those heads are not problems (fine-tuning onto another class set)."""
    missing = sorted(set(own) - set(loaded))
    unexpected = sorted(set(loaded) - set(own))
    misshaped = sorted(k for k in set(own) & set(loaded) if own[k] != loaded[k].shape)
    class_heads = [k for k in misshaped if k.startswith(CLASS_DEPENDENT_PREFIXES) and k.split(".")[2] == "1"]
    if not allow_class_change:
        class_heads = []
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    other_misshaped = [k for k in misshaped if k not in class_heads]
    if other_misshaped:
        detail = [f"{k} {tuple(loaded[k].shape)} vs model {tuple(own[k])}" for k in other_misshaped]
        problems.append(f"mis-shaped keys: {_describe(detail)}")
    return problems, class_heads


#: The dtypes a weight may be stored in (converted to the model's on loading); float8 and the
#: others cannot be checked or converted faithfully.
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _check_values(path: str, tensors: dict[str, Tensor], own: dict[str, Tensor]) -> None:
    """CheckpointError naming ``path`` and the tensors when a tensor cannot hold what the model's
    does (a weight not of :data:`WEIGHT_DTYPES`; a counter not an integer) or holds values that
    silently give no or nonsense detections: NaN or Inf, a negative BatchNorm ``running_var``."""
    checks = [
        ("of a dtype weights cannot have (bool, integer, complex, float8; float32, float16, bfloat16 or float64 "
         "expected)", lambda k, v: (v.dtype not in WEIGHT_DTYPES) if own[k].is_floating_point()
         else (v.is_floating_point() or v.is_complex() or v.dtype == torch.bool)),
        ("non-finite weights (NaN or Inf)", lambda k, v: v.is_floating_point() and not bool(torch.isfinite(v).all())),
        ("negative BatchNorm running_var", lambda k, v: k.endswith("running_var") and bool((v < 0).any())),
    ]
    for problem, is_bad in checks:
        bad = [k for k, v in tensors.items() if is_bad(k, v)]
        if bad:
            raise CheckpointError(f"{path}: {problem} in {len(bad)} tensors: {_describe(bad)}")


def load_checkpoint(model: nn.Module, source: str | Path | StoredCheckpoint) -> StoredCheckpoint:
    """Load weights from ``source`` into ``model`` (strictly) and return what the file held.

    Every key must be present with the right shape, except when only the number of classes differs:
    then the last conv of the heatmap heads (``tl_heats.*.1``, ``br_heats.*.1``) keeps its fresh
    initialisation and a warning names the skipped keys (fine-tuning onto another class set).
    Any other missing, unexpected or mis-shaped key, or a loaded tensor of a wrong dtype or with
    values no trained network has (:func:`_check_values`), raises :class:`CheckpointError` naming
    the file and the keys.
    """
    stored = source if isinstance(source, StoredCheckpoint) else read_checkpoint(source)
    own = model.state_dict()
    loaded = stored.state_dict
    problems, class_heads = _fit_problems({k: v.shape for k, v in own.items()}, loaded)
    if problems:
        raise CheckpointError(f"{stored.path}: does not fit this model; " + "; ".join(problems))
    to_load = {k: v for k, v in loaded.items() if k not in class_heads}
    _check_values(stored.path, to_load, own)
    if class_heads:
        warnings.warn(
            f"{stored.path}: number of classes differs ({loaded[class_heads[0]].shape[0]} in the file, "
            f"{own[class_heads[0]].shape[0]} in the model); keeping every weight except the heatmap heads' "
            f"last conv, which stays freshly initialised: {_describe(class_heads)}",
            stacklevel=2,
        )
    model.load_state_dict({**own, **to_load}, strict=True)
    return stored


def check_model_fits(stored: StoredCheckpoint, cls: type[nn.Module], config: Any, *,
                     allow_class_change: bool = True) -> None:
    """Refuse, before any model memory is allocated, a model config under which ``stored``'s weights
    cannot load: one asking for more residual blocks than the file has tensors, or whose network
    (built on the meta device: shapes only) has other keys, shapes or parameter count than the file.

    ``config``: a ``CornerNetSaccadeConfig`` for ``cls``. CheckpointError naming the file, both parameter counts
    and the keys (or the two networks' names when the file names another one);
    ``allow_class_change`` as in :func:`load_checkpoint`.
    """
    _check_architecture(stored, cls)
    if config.min_tensor_count() > len(stored.state_dict):
        raise CheckpointError(
            f"{stored.path}: does not fit the model config {config}: it needs at least "
            f"{config.min_tensor_count()} tensors, the file holds {len(stored.state_dict)}"
        )
    with torch.device("meta"):
        skeleton = cls(config)
    own = {k: v.shape for k, v in skeleton.state_dict().items()}
    problems, _ = _fit_problems(own, stored.state_dict, allow_class_change)
    if problems:
        implied = sum(shape.numel() for shape in own.values())
        held = sum(v.numel() for v in stored.state_dict.values())
        file_config = stored_model_config(stored)
        holds = f"a network of model config {file_config}, " if isinstance(file_config, dict) else ""
        raise CheckpointError(
            f"{stored.path}: does not fit the model config {config} ({implied:,} values, the file holds "
            f"{holds}{held:,} values); " + "; ".join(problems)
        )


#: ``model_config`` key naming the network (``saccade``, ``squeeze`` or ``cornernet``); files
#: without it (the original ``.pkl``, our files written before the other networks existed) are
#: recognised by their tensor names (:func:`stored_architecture`).
ARCHITECTURE_KEY = "architecture"


def _model_config_dict(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    architecture = getattr(model, "architecture", "")
    return {ARCHITECTURE_KEY: architecture, **values} if architecture else values


def stored_model_config(stored: StoredCheckpoint) -> Any:
    """The file's ``model_config`` without its architecture entry (the network's shape: a mapping of
    the network's config fields), as stored (None when absent; a malformed one as it is)."""
    config = stored.model_config
    return {k: v for k, v in config.items() if k != ARCHITECTURE_KEY} if isinstance(config, dict) else config


def stored_architecture(stored: StoredCheckpoint) -> str:
    """The network a weights file was written by: its ``model_config["architecture"]``, else read
    from the tensor names: attention heads -> ``saccade``, fire modules -> ``squeeze``, otherwise
    ``cornernet``. CheckpointError naming the file when the entry is not a string."""
    config = stored.model_config if isinstance(stored.model_config, dict) else {}  # malformed: reported later
    name = config.get(ARCHITECTURE_KEY, _architecture_of_tensors(stored.state_dict))
    if not isinstance(name, str):
        raise CheckpointError(f"{stored.path}: model_config.{ARCHITECTURE_KEY} must be a string, got {name!r}")
    return name


def _architecture_of_tensors(state_dict: dict[str, Tensor]) -> str:
    if any(k.startswith("att_modules.") for k in state_dict):
        return "saccade"
    if any(".conv_3x3." in k for k in state_dict):
        return "squeeze"
    return "cornernet"


def _check_architecture(stored: StoredCheckpoint, cls: Any) -> None:
    """CheckpointError when ``stored`` was written by another network than ``cls`` (files without a
    ``model_config``, e.g. the original ``.pkl``, are checked by their tensors only)."""
    expected = getattr(cls, "architecture", "")
    if stored.model_config is None or not expected:
        return
    found = stored_architecture(stored)
    if found != expected:
        raise CheckpointError(
            f"{stored.path}: holds a {found!r} network (model_config.{ARCHITECTURE_KEY}), not a {expected!r} one "
            f"({cls.__name__}); load it with that network's class"
        )


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    class_names: list[str] | None = None,
    test_settings: dict[str, Any] | None = None,
    **training_state: Any,
) -> None:
    """Write the model weights, config, class names and test settings (and any training state given)
    atomically. ``class_names`` / ``test_settings`` default to the model's own attributes of those
    names (set by :func:`model_from_checkpoint`).

    ``.safetensors`` paths get a safetensors file (weights, with the config, class names and test
    settings as JSON metadata); other paths a torch zip file readable with ``weights_only=True`` (so
    ``training_state`` must hold only tensors and plain Python data).
    """
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    class_names = class_names if class_names is not None else getattr(model, "class_names", None)
    test_settings = test_settings if test_settings is not None else getattr(model, "test_settings", None)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = _model_config_dict(model)
    if str(path).endswith(".safetensors"):
        if training_state:
            raise ValueError("safetensors files hold weights only; save training state to a .pt file")
        from safetensors.torch import save_file

        metadata = {"format": FORMAT_TAG, "model_config": json.dumps(config)}
        if class_names is not None:
            metadata["class_names"] = json.dumps(list(class_names))
        if test_settings is not None:
            metadata["test_settings"] = json.dumps(test_settings)
        atomic_write(path, lambda tmp: save_file(state_dict, tmp, metadata=metadata))
        return
    if class_names is not None:
        training_state["class_names"] = list(class_names)
    if test_settings is not None:
        training_state["test_settings"] = dict(test_settings)
    payload = {"format": FORMAT_TAG, "model": state_dict, "model_config": config, **training_state}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def bundled_model_names() -> list[str]:
    """Names of the bundled default models (``cornernet_saccade/weights/<name>.safetensors``), sorted."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def bundled_weights_path(name: str) -> Path:
    """Path of a bundled default model (``cornernet_saccade/weights/<name>.safetensors``)."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"no bundled model named {name!r} (available: {bundled_model_names() or 'none'})")
    return path


def resolve_weights_path(weights: str | Path) -> Path:
    """The file behind ``weights``: a weights file, a training run folder (its ``last.pt``) or the
    name of a bundled model (e.g. ``shapes``). CheckpointError naming ``weights`` when none fits."""
    path = Path(weights)
    if path.exists():
        _warn_if_shadowing(path)
    if path.is_file():
        return path
    if path.is_dir():
        last = path / RUN_LAST_CHECKPOINT
        if last.is_file():
            return last
        raise CheckpointError(f"{path}: a folder without {RUN_LAST_CHECKPOINT} (not a training run folder)")
    if path.suffix or len(path.parts) > 1:
        raise CheckpointError(f"{path}: no such weights file")
    return bundled_weights_path(str(weights))


def _warn_if_shadowing(path: Path) -> None:
    """Warn, naming both, when the local ``path`` is taken for a bare name that is also a bundled
    model's (a folder ``shapes`` in the working directory hides the bundled ``shapes``)."""
    bundled = WEIGHTS_DIR / f"{path}.safetensors"
    if len(path.parts) == 1 and not path.suffix and bundled.is_file():
        warnings.warn(f"{path}: loading {path.resolve()} from the working directory, not the bundled model "
                      f"{path.name!r}; to load the bundled one, pass its path {bundled}", stacklevel=3)


ModelT = TypeVar("ModelT", bound=nn.Module)


def model_from_checkpoint(
    cls: type[ModelT], weights: str | Path, config: Any = None, **overrides: Any
) -> ModelT:
    """Build ``cls`` from ``weights`` (a path, run folder or bundled name, see
    :func:`resolve_weights_path`) in eval mode, built with the file's ``class_names`` and
    ``test_settings``.

    The model configuration is ``config`` / ``overrides`` when given, else the file's, else the
    official defaults. It is validated and checked against the file's tensors
    (:func:`check_model_fits`) before the model is built; the weights are loaded by
    :func:`load_checkpoint`.
    """
    return model_from_stored(cls, read_checkpoint(resolve_weights_path(weights)), config, **overrides)


def model_from_stored(cls: type[ModelT], stored: StoredCheckpoint, config: Any = None, **overrides: Any) -> ModelT:
    """:func:`model_from_checkpoint` of a file already read (:func:`read_checkpoint`)."""
    resolved = _resolved_model_config(stored, cls, config, overrides)
    check_model_fits(stored, cls, resolved, allow_class_change=config is not None or "num_classes" in overrides)
    model = cls(resolved, class_names=stored.class_names, test_settings=stored.test_settings)
    load_checkpoint(model, stored)
    return model.eval()


def _resolved_model_config(stored: StoredCheckpoint, cls: Any, config: Any, overrides: dict[str, Any]) -> Any:
    """The model config (of ``cls.config_class``) of :func:`model_from_checkpoint`: ``config`` (ConfigError when invalid) or
    the file's ``model_config`` (CheckpointError naming the file when of a wrong type or out of
    range), then ``overrides``."""
    config_class = cls.config_class
    _check_architecture(stored, cls)
    if config is None:
        file_config = stored_model_config(stored)
        try:
            config = config_from_dict(config_class, file_config, f"{stored.path}: model_config")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
    return config_with_overrides(config_class, config, overrides, "model config")
