"""The pretrained model's view of every transaction: log P_u(x) and the hidden state of u's window.

Live, each event's window (the ≤ L tokens before it) is one row of a batch (`window_outputs`). Offline,
the same windows are computed with far fewer forward passes (`encode_events`), exploiting causality:

- a user's event at index t ≤ L has the window tokens[0:t] — a *prefix* of the user's sequence. One
  causal forward over the first min(n − 1, L) tokens gives the hidden state of every such window at
  once (position t − 1 sees exactly tokens[0:t], at the same absolute positions as a live window);
- an event at index t > L has the window tokens[t − L : t] (positions shifted): one row each;
- the first event (empty history) gets the window [UNK], the convention of `models.loaders`.

These are the *same windows* the live scorer builds, so the numbers agree to float rounding (tested in
`tests/models/fraud/test_encoder_pass.py`). For 5,000 users × 60 days (464k events) this is ~9k
forward rows instead of 464k.

The live cached path reads states at chosen positions of planned rows (`position_hidden`, the rows of
`models.fraud.window_plan`) and caches each state's next-token log-normalizer (`next_token_lse`), so
scoring an event later needs neither the encoder nor a pass over the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.batch import PAD_ID, UNK_ID, SequenceBatch
from models.panther import PantherModel
from models.sequences import Sequences


@dataclass(frozen=True)
class EncoderOutputs:
    """Per event, in the `Sequences`' (user-major, chronological) order."""

    logp: np.ndarray  # (N,) float32 — log P_u(x) of each event's own token given its window
    hidden: np.ndarray  # (N, d) float32 — the window's last hidden state (PANTHER `sequence_embedding`)


def next_token_logprob(
    model: PantherModel, hidden: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
    chunk: int = 4096,
) -> torch.Tensor:
    """hidden (n, d) at a window's last position, targets (n,) → log P(target) (n,) float32.

    Full softmax over the vocabulary of logits / temperature (the temperature the model was trained
    with, so P is the model's own next-token distribution); reserved ids are −inf in `model.logits`.
    """
    out = []
    for start in range(0, hidden.shape[0], chunk):
        logits = model.logits(hidden[start : start + chunk].float()) / temperature
        target = targets[start : start + chunk].unsqueeze(1)
        out.append((logits.gather(1, target) - logits.logsumexp(dim=1, keepdim=True)).squeeze(1))
    return torch.cat(out) if out else hidden.new_zeros(0)


def next_token_lse(
    model: PantherModel, hidden: torch.Tensor, temperature: float = 1.0, chunk: int = 1024
) -> torch.Tensor:
    """hidden (n, d) → log Σ_v exp(logit_v / T) (n,) float32: the normalizer `next_token_logprob`
    subtracts, computed the same way (chunked: (chunk, V) logits at a time)."""
    out = [(model.logits(hidden[start : start + chunk].float()) / temperature).logsumexp(dim=1)
           for start in range(0, hidden.shape[0], chunk)]  # fmt: skip
    return torch.cat(out) if out else hidden.new_zeros(0)


