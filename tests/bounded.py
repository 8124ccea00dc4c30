"""Running a probe in a child process with bounded memory and time, so that a regression (an input
that hangs or allocates without bound) fails its test instead of stalling or swapping the suite."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Run first in the child: after the heavy imports, cap its address space at what it already maps
#: plus the test's allowance, so an unbounded allocation ends in MemoryError there.
_PRELUDE = """
import resource, torch, cornernet_saccade.cli
torch.set_num_threads(1)
_mapped = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (_mapped + {allowance}, _mapped + {allowance}))
"""


def run_bounded(code: str, memory_mb: int = 512, seconds: int = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` (Python, dedented) in a fresh interpreter allowed ``memory_mb`` MiB beyond the
    imports and ``seconds`` of wall time (subprocess.TimeoutExpired past it); returns the finished
    process with its captured output."""
    script = _PRELUDE.format(allowance=memory_mb << 20) + textwrap.dedent(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=seconds,
                          env=env, cwd=cwd or REPO)
