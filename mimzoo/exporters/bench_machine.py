"""What a benchmark figure needs beside its numbers: threads, model, command, machine, and the load.

Speed ratios measured on one machine mean something only when every backend got the same threads
and nothing else competed for the cores: with another process busy, torch's threads spin at their
barriers and eager PyTorch slows down far more than onnxruntime (ratios of 200x were seen that way).
So `mimzoo bench` gives every backend the same thread count (default: every core this process may
use), states it with the machine in a header, and warns when other processes load the machine.

Imports nothing heavy: versions are read from the installed distributions' metadata.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from typing import Any

# Others' load may exceed the cores the benchmark leaves free by this much before it warns: a
# quiet machine's background (shells, daemons) adds a few tenths; one busy process adds a whole 1.
LOAD_TOLERANCE = 0.5


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """The intra-op thread count every backend gets unless told otherwise: every usable core."""
    return usable_cores()


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform module says."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Machine:
    """The machine a benchmark ran on."""

    cpu: str  # model name from /proc/cpuinfo
    cores: int  # cores this process may use (affinity)
    cpus: int  # logical CPUs in the machine
    system: str  # OS and kernel, e.g. "Linux 6.8.0"
    python: str  # interpreter version
    torch: str  # installed torch version
    onnxruntime: str  # installed onnxruntime (or onnxruntime-gpu) version

    def text(self) -> str:
        return (f"{self.cpu}, {self.cores} usable cores ({self.cpus} CPUs); {self.system}; Python {self.python}, "
                f"torch {self.torch}, onnxruntime {self.onnxruntime}")


def machine() -> Machine:
    """The machine this process runs on."""
    ort = _version("onnxruntime")
    if ort == "not installed":
        ort = _version("onnxruntime-gpu")
    return Machine(cpu=cpu_model(), cores=usable_cores(), cpus=os.cpu_count() or 1,
                   system=f"{platform.system()} {platform.release()}", python=platform.python_version(),
                   torch=_version("torch"), onnxruntime=ort)


def _process_age() -> float:
    """Seconds since this process started (Linux /proc), else since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 1e-3)
    except (OSError, ValueError, IndexError):
        return max(time.monotonic() - _IMPORTED, 1e-3)


_IMPORTED = time.monotonic()


