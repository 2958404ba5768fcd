"""
Record your own training loop
=============================

tokendyn's :class:`~tokendyn.Recorder` works with any torch loop: give it the embedding matrix at
the steps you want and it streams the frames to a W-movie on a background thread, with bounded
memory. Here a toy bag-of-embeddings model learns to predict the next token of a repeating
sequence; rows 48-63 of its embedding are never used (phantom tokens).
"""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

import tokendyn

torch.manual_seed(0)
vocab, dim, phantom = 64, 16, 16
emb = torch.nn.Embedding(vocab, dim)
head = torch.nn.Linear(dim, vocab)
opt = torch.optim.AdamW([*emb.parameters(), *head.parameters()], lr=3e-2)
classes = np.array(["live"] * (vocab - phantom) + ["phantom"] * phantom)
seq = torch.arange(vocab - phantom).repeat(8)

path = os.path.join(tempfile.mkdtemp(), "own-loop.h5")
with tokendyn.Recorder(path, token_class=classes, scalars=["loss"], config={"model": "bag of embeddings"}) as rec:
    for step in range(151):
        x, y = seq[:-1], seq[1:]
        loss = torch.nn.functional.cross_entropy(head(emb(x)), y)
        if step > 0:  # frame 0 is the initialisation
            opt.zero_grad()
            loss.backward()
            opt.step()
        rec.capture(step, W=emb.weight, loss=loss.detach())

# %%
# The movie opens lazily; the loss and the token norms are read when plotted.
ds = tokendyn.open_movie(path)
print(tokendyn.info(path)["frames"], "frames;", tokendyn.info(path)["tokens_per_class"])
norms = np.sqrt((ds.W ** 2).sum("dim"))
fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
a.plot(ds.step, ds.loss)
a.set(xlabel="step", ylabel="loss (nats)")
for code, name in enumerate(("live", "dead", "phantom")):
    sel = norms.sel(token=ds.token_class == code)
    if sel.sizes["token"]:
        b.plot(ds.step, sel.mean("token"), label=name)
b.set(xlabel="step", ylabel="mean |W_i| (embedding units)")
b.legend()
plt.tight_layout()
