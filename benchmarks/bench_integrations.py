"""Bring-your-own-run costs, side by side in one run:

- HF ``transformers.Trainer`` optimizer steps/s at Duckling II sizes (2 layers, dim 128, 2 heads,
  FFN 512, context 512, batch 2, 8,192 rows), without and with ``MovieCallback`` recording every
  step, alternated ``--repeats`` times (median); target: recording costs <= 10 %.
- ``tokendyn import`` of a bf16 ``[T, V, d]`` safetensors stack against a raw frame-by-frame
  safetensors read of the same file (``safe_open(...).get_slice(key)[t]``); target >= 0.7.

    python benchmarks/bench_integrations.py [--device cpu|cuda] [--steps 60] [--repeats 3]

Prints one JSON line per figure and writes the "integrations-<device>" section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import emit, figures_table, machine, update_section, verdict  # noqa: E402

ROWS, CONTEXT = 8192, 512


class RandomIds(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.ids = torch.randint(0, 6144, (n, CONTEXT), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def trainer_steps_per_second(device: str, steps: int, work: str, record: bool) -> float:
    """Optimizer steps/s of one Trainer run (the first 5 steps left out), recording every step or not."""
    from transformers import GPT2Config, GPT2LMHeadModel, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from tokendyn.integrations.hf import MovieCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, args, state, control, **kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=128, n_head=2, n_inner=512, vocab_size=ROWS,
                                       n_positions=CONTEXT, bos_token_id=0, eos_token_id=0))
    args = TrainingArguments(output_dir=os.path.join(work, "out"), max_steps=steps, per_device_train_batch_size=2,
                             learning_rate=1e-4, weight_decay=0.01, report_to=[], save_strategy="no",
                             use_cpu=device == "cpu", bf16=device == "cuda", disable_tqdm=True, logging_steps=10)
    clock = Clock()
    callbacks = [clock]
    if record:
        callbacks.insert(0, MovieCallback(os.path.join(work, "hf.h5"), overwrite=True))
    trainer = Trainer(model, args, train_dataset=RandomIds(2 * steps), callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    t = clock.times[5:]
    return (len(t) - 1) / (t[-1] - t[0])


def raw_write_mb_s(work: str, frames: int, dim: int) -> float:
    """MB/s of raw h5py chunk writes of the same frames (no reading, no checks): the write's ceiling."""
    import h5py

    frame = torch.randn(ROWS, dim).to(torch.bfloat16).view(torch.int16).numpy().view("uint16")
    best = 0.0
    for _ in range(3):
        path = os.path.join(work, "ceiling.h5")
        with h5py.File(path, "w", rdcc_nbytes=0) as f:
            dset = f.create_dataset("W", (frames, ROWS, dim), "uint16", chunks=(1, ROWS, dim))
            t0 = time.perf_counter()
            for i in range(frames):
                dset.id.write_direct_chunk((i, 0, 0), frame)
            f.flush()
            best = max(best, frames * frame.nbytes / 1e6 / (time.perf_counter() - t0))
        os.remove(path)
    return best


def import_ratio(work: str, frames: int, dim: int) -> tuple[float, float]:
    """MB/s of ``import_stack`` and of a raw frame-by-frame safetensors read, best of 3 each."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tokendyn.integrations.importers import import_stack

    src = os.path.join(work, "stack.safetensors")
    save_file({"W": torch.randn(frames, ROWS, dim).mul(0.02).to(torch.bfloat16)}, src)
    size = os.path.getsize(src) / 1e6
    raw, ours = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        with safe_open(src, framework="pt") as f:
            sl = f.get_slice("W")
            for t in range(frames):
                sl[t].clone()  # one frame read into memory of its own (a slice alone is a view of the mmap)
        raw.append(size / (time.perf_counter() - t0))
        out = os.path.join(work, "imported.h5")
        t0 = time.perf_counter()
        import_stack(src, out, overwrite=True)
        ours.append(size / (time.perf_counter() - t0))
        os.remove(out)
    return max(ours), max(raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tokendyn-bench-", dir=args.workdir) as work:
        trainer_steps_per_second(args.device, 10, work, False)  # warm-up: imports, allocator, kernels
        plain, recording = [], []
        for _ in range(args.repeats):  # alternated, so drift on a noisy machine hits both
            plain.append(trainer_steps_per_second(args.device, args.steps, work, False))
            recording.append(trainer_steps_per_second(args.device, args.steps, work, True))
        p, r = statistics.median(plain), statistics.median(recording)
        cost = 1 - r / p
        rows.append(emit(figure="HF Trainer every-step recording cost (duckling2 sizes)", device=args.device,
                         plain_steps_s=p, recording_steps_s=r, plain_runs=plain, recording_runs=recording,
                         value=cost, target="<= 0.10", verdict=verdict(cost, 0.10, False)))
        ours, raw = import_ratio(work, args.frames, 128)
        rows.append(emit(figure=f"tokendyn import / raw safetensors read ({args.frames} x {ROWS} x 128 bf16)",
                         import_mb_s=ours, raw_mb_s=raw, value=ours / raw, target=">= 0.7",
                         verdict=verdict(ours / raw, 0.7, True)))
        write = raw_write_mb_s(work, args.frames, 128)
        both = 1 / (1 / raw + 1 / write)  # a raw read then a raw h5py write of every frame, in series
        rows.append(emit(figure="tokendyn import / (raw read + raw h5py write) of the same frames",
                         import_mb_s=ours, raw_mb_s=raw, write_mb_s=write, value=ours / both, target="(context)",
                         verdict="-"))
    table = figures_table(rows)
    detail = (f"- Trainer: {rows[0]['plain_steps_s']:.1f} steps/s plain, {rows[0]['recording_steps_s']:.1f} recording "
              f"every step (medians of {args.repeats} alternated runs of {args.steps} steps)\n"
              f"- import: {rows[1]['import_mb_s']:.0f} MB/s, raw read {rows[1]['raw_mb_s']:.0f} MB/s, raw h5py "
              f"write {rows[2]['write_mb_s']:.0f} MB/s (best of 3 each, warm page cache). The import must both "
              "read and write every byte: against a read alone (a memcpy from the page cache) no writer "
              "reaches 0.7; the read-plus-write row is the fair ceiling.")
    update_section(f"integrations-{args.device}", f"""
## Bring your own run on {args.device} (`benchmarks/bench_integrations.py --device {args.device}`)

{machine()}

{table}

{detail}
""")


if __name__ == "__main__":
    main()
