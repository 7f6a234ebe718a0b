"""Vector quantiser of the VQ-VAE motion prior (reference §3.2) with two token layouts.

A latent `z` [B, T, D] is cut into rows of `code_dim` numbers ("tokens"), each replaced by its nearest codebook
entry. Every clip gives `T_i * D / code_dim` tokens (2 per frame with the defaults); padded frames never enter a token.

* `per_frame` (default for new training): frame t's D values split into D/code_dim consecutive chunks; token j of
  frame t is `z[t, j*code_dim:(j+1)*code_dim]`. Tokens never mix frames, so a code means "half a frame".
* `official`: the channel-major reshape of the official code: the clip's `[T, D]` latent is transposed to `[D, T]`,
  made contiguous and viewed as rows of `code_dim` numbers, i.e. row r holds the flattened entries
  `r*code_dim ... (r+1)*code_dim - 1` of the channel-major array (entry `c*T + t` = channel c at frame t). A row
  therefore runs along time inside one channel and wraps into the next one; tokenisation depends on T. Needed to
  run official weights exactly. Applied per clip over its valid frames only (for batch size 1 identical to the
  official code).

Training uses the nearest code (argmin of squared Euclidean distance) with a straight-through estimator and the loss
`beta * mean((sg[z_q] - z)^2) + mean((z_q - sg[z])^2)` over valid entries. Inference can instead sample codes from
`softmax(-d / temperature)`; with k > 1 the official code draws k codes without replacement and keeps the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probtalk3d_cli.models.layers import lengths_from_mask

LAYOUTS = ("per_frame", "official")


@dataclass
class QuantizerOutput:
    """Result of `VectorQuantizer.forward`.

    Attributes:
        z_q: [B, T, D] straight-through quantised latent (value = codebook entries, gradient = identity w.r.t. z);
            padded frames are 0.
        loss: scalar VQ loss over valid entries (commitment weighted by beta + codebook term).
        codes: [B, T * D / code_dim] long code indices in the layout's token order; -1 at padding.
        perplexity: scalar exp(entropy) of the code usage over all valid tokens of the batch.
    """

    z_q: Tensor
    loss: Tensor
    codes: Tensor
    perplexity: Tensor


class VectorQuantizer(nn.Module):
    """Codebook of `num_codes` vectors of size `code_dim`, initialised uniform in ±1/num_codes, learned by gradient.

    Args:
        num_codes: codebook entries (official 256).
        code_dim: size of each entry and token (official 128); must divide the latent width.
        beta: commitment weight (official 0.25).
        layout: `per_frame` or `official` (see the module docstring).
    """

    def __init__(self, num_codes: int = 256, code_dim: int = 128, beta: float = 0.25, layout: str = "per_frame"):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"unknown token layout {layout!r}; use one of {', '.join(LAYOUTS)} (prior.token_layout)")
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.beta = beta
        self.layout = layout
        self.codebook = nn.Embedding(num_codes, code_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)

    # ---- token layout ------------------------------------------------------------------------------------

    def _tokens_per_frame(self, d: int) -> int:
        if d % self.code_dim:
            raise ValueError(f"latent width {d} is not a multiple of code_dim {self.code_dim}")
        return d // self.code_dim

    def to_tokens(self, z: Tensor, lengths: Tensor) -> Tensor:
        """Cut the valid part of z [B, T, D] into token rows [sum_i T_i*D/code_dim, code_dim] (clip 0 first)."""
        b, t, d = z.shape
        self._tokens_per_frame(d)
        if self.layout == "per_frame":
            mask = torch.arange(t, device=z.device)[None, :] < lengths[:, None]
            return z[mask].reshape(-1, self.code_dim)  # [N_valid * D/c, c]
        rows = []
        for i in range(b):
            li = int(lengths[i])
            # [T_i, D] -> channel-major [D, T_i] -> rows of code_dim (official reshape, reference §3.2)
            rows.append(z[i, :li].t().contiguous().view(-1, self.code_dim))
        return torch.cat(rows, dim=0)

    def from_tokens(self, rows: Tensor, lengths: Tensor, shape: torch.Size) -> Tensor:
        """Inverse of `to_tokens`: token rows -> [B, T, D] with zeros at padded frames."""
        b, t, d = shape
        out = rows.new_zeros(b, t, d)
        if self.layout == "per_frame":
            mask = torch.arange(t, device=rows.device)[None, :] < lengths[:, None]
            out[mask] = rows.reshape(-1, d)
            return out
        start = 0
        for i in range(b):
            li = int(lengths[i])
            n = li * d // self.code_dim
            out[i, :li] = rows[start:start + n].reshape(d, li).t()  # rows -> [D, T_i] -> [T_i, D]
            start += n
        return out

    # ---- code selection ----------------------------------------------------------------------------------

    def distances(self, rows: Tensor) -> Tensor:
        """Squared Euclidean distances [N, num_codes] as ||z||^2 + ||e||^2 - 2 z.e (the official formula)."""
        e = self.codebook.weight
        return (rows ** 2).sum(dim=1, keepdim=True) + (e ** 2).sum(dim=1) - 2.0 * rows @ e.t()

    @staticmethod
    def sample_codes(
        d: Tensor, temperature: float, k: int = 1, generator: Optional[torch.Generator] = None
    ) -> Tensor:
        """Draw one code per row from softmax(-d / temperature).

        Official semantics: `torch.multinomial(p, k)` without replacement, keeping the LAST of the k draws (so k > 1
        pushes away from the most likely code); k = 1 is plain categorical sampling.

        Args:
            d: [N, num_codes] distances.
            temperature: > 0; small values approach the nearest code.
            k: draws per row (1 <= k <= num_codes).
            generator: optional torch.Generator for reproducible draws (on another device than d, the draw happens
                on the generator's device).

        Returns:
            [N] long code indices.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}; use deterministic decoding for the nearest code")
        if not 1 <= k <= d.shape[1]:
            raise ValueError(f"k must be between 1 and the codebook size {d.shape[1]}, got {k}")
        probs = F.softmax(-d.float() / temperature, dim=-1)
        if generator is not None and generator.device != probs.device:
            probs = probs.to(generator.device)  # draw where the generator lives (e.g. a CPU generator for a GPU model)
        draws = torch.multinomial(probs, num_samples=k, replacement=False, generator=generator)  # [N, k]
        return draws[:, -1].to(d.device)

    def forward(
        self,
        z: Tensor,
        mask: Optional[Tensor] = None,
        sample: bool = False,
        temperature: float = 0.2,
        k: int = 1,
        generator: Optional[torch.Generator] = None,
    ) -> QuantizerOutput:
        """Quantise z [B, T, D] over its valid frames.

        Args:
            z: [B, T, D] latent.
            mask: [B, T] bool (True = valid; prefix); None = all valid.
            sample: False = nearest code (training, deterministic inference); True = temperature sampling.
            temperature, k, generator: sampling controls (see `sample_codes`).

        Returns:
            QuantizerOutput (fp32 also under autocast: the code search always runs in fp32).
        """
        b, t, d = z.shape
        if mask is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=z.device)
        else:
            lengths = lengths_from_mask(mask)
        rows = self.to_tokens(z.float(), lengths)  # [N, c]
        with torch.autocast(device_type=z.device.type, enabled=False):  # nearest-code search in fp32
            dist = self.distances(rows)
        idx = self.sample_codes(dist, temperature, k, generator) if sample else dist.argmin(dim=1)  # [N]
        rows_q = self.codebook(idx)  # [N, c]
        loss = self.beta * torch.mean((rows_q.detach() - rows) ** 2) + torch.mean((rows_q - rows.detach()) ** 2)
        rows_st = rows + (rows_q - rows).detach()  # straight-through estimator
        z_q = self.from_tokens(rows_st, lengths, z.shape)
        usage = torch.bincount(idx, minlength=self.num_codes).to(z.dtype) / max(idx.numel(), 1)
        perplexity = torch.exp(-torch.sum(usage * torch.log(usage + 1e-10)))
        n_tok = self._tokens_per_frame(d)
        codes = torch.full((b, t * n_tok), -1, dtype=torch.long, device=z.device)
        tok_mask = torch.arange(t * n_tok, device=z.device)[None, :] < (lengths * n_tok)[:, None]
        codes[tok_mask] = idx
        return QuantizerOutput(z_q=z_q, loss=loss, codes=codes, perplexity=perplexity)
