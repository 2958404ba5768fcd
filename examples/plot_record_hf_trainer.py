"""
Record a HuggingFace Trainer run
================================

A run you train with ``transformers.Trainer`` becomes a W-movie with one callback. Here a tiny
GPT-2 (one layer, 32 dimensions) learns tokendyn's embedded story text through a character-level
BPE of 400 ids, padded to 448 embedding rows. :func:`~tokendyn.integrations.classes.token_classes`
finds the live, dead and phantom rows from the tokenizer and the training ids alone, and
:class:`~tokendyn.integrations.hf.MovieCallback` records the input embedding at every optimizer
step (two micro-batches each, through gradient accumulation).
"""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, PrinterCallback, Trainer, TrainingArguments

import tokendyn
from tokendyn.analysis import inhale
from tokendyn.integrations.classes import token_classes
from tokendyn.integrations.hf import MovieCallback
from tokendyn.trainers.corpus import stories
from tokendyn.trainers.tokenizer import train_char_bpe

torch.manual_seed(0)
tok = train_char_bpe([stories(200_000, seed=1)], 400, cache=False).tokenizer
ids = np.array(tok.encode(stories(60_000, seed=2)).ids, np.int64)
windows = torch.from_numpy(ids[: ids.size // 33 * 33].reshape(-1, 33))
rows = 448  # 48 rows beyond the tokenizer: phantom


class Windows(torch.utils.data.Dataset):
    def __len__(self):
        return len(windows)

    def __getitem__(self, i):
        return {"input_ids": windows[i], "labels": windows[i]}


model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=rows, n_positions=33,
                                   bos_token_id=0, eos_token_id=0))
work = tempfile.mkdtemp()
path = os.path.join(work, "hf.h5")
args = TrainingArguments(output_dir=os.path.join(work, "out"), max_steps=60, per_device_train_batch_size=8,
                         gradient_accumulation_steps=2, learning_rate=3e-3, warmup_steps=5, logging_steps=1,
                         report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
classes = token_classes(tok, windows, rows)
trainer = Trainer(model, args, train_dataset=Windows(), callbacks=[MovieCallback(path, classes=classes)])
trainer.remove_callback(PrinterCallback)  # the log lines of every step
trainer.train()

ds = tokendyn.open_movie(path)
print(f"{ds.sizes['frame']} frames (steps {int(ds.step[0])}..{int(ds.step[-1])}), classes {classes.counts_by_class()}")
assert np.array_equal(ds.W.values[-1], model.get_input_embeddings().weight.detach().numpy())

# %%
# The cloud's radius per class and the learning rate the Trainer used.
fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
for name in ("live", "dead", "phantom"):
    ax.plot(ds.step, inhale(ds, tokens=name).radius, label=name)
ax.set(xlabel="optimizer step", ylabel="mean radius about the class centroid", title="a Trainer run as a W-movie")
ax.legend()
ax2.plot(ds.step, ds.lr, color="tab:orange")
ax2.set(xlabel="optimizer step", ylabel="learning rate", title="lr, recorded at every step")
plt.tight_layout()
