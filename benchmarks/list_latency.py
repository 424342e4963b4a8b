"""How long `mimzoo list` takes from a cold interpreter, next to the interpreter's own start-up.

    .venv/bin/python benchmarks/list_latency.py [--repeat 15]

Listing reads plugin metadata only (no torch, timm or onnx), so it should cost little more than
starting Python. Prints a table of medians and the overhead ratio against `python -c pass`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import mimzoo": [sys.executable, "-c", "import mimzoo"],
    "mimzoo list": [sys.executable, "-m", "mimzoo.cli.main", "list"],
    "mimzoo list --taxonomy": [sys.executable, "-m", "mimzoo.cli.main", "list", "--taxonomy"],
    "mimzoo info mae-vit-b": [sys.executable, "-m", "mimzoo.cli.main", "info", "mae-vit-b"],
    "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(args.repeat):  # interleaved, so drift in machine load hits every command alike
        for name, cmd in COMMANDS.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["python -c pass (baseline)"])
    print(f"{'command':40s} {'median ms':>10s} {'p90 ms':>8s} {'x baseline':>10s}")
    for name, ts in times.items():
        ts.sort()
        med = statistics.median(ts)
        p90 = ts[int(0.9 * (len(ts) - 1))]
        print(f"{name:40s} {med * 1e3:10.1f} {p90 * 1e3:8.1f} {med / base:10.2f}")


if __name__ == "__main__":
    main()
