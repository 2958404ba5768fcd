"""A GPT-style decoder in plain torch, readable in one sitting (after nanoGPT).

Learned positions, pre-LayerNorm blocks, ``F.scaled_dot_product_attention``, a GELU MLP of a
configurable width, and tied or untied embedding (``wte``, the W of the movie) and unembedding
(``lm_head``, the E of the movie when untied).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .loss import linear_cross_entropy


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if x.device.type == "cpu" and q.dtype != torch.float32:
            # torch's bf16 attention kernels on CPU are slower than its fp32 ones (measured 4x at
            # context 128), so CPU attention runs in fp32, which is also the more precise
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).to(q.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """The tiny language model. ``vocab_rows`` counts live, dead and phantom rows."""

    def __init__(self, *, vocab_rows: int, context: int, layers: int, dim: int, heads: int,
                 ffn: int, tied: bool = True, init_std: float = 0.02, fused_loss: bool = False):
        super().__init__()
        self.context = context
        self.fused_loss = fused_loss
        self.wte = nn.Embedding(vocab_rows, dim)
        self.wpe = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, ffn) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_rows, bias=False)
        if tied:
            self.lm_head.weight = self.wte.weight
        self.tied = tied
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                # residual projections scaled down with depth, as in GPT-2
                std = init_std / math.sqrt(2 * layers) if name.endswith("proj.weight") else init_std
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if targets is not None and self.fused_loss:
            # the loss without materializing the logits (see trainers/loss.py); no logits returned
            return None, linear_cross_entropy(x.reshape(-1, x.shape[-1]), self.lm_head.weight, targets)
        logits = self.lm_head(x)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, new_tokens: int, *, temperature: float = 0.8,
                 allowed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample ``new_tokens`` continuations; ``allowed`` limits sampling to ids below it."""
        for _ in range(new_tokens):
            logits, _ = self(idx[:, -self.context:])
            logits = logits[:, -1, :].float() / max(temperature, 1e-5)
            if allowed is not None:
                logits[:, allowed:] = -float("inf")
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
