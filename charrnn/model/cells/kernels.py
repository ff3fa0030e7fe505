"""The scans' fused step kernels (step_kernels.c), compiled with the machine's C compiler the
first time a process needs them (about a second) and called through ctypes.

At B=16 a Python step loop spends more on calling ATen ops than on arithmetic: the peephole
LSTM's ~8 elementwise ops a step forward and 7 back become one call each, and minGRU's whole
recurrence one call per chunk (speeds: BENCHMARKS.md, cells). Where no compiler is found, the
build fails, or CHARRNN_KERNELS=0 is set, `library()` is None and the scans keep their Python
loops, which compute the same numbers (tests/model/test_cells.py holds the two to each other).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("step_kernels.c")
# -ffast-math lets the compiler vectorise expf; the kernels never rely on NaN or -0 semantics
FLAGS = ("-O3", "-ffast-math", "-shared", "-fPIC")
# the x86-64 level of the instruction set ATen itself uses here, not -march=native: the same
# code, and so the same bits, on every CPU of a level (AVX-512 against AVX2 measured 7.4 against
# 10.7 us for a 16x256 peephole step)
LEVELS = {"AVX512": ("-march=x86-64-v4",), "AVX2": ("-march=x86-64-v3",)}
POINTER, INT, LONG = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
SIGNATURES = {
    "peephole_forward": (INT, INT, INT, *(POINTER,) * 7),
    "peephole_backward": (INT, INT, INT, INT, *(POINTER,) * 7),
    "lerp_scan_forward": (LONG, LONG, *(POINTER,) * 3),
    "lerp_scan_backward": (LONG, LONG, *(POINTER,) * 4),
}


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be had here."""
    if os.environ.get("CHARRNN_KERNELS") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory(prefix="charrnn-kernels-") as folder:
        built = Path(folder) / "step_kernels.so"
        level = LEVELS.get(torch.backends.cpu.get_cpu_capability(), ())
        for tuning in (level, ()):  # a compiler that does not know the level: its default
            command = [compiler, *FLAGS, *tuning, "-o", str(built), str(SOURCE), "-lm"]
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=120)
                loaded = ctypes.CDLL(str(built))  # mapped now: the file may go with the folder
            except (OSError, subprocess.SubprocessError):
                continue
            for name, arguments in SIGNATURES.items():
                function = getattr(loaded, name)
                function.argtypes, function.restype = arguments, None
            return loaded
    return None


def usable(*tensors: torch.Tensor, products: torch.Tensor | None = None) -> bool:
    """Whether the kernels can take these tensors: on the CPU, contiguous and fp32, as they read
    and write them; `products`, what the step's matrix products read, on the CPU in fp32 or bf16."""
    fp32 = all(
        t.device.type == "cpu" and t.is_contiguous() and t.dtype == torch.float32 for t in tensors
    )
    readable = products is None or (
        products.device.type == "cpu" and products.dtype in (torch.float32, torch.bfloat16)
    )
    return library() is not None and fp32 and readable


def step_pointers(buffer: torch.Tensor) -> list[int]:
    """The address of each step's slice of a time-major buffer."""
    base, stride = buffer.data_ptr(), buffer.stride(0) * buffer.element_size()
    return [base + t * stride for t in range(buffer.size(0))]
