"""The offline PANTHER pass (prefix forwards + tail windows) equals scoring each live window on its own."""

from __future__ import annotations

import numpy as np
import torch

from models.fraud.dataset import FraudData, user_profiles
from models.fraud.encoder_pass import encode_events, window_outputs
from models.sequences import build_sequences


def test_bulk_pass_equals_per_event_windows(tiny) -> None:
    model = tiny.model
    tokens = tiny.tokenizer.encode(tiny.txns)
    seqs = build_sequences(tiny.txns, tokens)
    profile = user_profiles(seqs, tiny.profiles, tiny.profile_schema)
    assert seqs.lengths.max() > model.config.max_len + 5  # tail windows are exercised
    bulk = encode_events(model, seqs, profile, temperature=0.7, batch_size=64)
    shell = FraudData(seqs, np.zeros((seqs.n_events, 1)), np.zeros((seqs.n_events, 5)), bulk.logp,
                      np.zeros((seqs.n_events, 5)), None, None, profile, None,
                      np.full(seqs.n_events, None), model.config.max_len)
    idx = np.arange(seqs.n_events)
    windows, lengths = shell.windows(idx)
    logp, hidden = window_outputs(model, torch.from_numpy(windows), torch.from_numpy(lengths),
                                  torch.from_numpy(profile[seqs.user_of_event]),
                                  torch.from_numpy(seqs.tokens),
                                  temperature=0.7)
    np.testing.assert_allclose(bulk.logp, logp.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bulk.hidden, hidden.numpy(), rtol=1e-4, atol=1e-5)
    assert (bulk.logp < 0).all() and np.isfinite(bulk.logp).all()
