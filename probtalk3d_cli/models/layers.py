"""Shared building blocks of the three ProbTalk3D networks (reference §2), all mask-aware.

Every module takes `mask` [B, T] bool (True = valid frame, valid frames first) so that a zero-padded batch gives the
same per-clip outputs, up to float rounding, as running each clip alone.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEAKY_SLOPE = 0.2
NORM_EPS = 1e-5  # nn.InstanceNorm1d and nn.LayerNorm default, as in the official code
MIN_FRAMES = 2  # instance norm over time needs at least two frames (reference §11.7)


# --------------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------------


def mask_from_lengths(lengths: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Prefix mask from lengths.

    Args:
        lengths: [B] integer lengths.
        max_len: width of the mask (default: the largest length).

    Returns:
        [B, max_len] bool, True for positions < length.
    """
    lengths = torch.as_tensor(lengths)
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def lengths_from_mask(mask: Tensor) -> Tensor:
    """Valid lengths of a prefix mask.

    Args:
        mask: [B, T] bool, True = valid; each row must be a run of True followed by False (padding at the end).

    Returns:
        [B] long lengths.

    Raises:
        ValueError: the mask is not bool/2-D or a row has a valid frame after padding.
    """
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask must be a [B, T] bool tensor (True = valid frame), got {mask.dtype} {list(mask.shape)}")
    lengths = mask.sum(dim=1)
    if not torch.equal(mask, mask_from_lengths(lengths, mask.shape[1])):
        raise ValueError("mask rows must hold their valid frames first and padding at the end (a prefix mask)")
    return lengths


def check_min_frames(lengths: Tensor, what: str = "clip") -> None:
    """Raise a clear ValueError when a clip is shorter than the 2 frames instance norm needs (reference §11.7)."""
    if lengths.numel() and int(lengths.min()) < MIN_FRAMES:
        short = int(lengths.min())
        raise ValueError(
            f"a {what} has {short} frame(s) but the temporal conv block's instance norm needs at least {MIN_FRAMES} "
            f"(0.08 s at 25 fps); drop or lengthen clips shorter than that"
        )


def fill_padding_with_last(x: Tensor, lengths: Tensor) -> Tensor:
    """Replace every padded frame by its clip's last valid frame.

    With this fill a replicate-padded convolution sees, at each clip's end, exactly what it sees on the clip alone.

    Args:
        x: [B, T, C].
        lengths: [B] valid lengths (>= 1).

    Returns:
        [B, T, C].
    """
    b, t, c = x.shape
    idx = torch.minimum(
        torch.arange(t, device=x.device)[None, :].expand(b, t), (lengths.to(x.device) - 1).clamp(min=0)[:, None]
    )  # [B, T]
    return torch.gather(x, 1, idx[:, :, None].expand(b, t, c))


def masked_instance_norm(x: Tensor, mask: Optional[Tensor], eps: float = NORM_EPS) -> Tensor:
    """Instance norm over time using only valid frames (nn.InstanceNorm1d(affine=False) statistics).

    Args:
        x: [B, C, T].
        mask: [B, T] bool or None (all valid).
        eps: added to the biased variance.

    Returns:
        [B, C, T]; padded frames are set to 0.
    """
    if mask is None or bool(mask.all()):
        return F.instance_norm(x, eps=eps)
    xf = x.float()  # statistics in fp32 also under bf16 autocast
    m = mask[:, None, :].to(xf.dtype)  # [B, 1, T]
    count = m.sum(dim=2, keepdim=True)  # [B, 1, 1]
    mean = (xf * m).sum(dim=2, keepdim=True) / count
    var = (((xf - mean) * m) ** 2).sum(dim=2, keepdim=True) / count  # biased, as InstanceNorm1d
    return ((xf - mean) * torch.rsqrt(var + eps) * m).to(x.dtype)


# --------------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------------