@torch.no_grad()
def position_hidden(
    encoder: Callable[[SequenceBatch, torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    profile: torch.Tensor,
    positions: torch.Tensor,
) -> torch.Tensor:
    """Rows (B, W) right-padded, lengths (B,), profile (B, P), positions (B, K) (−1 = none)
    → hidden (B, K, d) at those positions, zeros where −1: one causal pass gives every prefix's state.

    `encoder(batch, positions)` is `PantherModel.hidden_at` or its traced graph
    (`models.fraud.traced`): the model's hidden states read at those positions, of which the last
    block computes only those (the reference, `model(batch)` gathered, is tested equal)."""
    tokens, lengths = as_windows(tokens, lengths)
    width = int(lengths.max()) if len(lengths) else 1
    batch = SequenceBatch(tokens=tokens[:, :width], lengths=lengths, profile=profile)
    picked = encoder(batch, positions.clamp(min=0, max=width - 1))  # (B, K, d)
    return torch.where((positions >= 0).unsqueeze(-1), picked, torch.zeros_like(picked))


def as_windows(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty windows (length 0) → the single token [UNK] (length 1); others unchanged."""
    empty = lengths <= 0
    if bool(empty.any()):
        tokens = tokens.clone()
        if tokens.shape[1] == 0:
            tokens = torch.full((tokens.shape[0], 1), PAD_ID, dtype=tokens.dtype, device=tokens.device)
        tokens[empty, 0] = UNK_ID
        lengths = torch.where(empty, torch.ones_like(lengths), lengths)
    return tokens, lengths


@torch.no_grad()
def window_outputs(
    model: PantherModel, tokens: torch.Tensor, lengths: torch.Tensor, profile: torch.Tensor,
    new_token: torch.Tensor, temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Live form: windows (B, L) right-padded, lengths (B,) (0 allowed), profile (B, P), new_token (B,)
    → (log P_u(x) (B,), hidden (B, d))."""
    tokens, lengths = as_windows(tokens, lengths)
    width = int(lengths.max()) if len(lengths) else 1
    batch = SequenceBatch(tokens=tokens[:, :width], lengths=lengths, profile=profile)
    hidden = model.sequence_embedding(batch)
    return next_token_logprob(model, hidden, new_token, temperature), hidden


def _row_plan(seqs: Sequences, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward rows: (user, start, end) of each row's tokens; which events each row scores follows."""
    lengths = seqs.lengths
    users = np.arange(len(seqs), dtype=np.int64)
    has_prefix = lengths >= 2
    p_users = users[has_prefix]
    p_start = seqs.offsets[:-1][has_prefix]
    p_end = p_start + np.minimum(lengths[has_prefix] - 1, max_len)
    tail_counts = np.maximum(lengths - 1 - max_len, 0)  # events at index t > L
    t_users = np.repeat(users, tail_counts)
    first_tail = seqs.offsets[:-1] + max_len + 1
    k = np.arange(tail_counts.sum()) - np.repeat(np.cumsum(tail_counts) - tail_counts, tail_counts)
    t_end = np.repeat(first_tail, tail_counts) + k  # = the scored event's position
    return (np.concatenate([p_users, t_users]), np.concatenate([p_start, t_end - max_len]),
            np.concatenate([p_end, t_end]))


@torch.no_grad()
def encode_events(
    model: PantherModel,
    seqs: Sequences,
    profile: np.ndarray,
    temperature: float = 1.0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> EncoderOutputs:
    """log P_u(x) and window hidden states of every event of `seqs`; profile (U, P) per user row."""
    model = model.eval().to(device)
    max_len = model.config.max_len
    n = seqs.n_events
    logp = np.zeros(n, dtype=np.float32)
    hidden_out = np.zeros((n, model.config.d_model), dtype=np.float32)
    tokens_all = torch.from_numpy(np.asarray(seqs.tokens, dtype=np.int64))
    profile_t = torch.from_numpy(np.asarray(profile, dtype=np.int64))

    # first events: window [UNK]
    firsts = seqs.offsets[:-1][seqs.lengths >= 1]
    users = np.flatnonzero(seqs.lengths >= 1)
    for i in range(0, len(firsts), batch_size * 8):
        rows = slice(i, i + batch_size * 8)
        count = len(firsts[rows])
        ones = torch.ones(count, dtype=torch.long, device=device)
        lp, h = window_outputs(
            model, ones[:, None] * UNK_ID, ones, profile_t[users[rows]].to(device),
            tokens_all[firsts[rows]].to(device), temperature,
        )
        logp[firsts[rows]], hidden_out[firsts[rows]] = lp.cpu().numpy(), h.float().cpu().numpy()

    row_user, row_start, row_end = _row_plan(seqs, max_len)
    order = np.argsort(row_end - row_start, kind="stable")  # similar lengths together: less padding
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        starts, ends = row_start[rows], row_end[rows]
        widths = ends - starts
        width = int(widths.max())
        pos = starts[:, None] + np.arange(width)[None, :]
        real = pos < ends[:, None]
        window = torch.from_numpy(np.where(real, seqs.tokens[np.minimum(pos, ends[:, None] - 1)], PAD_ID))
        batch = SequenceBatch(tokens=window.to(device), lengths=torch.from_numpy(widths).to(device),
                              profile=profile_t[row_user[rows]].to(device))
        hidden = model(batch)  # (b, width, d)
        is_prefix = starts == seqs.offsets[row_user[rows]]
        # prefix rows score every position; tail rows only their last one
        score_col = np.where(real & (is_prefix[:, None] | (np.arange(width)[None, :] == widths[:, None] - 1)))
        b_idx, col = score_col
        event = starts[b_idx] + col + 1  # position j predicts the event right after it
        h = hidden[torch.from_numpy(b_idx).to(device), torch.from_numpy(col).to(device)]
        lp = next_token_logprob(model, h, tokens_all[event].to(device), temperature)
        logp[event], hidden_out[event] = lp.cpu().numpy(), h.float().cpu().numpy()
    return EncoderOutputs(logp, hidden_out)
