"""A tiny VideoMAE pretrained on moving-digits vs the same architecture at random init (the videomae-digits bundle).

Each run in RUNS is `mimzoo pretrain videomae` (tube masking, MSE on the masked tubes) of the plugin's
`videomae-vit-digits` encoder (64 px, 8 frames, tubelet 2, patch 8, 96-d, depth 4, 3 heads: 256 tube
tokens) with a small decoder (2 blocks of 96), on 4,000 moving-digits train clips (16 frames of
64 px; a sample takes 8 consecutive frames from a random start and one random-resized crop of area
0.6-1 for all of them; labels unused). Runs differ in target (the recipe's per-tube normalised
pixels, or raw pixels), masking ratio and length.

Measured with `mimzoo eval MODEL --task knn,linear` on the moving-digits test split (300 clips made
of digits from the digits *test* split, never seen in pretraining), for the three labels:

- ``moving-digits`` (label=digit, the default): two scans of one digit, which digit, 10 classes;
- ``moving-digits:label=pair``: two independent digits, which unordered pair, 55 classes;
- ``moving-digits:label=direction``: which diagonal the two digits head in, 4 classes.

Random init: the same architecture with torch.manual_seed(0) weights, by the same command
(``--random-init``).

    .venv/bin/python benchmarks/pretrain_videomae_digits.py --train normpix-7ep   # pretrain into runs/, measure
    .venv/bin/python benchmarks/pretrain_videomae_digits.py --model runs/videomae-normpix-7ep --bundle

``--bundle`` copies the run into mimzoo/assets/videomae-digits/ (config.json, model.safetensors,
pretrain.safetensors), writes its results.json and the reconstruction GIF, and refuses when the run
does not beat random init on both k-NN and linear for label=digit. On 2026-12-06 no run did, so
nothing is bundled (benchmarks/eval_digits.md). ``PYTHONPATH=plugins`` is needed only where the
installed mimzoo predates the videomae plugin.
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
_BASE = ("mimzoo pretrain videomae --arch videomae-vit-digits --batch-size 64 --lr 1.5e-3 --threads 1 "
         "--set decoder.dim=96 --set decoder.depth=2 --set decoder.heads=3 --set augment.crop_scale=[0.6,1.0]")
# the runs tried on 2026-12-06 (benchmarks/eval_digits.md has their figures); none beat random init on content
RUNS = {
    "normpix-7ep": f"{_BASE} --data moving-digits:train=4000,label=pair --epochs 7 --warmup-epochs 1",
    "pixels-5ep": f"{_BASE} --data moving-digits:train=4000 --epochs 5 --warmup-epochs 1 --set target.kind=pixels",
    "normpix-2ep": f"{_BASE} --data moving-digits:train=4000 --epochs 2 --warmup-epochs 0.5",
    "normpix-mask75-3ep": f"{_BASE} --data moving-digits:train=4000 --epochs 3 --warmup-epochs 0.5 "
                          "--set masking.ratio=0.75",
}
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
    ap.add_argument("--train", choices=sorted(RUNS), help="run this pretraining command first (runs/videomae-<name>)")
    ap.add_argument("--model", type=Path, default=BUNDLED, help="model folder to measure (default: the bundled one)")
    ap.add_argument("--bundle", action="store_true",
                    help="copy the measured run into mimzoo/assets/videomae-digits with its results.json, only if it "
                         "beats random init on k-NN and linear (label=digit)")
    args = ap.parse_args()
    if args.train:
        args.model = ROOT / "runs" / f"videomae-{args.train}"
        subprocess.run([sys.executable, "-m", "mimzoo.cli.main", *RUNS[args.train].split()[1:], "-o", str(args.model)],
                       check=True, cwd=ROOT)
    bundled = args.model.resolve() == BUNDLED.resolve()
    name = "videomae-vit-digits" if bundled else str(args.model)
    figures = {label: (mimzoo_eval(name, data), mimzoo_eval("videomae-vit-digits", data, "--random-init"))
               for label, data in DATA.items()}
    run = json.loads((args.model / "config.json").read_text())["mimzoo"].get("pretrain", {})
    print(report(figures, run))
    pre, rnd = figures["digit"]
    wins = all(pre[t] > rnd[t] for t in ("knn", "linear"))
    if args.bundle and not wins:
        sys.exit("not bundled: the run does not beat random init on k-NN and linear (label=digit)")
    if args.bundle and not bundled:
        import shutil

        BUNDLED.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "model.safetensors", "pretrain.safetensors"):
            shutil.copyfile(args.model / f, BUNDLED / f)
    if args.bundle or bundled:
        write_results(figures, json.loads((BUNDLED / "config.json").read_text())["mimzoo"]["recipe"])
        picture(BUNDLED, Path(__file__).with_name("pretrain_videomae_digits_reconstruction.gif"))


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
        f"    {run.get('command', '(see RUNS in benchmarks/pretrain_videomae_digits.py)')}",
        "",
        "| label | task | pretrained | random init | gain |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
    ])


if __name__ == "__main__":
    main()
