"""MAE training-step throughput: mimzoo's pretraining engine vs transformers' ViTMAEForPreTraining.

Same configuration (ViT encoder + 8-block MAE decoder, norm-pix MSE, 75% masking), same initial
weights (copied from the transformers model), same batch, same optimiser settings, same CPU and
threads, timed side by side: each round runs one step of every contender in turn, and the
report gives the median step time of each and the ratio to transformers.

A step is what a training loop does per batch: draw masks, forward, loss, backward, AdamW step.

- ``transformers``: ``ViTMAEForPreTraining(pixel_values)`` (random masks inside), torch AdamW (foreach).
- ``mimzoo eager``: the MAE objective (timm blocks: fused qkv, SDPA) + the trainer's AdamW.
- ``mimzoo compiled``: the same objective under ``torch.compile`` (``mimzoo pretrain --compile``).

Run:  .venv/bin/python benchmarks/pretrain_throughput.py [--size s] [--batch 16] [--rounds 12]
Writes benchmarks/pretrain_throughput.md (the table) unless --no-write.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

SIZES = {  # name: (timm arch, hidden, depth, heads, decoder dim, decoder depth, decoder heads)
    "t": ("vit_tiny_patch16_224", 192, 12, 3, 256, 4, 8),
    "s": ("vit_small_patch16_224", 384, 12, 6, 512, 8, 16),
    "b": ("vit_base_patch16_224", 768, 12, 12, 512, 8, 16),
}


def build(size: str):
    import transformers

    import mimzoo  # noqa: F401
    from mimzoo.pretrain import Decoder, Recipe
    from mimzoo.pretrain.arch import build_encoder
    from mimzoo.pretrain.models import build_objective
    from mimzoo.pretrain.models.mae import decoder_from_transformers
    from mimzoo_mae.layouts import convert_transformers

    arch, dim, depth, heads, ddim, ddepth, dheads = SIZES[size]
    cfg = transformers.ViTMAEConfig(image_size=224, patch_size=16, hidden_size=dim, num_hidden_layers=depth,
                                    num_attention_heads=heads, intermediate_size=4 * dim, decoder_hidden_size=ddim,
                                    decoder_num_hidden_layers=ddepth, decoder_num_attention_heads=dheads,
                                    decoder_intermediate_size=4 * ddim, norm_pix_loss=True, layer_norm_eps=1e-6,
                                    mask_ratio=0.75)
    torch.manual_seed(0)
    hf = transformers.ViTMAEForPreTraining(cfg).train()
    recipe = Recipe("mae", decoder=Decoder("mae", dim=ddim, depth=ddepth, heads=dheads))
    obj = build_objective(recipe, build_encoder(arch, "mae")).train()
    sd = hf.state_dict()
    obj.encoder.load_state_dict(convert_transformers(sd, None))
    obj.decoder.load_state_dict(decoder_from_transformers(sd))
    return hf, obj, recipe


def steppers(size: str, batch: int, compile_too: bool) -> dict:
    from mimzoo.pretrain.trainer import _adamw

    hf, obj, recipe = build(size)
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    ours_opt = _adamw(obj, recipe, 1e-4, torch.device("cpu"))
    x = torch.randn(batch, 3, 224, 224)
    gen = torch.Generator().manual_seed(0)

    def hf_step() -> float:
        loss = hf(pixel_values=x).loss
        loss.backward()
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)
        return loss.item()

    def make_ours(model, opt):
        def ours() -> float:
            loss = model(x, obj.masking(batch, gen))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()

        return ours

    def bf16(fn):
        def run() -> float:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn()

        return run

    ours = make_ours(obj, ours_opt)
    out = {"transformers fp32": hf_step, "mimzoo fp32": ours,
           "transformers bf16": bf16(hf_step), "mimzoo bf16": bf16(ours)}
    if compile_too:
        import copy

        twin = copy.deepcopy(obj)
        out["mimzoo fp32 compiled"] = make_ours(torch.compile(twin), _adamw(twin, recipe, 1e-4, torch.device("cpu")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="s", choices=sorted(SIZES))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first (compilation happens here)")
    ap.add_argument("--compile", action="store_true", help="also time the objective under torch.compile")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 (default) keeps timings stable on a shared machine, 0 = torch's choice")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    fns = steppers(args.size, args.batch, args.compile)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(args.warmup + args.rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v), file=sys.stderr)
    report(args, times)


def report(args: argparse.Namespace, times: dict[str, list[float]]) -> None:
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["transformers fp32"]
    rows = []
    for name, t in med.items():
        same = med["transformers " + name.split()[1]] if name.startswith("mimzoo") else t
        rows.append(f"| {name} | {t:.3f} | {args.batch / t:.2f} | {base / t:.2f}x | {same / t:.2f}x |")
    arch = SIZES[args.size][0]
    text = "\n".join([
        "# MAE training-step throughput: mimzoo vs transformers ViTMAEForPreTraining",
        "",
        f"Command: `.venv/bin/python benchmarks/pretrain_throughput.py --size {args.size} --batch {args.batch} "
        f"--rounds {args.rounds} --threads {args.threads}{' --compile' if args.compile else ''}`",
        "",
        f"Config: {arch} encoder (224 px, patch 16), "
        f"MAE decoder {SIZES[args.size][4]}-d x {SIZES[args.size][5]} blocks, "
        f"norm-pix MSE, 75% masking, AdamW, batch {args.batch}; same initial weights; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}. "
        f"Median of {args.rounds} interleaved rounds after {args.warmup} warm-up rounds.",
        "",
        "| contender | median step (s) | images/s | vs transformers fp32 | vs transformers, same precision |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])
    print(text)
    if not args.no_write:
        Path(__file__).with_name("pretrain_throughput.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
