"""What a long pretraining run says while it works: its plan, an estimate, a line every ~10 s, and
what was kept when it is interrupted.

The trainer reports events to one callback (the CLI prints them; library code only logs):

- ``plan``: before the first step: model, method, steps, batch, device, precision, threads, data.
- ``estimate``: after the first and second step: seconds per step and the estimated total.
- ``progress``: when a step ends ~``EVERY_S`` seconds after the last report (steps/s, loss, ETA).
- ``running``: from a background thread while one step takes longer than ``EVERY_S`` (a ViT-B step
  on a CPU can take minutes): the step and the seconds spent on it, so a run is never silent.

Ctrl-C raises :class:`Interrupted`, a ``KeyboardInterrupt`` whose message names the last checkpoint
and the log that were kept, and how to continue (the CLI exits 130 with it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
EVERY_S = 10.0  # at most this long between two reports
Callback = Callable[[dict[str, Any]], None]


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (SIGINT); the message says what was kept and how to continue."""


class Progress:
    """Reports of one run: call :meth:`plan`, then :meth:`step_done` after each step, :meth:`close` at the end."""

    def __init__(self, callback: Callback | None, every_s: float = EVERY_S):
        self.callback, self.every_s = callback, every_s
        self.start_step = self.total = self.batch = 0
        self.t0 = self.last_report = self.step_t0 = time.perf_counter()
        self.current = 0  # the step being computed (1-based)
        self._first_done = self.t0  # when the run's first step ended
        self.losses: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plan(self, info: dict[str, Any]) -> None:
        """Announce the run and start the heartbeat; `info` holds at least start, total and batch."""
        self.start_step, self.total, self.batch = info["start"], info["total"], info["batch"]
        self.current = self.start_step + 1
        self.t0 = self.last_report = self.step_t0 = time.perf_counter()
        self._emit({"event": "plan", **info})
        if self.callback is not None and self.every_s > 0:
            self._thread = threading.Thread(target=self._heartbeat, name="mimzoo-progress", daemon=True)
            self._thread.start()

    def step_done(self, step: int, loss: float, logged: bool) -> None:
        """Step `step` (1-based) finished; `logged` when the trainer just logged it (the CLI printed a line)."""
        now = time.perf_counter()
        with self._lock:
            self.losses.append(loss)
            done, elapsed = step - self.start_step, now - self.t0
            self.current, self.step_t0 = step + 1, now
            if done in (1, 2) and step < self.total:
                per_step = elapsed / done if done == 1 else now - self._first_done
                self._emit({"event": "estimate", "step": step, "total": self.total, "seconds_per_step": per_step,
                            "eta_s": per_step * (self.total - step)})
                self.last_report = now
            if done == 1:
                self._first_done = now
            if logged:
                self.last_report, self.losses = now, []
            elif now - self.last_report >= self.every_s and step < self.total:
                rate = done / max(elapsed, 1e-9)
                self._emit({"event": "progress", "step": step, "total": self.total, "loss": sum(self.losses) /
                            len(self.losses), "steps_per_s": rate, "images_per_s": rate * self.batch,
                            "eta_s": (self.total - step) / max(rate, 1e-9)})
                self.last_report, self.losses = now, []

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(1.0, self.every_s)):
            now = time.perf_counter()
            with self._lock:
                slow = now - self.step_t0 >= self.every_s  # one step outlasts a report interval
                if slow and now - self.last_report >= self.every_s and self.current <= self.total:
                    self._emit({"event": "running", "step": self.current, "total": self.total,
                                "seconds": now - self.step_t0})
                    self.last_report = now

    def _emit(self, rec: dict[str, Any]) -> None:
        log.info("%s", rec)
        if self.callback is not None:
            try:
                self.callback(rec)
            except (OSError, ValueError):  # a closed stdout must not end the run
                log.debug("progress callback failed", exc_info=True)


def interrupted_message(folder: Any, step: int, total: int, checkpoint_step: int | None, log_name: str) -> str:
    """What an interrupted run kept, and how to go on.

    >>> interrupted_message("runs/x", 7, 9, 6, "log.jsonl")
    'stopped during step 7/9; kept runs/x/checkpoints/last.pt (step 6) and runs/x/log.jsonl; continue with the same command plus --resume'
    """
    if checkpoint_step:
        return (f"stopped during step {step}/{total}; kept {folder}/checkpoints/last.pt (step {checkpoint_step}) "
                f"and {folder}/{log_name}; continue with the same command plus --resume")
    return (f"stopped during step {step}/{total}, before the first checkpoint; nothing to resume "
            f"({folder}/{log_name} holds the log): rerun the same command to start again")


def describe(rec: dict[str, Any]) -> str:
    """One line for a report (what the CLI prints).

    >>> describe({"event": "estimate", "step": 1, "total": 61, "seconds_per_step": 12.0, "eta_s": 720.0})
    'step 1/61 took 12.0 s: about 12 min for the 60 steps left'
    """
    kind = rec["event"]
    if kind == "plan":
        resumed = f", resuming at step {rec['start']}" if rec["start"] else ""
        schedule = rec["epochs"] * rec["steps_per_epoch"]
        span = (f"{rec['epochs']} epoch(s) x {rec['steps_per_epoch']}" if rec["total"] == schedule else
                f"--max-steps; the schedule spans {rec['epochs']} epoch(s) x {rec['steps_per_epoch']}")
        params = f"{rec['params_m']:.2f}" if rec["params_m"] >= 0.1 else f"{rec['params_m']:.3f}"
        return (f"plan: {rec['method']} on {rec['model']} ({params} M params), {rec['total']} steps"
                f"{resumed} ({span}), batch {rec['batch']} "
                f"({rec['processes']} process(es) x {rec['accum_steps']} accumulation x {rec['micro_batch']}), "
                f"{rec['device']} {rec['precision']}, {rec['threads']} threads, data {rec['data']} "
                f"({rec['images']} images) -> {rec['output']}; checkpoint every {rec['checkpoint_every']} steps; "
                "time estimate after the first step")
    if kind == "estimate":
        return (f"step {rec['step']}/{rec['total']} took {rec['seconds_per_step']:.1f} s: about "
                f"{_duration(rec['eta_s'])} for the {rec['total'] - rec['step']} steps left")
    if kind == "running":
        return f"step {rec['step']}/{rec['total']} running for {rec['seconds']:.0f} s"
    return (f"step {rec['step']}/{rec['total']}  loss {rec['loss']:.4f}  {rec['steps_per_s']:.2f} steps/s  "
            f"{rec['images_per_s']:.0f} img/s  eta {_duration(rec['eta_s'])}")


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