class ConvBlock(nn.Module):
    """Temporal conv block (reference §2): Conv1d(k5, s1, pad 2 replicate) -> LeakyReLU(0.2) -> InstanceNorm1d.

    The official `squasher`/`expander` with quant_factor = 0; the unused down/up-sampling branches are not ported.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=5, stride=1, padding=2, padding_mode="replicate")

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x [B, T, C], mask [B, T] bool -> [B, T, C] (padded frames 0).

        Raises:
            ValueError: a clip shorter than 2 frames.
        """
        if mask is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        else:
            lengths = lengths_from_mask(mask)
        check_min_frames(lengths)
        padded = mask is not None and not bool(mask.all())
        if padded:
            x = fill_padding_with_last(x, lengths)
        h = self.conv(x.transpose(1, 2))  # [B, C, T]
        h = F.leaky_relu(h, LEAKY_SLOPE)
        h = masked_instance_norm(h, mask if padded else None)
        return h.transpose(1, 2)  # [B, T, C]


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal table added to the input, then dropout (reference §2).

    `pe[p, 2i] = sin(p / 10000^(2i/d))`, `pe[p, 2i+1] = cos(p / 10000^(2i/d))`, stored as a buffer [max_len, 1, d]
    (the official layout, so official checkpoints load unchanged).
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.1):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model must be even for the sinusoidal positional encoding, got {d_model}")
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len, dtype=torch.float32)[:, None]  # [L, 1]
        div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe[:, None, :])  # [L, 1, d]

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, d] -> x + pe[:T] with dropout.

        Raises:
            ValueError: T exceeds the table length (reference §11.8).
        """
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(
                f"sequence of {t} frames exceeds the positional-encoding limit of {self.max_len} frames "
                f"({self.max_len / 25:.0f} s at 25 fps); split the input into windows (generate does this) "
                "or train with a larger max_len"
            )
        return self.dropout(x + self.pe[:t, 0, :][None].to(x.dtype))


class Attention(nn.Module):
    """Multi-head self-attention with one bias-free Q|K|V projection and the official scale `d_model^-1/2`.

    Layout of `to_qkv` output: [Q (d) | K (d) | V (d)], each split into `num_heads` contiguous heads. Scores are
    scaled by the model width, not the head width (reference §2, §11.6). Padded keys are masked out.
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide d_model ({d_model})")
        self.num_heads = num_heads
        self.scale = d_model ** -0.5
        self.to_qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.to_out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x [B, T, d], mask [B, T] bool (keys to attend to) -> [B, T, d]."""
        b, t, d = x.shape
        qkv = self.to_qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads)  # [B, T, 3, H, dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, dh]
        attn_mask = None
        if mask is not None and not bool(mask.all()):
            attn_mask = mask[:, None, None, :]  # [B, 1, 1, T]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)  # [B, H, T, dh]
        out = out.transpose(1, 2).reshape(b, t, d)  # heads concatenated
        return self.to_out(out)


class FeedForward(nn.Module):
    """Linear(d -> ff) -> GELU (tanh approximation) -> Linear(ff -> d)."""

    def __init__(self, d_model: int, ff_dim: int):
        super().__init__()
        self.l1 = nn.Linear(d_model, ff_dim)
        self.l2 = nn.Linear(ff_dim, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.l2(F.gelu(self.l1(x), approximate="tanh"))


class TransformerBlock(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + MLP(LN(x)); LN eps 1e-5, no dropout inside (reference §2)."""

    def __init__(self, d_model: int, num_heads: int, ff_dim: int):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model, eps=NORM_EPS)
        self.attn = Attention(d_model, num_heads)
        self.mlp_norm = nn.LayerNorm(d_model, eps=NORM_EPS)
        self.mlp = FeedForward(d_model, ff_dim)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), mask)
        return x + self.mlp(self.mlp_norm(x))


class TemporalTransformer(nn.Module):
    """The trunk all three networks share: conv block -> linear embedding -> PE (+dropout) -> blocks (no final norm).

    Submodules (names fixed for the official key map): `temporal` (ConvBlock), `embed` (Linear d -> d),
    `pos` (PositionalEncoding), `blocks` (ModuleList of TransformerBlock).
    """

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, num_layers: int, max_len: int, dropout: float):
        super().__init__()
        self.d_model = d_model
        self.temporal = ConvBlock(d_model)
        self.embed = nn.Linear(d_model, d_model)
        self.pos = PositionalEncoding(d_model, max_len=max_len, dropout=dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, ff_dim) for _ in range(num_layers))

    def run_trunk(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        """x [B, T, d], mask [B, T] -> [B, T, d] with padded frames set to 0."""
        h = self.temporal(x, mask)
        h = self.pos(self.embed(h))
        for block in self.blocks:
            h = block(h, mask)
        if mask is not None:
            h = h.masked_fill(~mask[:, :, None], 0.0)
        return h


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values (buffers such as the PE table excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def load_state_strict(model: nn.Module, state: dict, where: object, assign: bool = False) -> None:
    """`load_state_dict(strict=True)` with one clear error line listing missing/unexpected/mis-shaped keys.

    With `assign=True` the model's tensors are replaced by those of `state` (no copy; works for a model built on
    the meta device, which skips the random initialisation — requires_grad flags are kept).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {list(state[k].shape)} != {list(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shaped:
        parts = []
        for name, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{name}: {', '.join(items[:5])}{more}")
        raise ValueError(
            f"weights in {where} do not fit the model built from its config ({'; '.join(parts)}); "
            "the file is damaged or from an incompatible version — re-train or re-import it"
        )
    model.load_state_dict(state, strict=True, assign=assign)


# --------------------------------------------------------------------------------------------------------
# Dropout with fewer random draws (training speed on CPU)
# --------------------------------------------------------------------------------------------------------

_KEEP_LEVELS = 65536  # keep/drop is decided on 16-bit random numbers


def fast_dropout(x: Tensor, p: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """Inverted dropout whose mask comes from 16-bit slices of 64-bit random integers.

    `torch.nn.functional.dropout` draws one random number per element, which on CPU costs more than the matmuls of
    a small layer (about 7 ns per element on 2 cores). Here each full-range int64 draw gives four independent 16-bit
    numbers u (uniform on -32768..32767); an element is kept when u >= round(p * 65536) - 32768 and scaled by
    1 / (1 - p'), where p' = round(p * 65536) / 65536 is the drop rate actually used (|p' - p| <= 2^-17;
    0.1 -> 0.1000061). Same expectation as plain dropout, about 3x faster on CPU; the torch RNG is advanced
    deterministically, so seeded runs and exact resume are unaffected.
    """
    if p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    threshold = int(round(p * _KEEP_LEVELS))
    n = x.numel()
    words = torch.empty(((n + 3) // 4,), dtype=torch.int64, device=x.device).random_(-(2**63), None,
                                                                                     generator=generator)
    keep = words.view(torch.int16)[:n].view(x.shape) >= threshold - _KEEP_LEVELS // 2
    return x * keep.to(x.dtype).mul_(_KEEP_LEVELS / (_KEEP_LEVELS - threshold))


class FastDropout(nn.Module):
    """`nn.Dropout` replacement using `fast_dropout` in training mode (identity in eval mode)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return fast_dropout(x, self.p) if self.training and self.p > 0 else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(module: nn.Module) -> int:
    """Replace every `nn.Dropout` inside `module` by a `FastDropout` of the same p (in place); returns the count."""
    count = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p).train(child.training))  # keep the current mode
                count += 1
    return count
