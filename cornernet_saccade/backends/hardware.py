"""What the machine multiplies fast, read at run time: the CPU's model and vector/matrix flags, and
CUDA's bf16 support. Choices that depend on the hardware (bf16 autocast in training, the detector
backend ``auto``) are made from a :class:`Capability` by one function each, which also says why.

bf16 pays on a CPU only with AMX (Intel's matrix tiles: ``amx_bf16``): there the detector ran 4x
faster in bf16 than eager fp32 (docs/benchmarks.md). With ``avx512_bf16`` alone (bf16 dot products in
the vector units) the earlier development VM multiplied bf16 at half its fp32 rate and the bf16 path
was slower than ``fast``; without it bf16 is emulated, slower still.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

#: CPU flags (as /proc/cpuinfo spells them) that bear on the speed of the networks, in print order.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Capability:
    """The compute device's facts that choose dtypes and backends.

    ``device``: ``cpu`` or ``cuda``; ``name``: the CPU model or GPU name; ``flags``: the
    :data:`SPEED_FLAGS` the CPU has; ``fast_bf16``: bf16 matrix products run markedly faster than fp32
    (a CPU with AMX-BF16, a GPU that supports bf16).
    """

    device: str
    name: str
    flags: tuple[str, ...]
    fast_bf16: bool

    def describe(self) -> str:
        """One line: the device, its name and the flags, e.g. ``cpu Intel(R) Xeon(R) (avx512f, amx_bf16)``."""
        flags = ", ".join(self.flags) or "no AVX2/AVX-512/AMX"
        return f"{self.device} {self.name} ({flags})" if self.device == "cpu" else f"{self.device} {self.name}"


def cpu_flags() -> tuple[str, ...]:
    """The :data:`SPEED_FLAGS` of this CPU, from /proc/cpuinfo (empty where it is not readable)."""
    listed = set((_cpuinfo_field("flags") or "").split())
    return tuple(flag for flag in SPEED_FLAGS if flag in listed)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or the platform's processor string)."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown CPU"


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` entry of /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def detect_capability(device: torch.device | str = "cpu") -> Capability:
    """The :class:`Capability` of ``device`` on this machine. AMX is taken from the flags, or from
    torch's own check where /proc/cpuinfo is not readable."""
    device = torch.device(device)
    if device.type == "cuda":
        return Capability("cuda", torch.cuda.get_device_name(device), (), bool(torch.cuda.is_bf16_supported()))
    flags = cpu_flags()
    amx = "amx_bf16" in flags or (not flags and _torch_sees_amx())
    return Capability("cpu", cpu_name(), flags, amx)


def _torch_sees_amx() -> bool:
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check()) if check is not None else False


def bf16_verdict(capability: Capability) -> str:
    """Why bf16 is, or is not, faster than fp32 on the device, naming it."""
    cpu = capability.device == "cpu"
    if capability.fast_bf16:
        return f"{capability.name} has " + ("AMX-BF16 matrix units" if cpu else "bf16 support")
    return f"{capability.name} has " + ("no AMX-BF16 (bf16 would not be faster)" if cpu else "no bf16")


def choose_amp(capability: Capability) -> tuple[str, str]:
    """Training autocast for ``amp: auto``: ``("bf16" | "none", why)``."""
    if capability.fast_bf16:
        return "bf16", f"bf16 autocast, {bf16_verdict(capability)}"
    return "none", f"fp32, {bf16_verdict(capability)}"


def choose_backend(capability: Capability) -> tuple[str, str]:
    """The detector backend of ``--backend auto``: ``(backend, why)``: ``fast-bf16`` where bf16 is
    fast (a CPU with AMX-BF16, a GPU with bf16), ``fast-fp16`` on a GPU without bf16, else ``fast``
    (BatchNorm folded, fp32)."""
    if capability.fast_bf16:
        return "fast-bf16", bf16_verdict(capability)
    if capability.device == "cuda":
        return "fast-fp16", f"fp16, {bf16_verdict(capability)}"
    return "fast", f"fp32, {bf16_verdict(capability)}"