def own_cpu_seconds() -> float:
    """CPU seconds used by this process and its finished children (user + system)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class Load:
    """The machine's load over the last minute, and how much of it is this process's own."""

    load1: float  # os.getloadavg()[0]: runnable tasks, averaged over about a minute
    own: float  # this process's share of it (estimated from its CPU time)
    others: float  # load1 - own: what other processes asked of the cores

    def text(self) -> str:
        return f"{self.load1:.2f} over the last minute, {self.others:.2f} of it from other processes"


class LoadProbe:
    """Reads the 1-minute load and subtracts this process's share.

    The kernel's 1-minute load is an exponentially decaying average (time constant 60 s) of runnable
    tasks. This process's share is estimated from its CPU time the same way: between two samples of
    (time, CPU seconds) it kept ``r`` cores busy, and that stretch still counts ``exp(-age / 60)`` of ``r``
    now. Without samples, the whole life of the process is one stretch; ``watching()`` samples every
    few seconds while a long run goes on, so the last minute weighs as it does in the kernel's average.

    `loadavg` and `cpu_seconds` are injectable (tests fake a busy machine without patching os).
    """

    def __init__(self, loadavg: Callable[[], Sequence[float]] = os.getloadavg,
                 cpu_seconds: Callable[[], float] = own_cpu_seconds):
        self.loadavg = loadavg
        self.cpu_seconds = cpu_seconds
        now = time.monotonic()
        self._samples = [(now - _process_age(), 0.0)]  # (monotonic time, CPU seconds); the process started at 0

    def _sample(self) -> None:
        self._samples.append((time.monotonic(), self.cpu_seconds()))

    def own(self) -> float:
        """This process's estimated share of the 1-minute load, now."""
        self._sample()
        now, share = self._samples[-1][0], 0.0
        for (t0, c0), (t1, c1) in zip(self._samples, self._samples[1:]):
            if t1 > t0:
                share += (c1 - c0) / (t1 - t0) * (math.exp(-(now - t1) / 60) - math.exp(-(now - t0) / 60))
        return max(share, 0.0)

    @contextmanager
    def watching(self, every: float = 2.0) -> Iterator[LoadProbe]:
        """Sample this process's CPU time every `every` seconds while the block runs (a daemon thread)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                self._sample()

        thread = threading.Thread(target=loop, daemon=True, name="mimzoo-load-probe")
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def read(self) -> Load | None:
        try:
            load1 = float(self.loadavg()[0])
        except (OSError, AttributeError):  # no load average on this platform
            return None
        own = min(self.own(), load1)
        return Load(load1=load1, own=own, others=load1 - own)


def load_warning(load: Load | None, threads: int, cores: int, when: str = "before the run") -> str | None:
    """One line when other processes want more than the cores the benchmark leaves free, else None.

    Free cores are the usable cores minus the benchmark's threads; up to LOAD_TOLERANCE more is let pass.
    """
    if load is None:
        return None
    free = max(cores - threads, 0)
    if load.others <= free + LOAD_TOLERANCE:
        return None
    return (f"the machine is busy: other processes put a load of {load.others:.1f} on it over the last minute "
            f"({when}), but this benchmark ({threads} thread(s) on {cores} core(s)) leaves {free} core(s) free; "
            f"ratios measured under load are unreliable (torch's threads spin under contention): rerun on a quiet "
            f"machine")


def command_line(argv: Sequence[str] | None = None, program: str | None = None) -> str:
    """The command as typed, quoted so it can be pasted back (`program` replaces argv[0])."""
    argv = list(sys.argv if argv is None else argv)
    if program is not None:
        argv = [program, *argv[1:]]
    elif argv:
        argv[0] = os.path.basename(argv[0]) or argv[0]
    return shlex.join(argv)


@dataclass(frozen=True)
class BenchHeader:
    """Everything a reader needs to rerun a benchmark and judge its figures; goes above every table."""

    model: str  # what was benchmarked
    command: str  # the exact command that produced the figures
    threads: int  # intra-op threads of every backend (torch.set_num_threads, onnxruntime intra_op_num_threads)
    device: str  # "cpu" or "cuda"
    batches: tuple[int, ...]  # batch sizes
    iters: int  # timed rounds per batch size; each round runs every backend once, in rotating order
    warmup: int  # untimed calls per backend and batch size first
    machine: Machine  # CPU, cores, versions
    load_before: Load | None = None  # the load when the benchmark started
    load_after: Load | None = None  # the load when the timing ended (this process's own share subtracted)
    warning: str | None = None  # one line when other processes loaded the machine (before or during the run)

    def with_load(self, load: Load | None, *, after: bool) -> BenchHeader:
        """This header with a load reading added; a busy machine sets the warning (the latest reading's)."""
        warning = load_warning(load, self.threads, self.machine.cores, "during the run" if after else "before the run")
        return replace(self, warning=warning or self.warning, **{"load_after" if after else "load_before": load})

    def lines(self) -> list[str]:
        """The header as plain lines (the terminal and markdown show these)."""
        loads = [f"{when} {ld.text()}" for when, ld in (("before", self.load_before), ("after", self.load_after)) if ld]
        out = [f"model: {self.model}",
               f"command: {self.command}",
               f"threads: {self.threads} intra-op thread(s) for every backend (torch.set_num_threads; onnxruntime "
               f"intra_op_num_threads, inter_op_num_threads 1)",
               f"timing: {self.iters} interleaved rounds per batch size (each runs every backend once, in rotating "
               f"order) after {self.warmup} warm-up call(s); batches {', '.join(map(str, self.batches))}; "
               f"device {self.device}; medians with their interquartile range (IQR)",
               f"machine: {self.machine.text()}"]
        if loads:
            out.append(f"load: {'; '.join(loads)}")
        if self.warning:
            out.append(f"warning: {self.warning}")
        return out

    def markdown(self) -> str:
        """The header as a markdown list (the command in code)."""
        return "\n".join(f"- {line}" if not line.startswith("command: ") else f"- command: `{self.command}`"
                         for line in self.lines())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_header(model: str, *, threads: int, device: str, batches: Sequence[int], iters: int, warmup: int,
                 command: str | None = None, probe: LoadProbe | None = None) -> BenchHeader:
    """The header of a benchmark about to run, with the load read now (and its warning, if any).

    >>> h = bench_header("mae-vit-b", threads=2, device="cpu", batches=(1, 8), iters=10, warmup=2)  # doctest: +SKIP
    >>> print("\\n".join(h.lines()))  # doctest: +SKIP
    """
    header = BenchHeader(model=model, command=command or command_line(), threads=threads, device=device,
                         batches=tuple(batches), iters=iters, warmup=warmup, machine=machine())
    return header.with_load((probe or LoadProbe()).read(), after=False)
