"""The bundled video model: a tiny VideoMAE pretrained on moving-digits, vs the same architecture at random init.

Pretraining: `mimzoo pretrain videomae` (tube masking 90 %, MSE on the masked tubes) with raw-pixel
targets instead of the recipe's per-tube normalised pixels (see benchmarks/eval_digits.md: on these
mostly black clips the normalised-pixel run fell below random init on content), on 4,000
moving-digits train clips (labels are not used; 16 frames of 64 px; each sample takes 8
consecutive frames from a random start, one random-resized crop of area 0.6-1 for all of them).
The encoder is the plugin's `videomae-vit-digits` (64 px, 8 frames, tubelet 2, patch 8, 96-d,
depth 4, 3 heads: 256 tube tokens, 28 of them visible); the decoder is made small (2 blocks of 96).

Measured with `mimzoo eval MODEL --task knn,linear` on the moving-digits test split (300 clips made
of digits from the digits *test* split, never seen in pretraining), for both labels:

- ``moving-digits`` (label=digit, the default): two scans of one digit, which digit, 10 classes;
- ``moving-digits:label=pair``: two independent digits, which unordered pair, 55 classes;
- ``moving-digits:label=direction``: which diagonal the two digits head in, 4 classes.

Random init: the same architecture with torch.manual_seed(0) weights, by the same command
(``--random-init``). The figures of the default label go to ``mimzoo/assets/videomae-digits/results.json``.

Reproduce (``PYTHONPATH=plugins`` only where the installed mimzoo predates the videomae plugin):

    .venv/bin/python benchmarks/pretrain_videomae_digits.py --train   # pretrain into runs/videomae-vit-digits, measure
    .venv/bin/python benchmarks/pretrain_videomae_digits.py           # measure the bundled model
    cp runs/videomae-vit-digits/{config.json,model.safetensors,pretrain.safetensors} mimzoo/assets/videomae-digits/

Prints the markdown section of benchmarks/eval_digits.md and writes
benchmarks/pretrain_videomae_digits_reconstruction.gif.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "mimzoo" / "assets" / "videomae-digits"
COMMAND = ("mimzoo pretrain videomae --arch videomae-vit-digits --data moving-digits:train=4000 --epochs 5 "
           "--batch-size 64 --lr 1.5e-3 --warmup-epochs 1 --threads 1 --set target.kind=pixels --set decoder.dim=96 "
           "--set decoder.depth=2 --set decoder.heads=3 --set augment.crop_scale=[0.6,1.0] -o runs/videomae-vit-digits")
DATA = {"digit": "moving-digits", "pair": "moving-digits:label=pair", "direction": "moving-digits:label=direction"}
CLASSES = {"digit": 10, "pair": 55, "direction": 4}


def mimzoo_eval(model: str, data: str, *extra: str) -> dict[str, float]:
    """Top-1 of `mimzoo eval MODEL --task knn,linear --data DATA` (the project's own protocol)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        subprocess.run([sys.executable, "-m", "mimzoo.cli.main", "eval", model, *extra, "--task", "knn,linear",
                        "--data", data, "-o", str(out)], check=True, capture_output=True)
        return {r["task"]: r["metrics"]["top1"] for r in json.loads(out.read_text())}


def picture(model: Path, out: Path) -> None:
    clips = [f"moving-digits:{i}" for i in range(4)]
    subprocess.run([sys.executable, "-m", "mimzoo.cli.main", "reconstruct", str(model), *clips, "-o", str(out)],
                   check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true", help="run the pretraining command first (runs/videomae-vit-digits)")
    ap.add_argument("--model", type=Path, default=BUNDLED, help="model folder to measure (default: the bundled one)")
    args = ap.parse_args()
    if args.train:
        subprocess.run([sys.executable, "-m", "mimzoo.cli.main", *COMMAND.split()[1:]], check=True, cwd=ROOT)
        args.model = ROOT / "runs" / "videomae-vit-digits"
    bundled = args.model.resolve() == BUNDLED.resolve()
    name = "videomae-vit-digits" if bundled else str(args.model)
    figures = {label: (mimzoo_eval(name, data), mimzoo_eval("videomae-vit-digits", data, "--random-init"))
               for label, data in DATA.items()}
    run = json.loads((args.model / "config.json").read_text())["mimzoo"].get("pretrain", {})
    picture(args.model, Path(__file__).with_name("pretrain_videomae_digits_reconstruction.gif"))
    if bundled:
        write_results(figures, json.loads((args.model / "config.json").read_text())["mimzoo"]["recipe"])
    print(report(figures, run))


def write_results(figures: dict[str, tuple[dict, dict]], recipe: dict) -> None:
    """The bundled model's figures beside its weights (temp + rename), as mae-vit-digits keeps its own."""
    from mimzoo._atomic import atomic_file

    pre, rnd = figures["digit"]
    data = {
        "model": "videomae-vit-digits",
        "about": "The bundled video model's figures; benchmarks/pretrain_videomae_digits.py writes them with "
                 "mimzoo eval, and mimzoo quickstart --video reproduces the first two.",
        "command": "mimzoo eval videomae-vit-digits --task knn,linear --data moving-digits",
        "dataset": "moving-digits test split (300 clips made of digits from the digits test split, never seen in "
                   "pretraining), label=digit (two scans of one digit, 10 classes)",
        "metric": "top-1 accuracy (%)",
        "pretrained": {k: round(v, 4) for k, v in pre.items()},
        "random_init": {k: round(v, 4) for k, v in rnd.items()},
        "random_init_note": "the same architecture with torch.manual_seed(0) weights, measured by the same command",
        "other_labels": {label: {"command": f"mimzoo eval videomae-vit-digits --task knn,linear --data {DATA[label]}",
                                 "pretrained": {k: round(v, 4) for k, v in figures[label][0].items()},
                                 "random_init": {k: round(v, 4) for k, v in figures[label][1].items()}}
                         for label in ("pair", "direction")},
        "target": recipe["target"]["kind"],
    }
    with atomic_file(BUNDLED / "results.json") as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def report(figures: dict[str, tuple[dict, dict]], run: dict) -> str:
    rows = [f"| {label} ({CLASSES[label]} classes) | {task} | {pre[task]:.1f} | {rnd[task]:.1f} | "
            f"{pre[task] - rnd[task]:+.1f} |"
            for label, (pre, rnd) in figures.items() for task in ("knn", "linear")]
    return "\n".join([
        "## videomae-vit-digits: pretrained vs random init on moving-digits",
        "",
        f"Pretraining (CPU, {run.get('steps', '?')} steps, final loss {run.get('final_loss', float('nan')):.4f}):",
        "",
        f"    {COMMAND}",
        "",
        "| label | task | pretrained | random init | gain |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
    ])


if __name__ == "__main__":
    main()
