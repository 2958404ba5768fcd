"""Training speed: tokendyn's trainer against HF transformers' GPT2LMHeadModel in a plain torch loop,
at identical configurations, with and without every-step recording. Same machine, same run.

    python benchmarks/bench_trainer.py [--device cpu|cuda] [--steps N] [--presets duckling2,goldilocks-balanced]

Prints one JSON line per figure and writes the "trainer-<device>" section of benchmarks/RESULTS.md.
transformers is a benchmark-only dependency.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import emit, figures_table, machine, update_section, verdict  # noqa: E402

from tokendyn.trainers import from_preset, train  # noqa: E402
from tokendyn.trainers.optim import PureBF16AdamW, param_groups  # noqa: E402


def hf_steps_per_second(cfg, vocab_rows: int, device: torch.device, steps: int, warmup: int) -> float:
    """HF GPT2LMHeadModel, the same sizes, batches and optimizer settings, a plain torch loop."""
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_cfg = GPT2Config(vocab_size=vocab_rows, n_positions=cfg.context, n_embd=cfg.dim, n_layer=cfg.layers,
                        n_head=cfg.heads, n_inner=cfg.ffn_hidden, activation_function="gelu",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=cfg.tied)
    model = GPT2LMHeadModel(hf_cfg).to(device)
    if cfg.precision == "bf16-pure":
        model = model.to(torch.bfloat16)
    groups = param_groups(model, cfg.weight_decay)
    if cfg.precision == "bf16-pure":
        opt = PureBF16AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=True)
    g = torch.Generator().manual_seed(0)
    n_ids = cfg.vocab_size
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.precision == "bf16-mixed" \
        else (lambda: torch.autocast(device.type, enabled=False))
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        x = torch.randint(0, n_ids, (cfg.batch, cfg.context + 1), generator=g).to(device, non_blocking=True)
        with autocast():
            loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def storage_ceiling_frames_per_second(shape: tuple[int, int], dtype: str, workdir: str, frames: int = 300) -> float:
    """How many frames of W per second the storage takes at all: raw h5py chunk writes, no training."""
    import h5py
    import numpy as np

    frame = np.random.default_rng(0).random(shape).astype(np.float32 if dtype == "float32" else np.uint16)
    path = os.path.join(workdir, "ceiling.h5")
    with h5py.File(path, "w", rdcc_nbytes=0) as f:
        dset = f.create_dataset("W", (frames,) + shape, frame.dtype, chunks=(1,) + shape)
        t0 = time.perf_counter()
        for i in range(frames):
            dset.id.write_direct_chunk((i, 0, 0), frame)
        f.flush()
        rate = frames / (time.perf_counter() - t0)
    os.remove(path)
    return rate


def ours_steps_per_second(preset: str, device: str, steps: int, record: bool, workdir: str, **extra) -> tuple[float, object]:
    out = os.path.join(workdir, f"{preset}-{record}.h5") if record else None
    result = train(preset, out=out, overwrite=True, progress=False, steps=steps, device=device,
                   eval_every=0, sample_tokens=0, warmup=0, log=lambda s: None, **extra)
    return result.steps_per_second, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hf-warmup", type=int, default=5)
    ap.add_argument("--presets", default="duckling2,goldilocks-balanced")
    ap.add_argument("--compile", action="store_true", help="pass compile=True to our trainer")
    ap.add_argument("--corpus-chars", type=int, default=3_000_000)
    ap.add_argument("--precision", default=None, help="override the presets' precision (ours and HF alike)")
    ap.add_argument("--workdir", default=None, help="where the benchmark movies are written (default: a temp dir)")
    ap.add_argument("--section", default=None, help="RESULTS.md section name (default trainer-<device>)")
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tokendyn-bench-", dir=args.workdir) as work:
        for preset in args.presets.split(","):
            precision = {"precision": args.precision} if args.precision else {}
            cfg = from_preset(preset, **precision)
            extra = dict(corpus_chars=args.corpus_chars, foreign_chars=args.corpus_chars // 5, compile=args.compile,
                         **precision)
            # warm-up run: tokenizer and token cache, kernels, allocator
            ours_steps_per_second(preset, args.device, 5, False, work, **extra)
            ours, result = ours_steps_per_second(preset, args.device, args.steps, False, work, **extra)
            ours_rec, _ = ours_steps_per_second(preset, args.device, args.steps, True, work, **extra)
            vocab_rows = sum(result.tokens_per_class.values())
            hf = hf_steps_per_second(cfg, vocab_rows, device, args.steps, args.hf_warmup)
            speedup = ours / hf
            cost = 1 - ours_rec / ours
            target_speed = 2.0 if device.type == "cuda" else 1.5
            rows.append(emit(figure=f"{preset} ours/HF", device=str(device), precision=cfg.precision,
                             ours_steps_s=ours, hf_steps_s=hf, value=speedup, target=f">= {target_speed}",
                             verdict=verdict(speedup, target_speed, True)))
            rows.append(emit(figure=f"{preset} every-step recording cost", device=str(device),
                             ours_steps_s=ours, ours_recording_steps_s=ours_rec, value=cost, target="<= 0.10",
                             verdict=verdict(cost, 0.10, False)))
            if device.type == "cuda" and preset == "duckling2":
                rows.append(emit(figure=f"duckling2 ({cfg.precision}) steps/s with every-step recording", value=ours_rec,
                                 target=">= 1000", verdict=verdict(ours_rec, 1000, True)))
            if device.type == "cuda":
                w_dtype = "bfloat16" if cfg.precision == "bf16-pure" else "float32"
                ceiling = storage_ceiling_frames_per_second((vocab_rows, cfg.dim), w_dtype, work)
                rows.append(emit(figure=f"{preset} storage ceiling (raw h5py frames/s of W, no training)",
                                 value=ceiling, target="(context)", verdict="-"))
    table = figures_table(rows)
    detail = "\n".join(
        f"- {r['figure']}: ours {r.get('ours_steps_s', float('nan')):.1f} steps/s"
        + (f", HF {r['hf_steps_s']:.1f} steps/s ({r['precision']})" if "hf_steps_s" in r else "")
        + (f", ours recording every step {r['ours_recording_steps_s']:.1f} steps/s" if "ours_recording_steps_s" in r else "")
        for r in rows if "ours_steps_s" in r
    )
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else ""
    section = args.section or f"trainer-{device.type}"
    where = args.workdir or tempfile.gettempdir()
    update_section(section, f"""
## Trainer on {device.type}, movies in {where} (`benchmarks/bench_trainer.py --device {args.device}`)

{machine()}; torch {torch.__version__} {gpu}; {args.steps} timed steps per figure, after warm-up;
HF `GPT2LMHeadModel` in a plain torch loop at the same sizes, precision and optimizer.

{table}

{detail}
""")


if __name__ == "__main__":
    main()
