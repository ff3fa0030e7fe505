"""Where tensors live and how many CPU threads work on them."""

from __future__ import annotations

import functools

import torch

from ..errors import TrainingError

DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before anything changes it


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(name: str) -> torch.device:
    """'auto' takes a CUDA GPU, else Apple's MPS, else the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA GPU is available here (try --device auto)")
    if name == "mps" and not _mps_available():
        raise TrainingError("--device mps: Apple's MPS backend is not available here")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device, cell: str = "lstm") -> str:
    """'auto': bf16 on a GPU that has it, else fp16 (with loss scaling); on a CPU, bf16 for the
    cells of CPU_BF16_CELLS where the CPU multiplies bf16 in hardware (oneDNN's bf16 LSTM trains
    2.4x faster than fp32 on an AMX Xeon at the same loss per token; 1.6x on an AMD Zen 4's AVX-512
    BF16 for about 0.008 nats more per token: BENCHMARKS.md, round 17), else fp32."""
    if precision == "fp16" and device.type == "cpu":
        raise TrainingError(
            "--precision fp16 needs a GPU: a CPU's LSTM has no fp16 kernel (use bf16)"
        )
    if precision == "bf16" and device.type == "cpu" and cell == "lstm" and not cpu_runs_bf16_lstm():
        raise TrainingError(
            "--precision bf16: this CPU's oneDNN has no bf16 LSTM kernel (it needs AVX-512); "
            "use --precision fp32 or auto"
        )
    if precision != "auto":
        return precision
    if device.type == "cpu":
        return "bf16" if cell in CPU_BF16_CELLS and cpu_multiplies_bf16() else "fp32"
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


# measured (bench_cells.py, BENCHMARKS.md): on an AMD Zen 4 (AVX-512 BF16), 2x256, batch 16,
# two threads, tokens/s fp32 -> bf16: lstm 47.9K -> 63.7K, lstm-peephole 30.3K -> 56.2K and
# gru-simple 45.9K -> 65.2K (their hand-written backward multiplies in bf16 too), mingru 114.5K ->
# 206.7K (one run; another read the LSTM at 46.8K -> 75.3K).
# GRU and the vanilla RNNs were not measured in bf16 here: they keep fp32.
CPU_BF16_CELLS = ("lstm", "lstm-peephole", "gru-simple", "mingru")


def cpu_multiplies_bf16() -> bool:
    """Whether oneDNN multiplies bf16 matrices in this CPU's hardware: Intel AMX tiles, or
    AVX-512 BF16's dot products (AMD Zen 4, Intel Cooper Lake on). `cpu_runs_bf16_lstm` below says
    only whether the kernel runs, which it does on any AVX-512 CPU, not whether it gains: without
    these flags it was not measured, so such a CPU keeps fp32."""
    flags = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    hardware = any(getattr(torch.cpu, flag, lambda: False)() for flag in flags)
    return hardware and torch.backends.mkldnn.is_available()


@functools.cache
def cpu_runs_bf16_lstm() -> bool:
    """Whether torch.nn.LSTM runs under bf16 autocast on this CPU. oneDNN's bf16 LSTM needs
    AVX-512: on an AVX2-only CPU (an AMD EPYC here) it fails with "could not create a primitive
    descriptor", so this asks oneDNN once with a 4-unit LSTM rather than guessing from CPU flags."""
    with torch.random.fork_rng(devices=[]):  # the probe's weights must not shift a seeded run
        lstm = torch.nn.LSTM(4, 4)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output, _ = lstm(torch.zeros(2, 1, 4))
        output.float().sum().backward()
    except RuntimeError:
        return False
    return True


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context a training or evaluation step runs under (off for fp32)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")


def loss_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def adam_kernel(device: torch.device) -> dict[str, bool]:
    """How Adam/AdamW update the weights: one fused kernel on a CPU or GPU (on this 2-core CPU
    0.7 ms a step for a 2x384 LSTM against 3.5 ms for the per-tensor-list `foreach` path, 7-10%
    of a training step), `foreach` elsewhere (and on a CPU before torch 2.4, which had no fused
    CPU kernel)."""
    fused = device.type == "cuda" or (device.type == "cpu" and _TORCH_VERSION >= (2, 4))
    return {"fused": True} if fused else {"foreach": True}


def use_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def thread_counts(most: int | None = None) -> list[int]:
    """The CPU thread counts ThreadGovernor picks between, the one it starts on first."""
    most = most or DEFAULT_THREADS
    return [most, 1] if most > 1 else [1]


class ThreadGovernor:
    """Keeps whichever CPU thread count is fastest right now.

    On this kind of machine (2 cores) a second CPU-bound program makes torch's two threads wait
    on each other: training fell to 21% and generation to 14% of their idle speed, while one
    thread kept 56% and 63%. So work is timed in windows of at least `min_window` seconds: each
    thread count is tried once, the faster one is kept, and after `reprobe_every` windows the
    other is tried again, so the choice follows the machine's load both ways; while probes keep
    confirming the choice the interval doubles (a probe of the wrong count is a slow window). An explicit
    `--threads` turns this off (and keeps runs bit-identical: the thread count changes the
    order of floating-point sums).
    """

    def __init__(
        self,
        most: int | None = None,
        min_window: float = 0.25,
        reprobe_every: int = 20,
        start: int | None = None,
    ):
        self.counts = thread_counts(most)
        self.min_window, self.reprobe_every = min_window, reprobe_every
        self.rates: dict[int, float] = {}
        # each count once at the start, unless a measurement already chose one (measuring.py)
        self.queue = [start] if start in self.counts else list(self.counts)
        self.current = self.queue.pop(0)
        self.chosen = self.current
        self.windows, self.units, self.seconds = 0, 0.0, 0.0
        self.interval = reprobe_every
        self.next_probe = reprobe_every
        torch.set_num_threads(self.current)

    @property
    def active(self) -> bool:
        return len(self.counts) > 1

    def observe(self, units: float, seconds: float) -> str | None:
        """Record work done; returns a message when the kept thread count changes."""
        if not self.active:
            return None
        self.units += units
        self.seconds += seconds
        if self.seconds < self.min_window:
            return None
        self.rates[self.current] = self.units / self.seconds
        self.units = self.seconds = 0.0
        self.windows += 1
        best = max(self.rates, key=self.rates.get)
        message = None
        if best != self.chosen and not self.queue:
            slower = self.rates[self.chosen]
            message = (
                f"throughput {slower:,.0f}/s on {self.chosen} thread(s), {self.rates[best]:,.0f}/s "
                f"on {best}: another program is using the CPU? now on {best} thread(s)"
            )
            self.chosen = best
            self.interval = self.reprobe_every
        elif self.current != self.chosen and not self.queue:
            # a probe confirmed the choice: probing costs (a slow window), so back off
            self.interval = min(self.interval * 2, 32 * self.reprobe_every)
        if not self.queue and self.windows >= self.next_probe:
            self.queue = [c for c in self.counts if c != self.chosen]
            self.next_probe = self.windows + self.interval
        self.current = self.queue.pop(0) if self.queue else self.chosen
        torch.set_num_threads(self.current)
        return message
