"""An ensemble of fraud heads: the mean of its members, member 0 the single fit, one standardization."""

from __future__ import annotations

import doctest
from dataclasses import replace

import numpy as np
import pytest
import torch

import models.fraud.ensemble
from models.fraud.api import ensemble_size, fit_fraud, variant_config
from models.fraud.dataset import FraudData, build_fraud_data, chronological_split
from models.fraud.ensemble import HeadEnsemble
from models.fraud.features import NUMERIC_NAMES, FeatureSchema
from models.fraud.head import NORMALIZERS, FraudHead, HeadInputs, head_config
from models.fraud.reasons import SignalMap, integrated_gradients
from models.fraud.train import FitConfig, fit_ensemble, fit_head, predict_logits


def test_doctests() -> None:
    assert doctest.testmod(models.fraud.ensemble).failed == 0


def _inputs(rows: int = 6, features: int = 4, d: int = 8) -> HeadInputs:
    g = torch.Generator().manual_seed(1)
    return HeadInputs(torch.randn(rows, features, generator=g), hidden=torch.randn(rows, d, generator=g),
                      user=torch.randn(rows, d, generator=g), deviation=torch.randn(rows, 5, generator=g))


def test_an_ensemble_scores_and_explains_as_the_mean_of_its_members() -> None:
    config = head_config("hybrid_panther", n_features=4, d_model=8, deep_dims=(8,))
    torch.manual_seed(0)
    members = [FraudHead(config).eval() for _ in range(3)]
    ensemble = HeadEnsemble(members).eval()
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), torch.stack([m(x) for m in members]).mean(dim=0))
    signals = SignalMap.build(ensemble, [f"f{i}" for i in range(4)])  # type: ignore[arg-type]
    blocks = ensemble.blocks(x)
    together = integrated_gradients(ensemble, blocks, signals)  # type: ignore[arg-type]
    apart = torch.stack([integrated_gradients(m, blocks, signals) for m in members]).mean(dim=0)
    torch.testing.assert_close(together, apart, rtol=1e-4, atol=1e-5)


def test_heads_with_their_own_sequence_encoder_cannot_be_members(tiny) -> None:
    textcnn = head_config("hybrid_textcnn", n_features=4, d_model=8, vocab_size=20)
    with pytest.raises(ValueError, match="--heads 1"):
        HeadEnsemble([FraudHead(textcnn), FraudHead(textcnn)])
    config = head_config("hybrid_panther", n_features=4, d_model=8)
    with pytest.raises(ValueError, match="one config"):
        HeadEnsemble([FraudHead(config), FraudHead(replace(config, psi_dim=8))])
    with pytest.raises(ValueError, match="fine-tune"):  # refused before any tree is fitted
        fit_fraud(tiny.model_dir, tiny.transactions_path, tiny.profiles_path, device="cpu", fine_tune=True,
                  heads=2)
    assert ensemble_size(None, config, fine_tune=False) == 3
    assert ensemble_size(None, config, fine_tune=True) == 1
    assert ensemble_size(None, textcnn, fine_tune=False) == 1
    assert ensemble_size(2, head_config("dcn", n_features=4), fine_tune=False) == 2


@pytest.fixture(scope="module")
def planted(tiny) -> FraudData:
    schema = FeatureSchema.fit(tiny.txns)
    data = build_fraud_data(tiny.txns, tiny.tokenizer, schema, tiny.model, tiny.profiles, tiny.profile_schema)
    return replace(data, labels=data.features[:, NUMERIC_NAMES.index("amount_z")] > 2.0)


def test_member_zero_is_the_single_fit_and_all_share_its_standardization(planted: FraudData) -> None:
    train, val, test, _ = chronological_split(planted.times, 0.7, 0.2)
    config = variant_config(planted, "hybrid_panther", deep_dims=(16,), cross_layers=1)
    fit = FitConfig(epochs=2, batch_size=64, seed=5)
    single = fit_head(planted, train, val, config, fit)
    shipped, members, val_pr_auc = fit_ensemble(planted, train, val, config, fit, members=3)
    assert isinstance(shipped, HeadEnsemble) and len(shipped) == 3 and len(members) == 3
    for name, value in single.head.state_dict().items():
        torch.testing.assert_close(members[0].head.state_dict()[name], value, rtol=0, atol=0)
    for member in members[1:]:
        for name in NORMALIZERS:
            mine, first = getattr(member.head, name), getattr(members[0].head, name)
            if first is not None:
                for key, value in first.state_dict().items():
                    torch.testing.assert_close(mine.state_dict()[key], value, rtol=0, atol=0)
        assert not torch.equal(member.head.psi.weight, members[0].head.psi.weight)  # other seeds
    logits = [predict_logits(m.head, planted, test) for m in members]
    np.testing.assert_allclose(predict_logits(shipped, planted, test), np.mean(logits, axis=0), rtol=1e-5,
                               atol=1e-5)  # fmt: skip
    assert 0.0 <= val_pr_auc <= 1.0
    alone, fits, _ = fit_ensemble(planted, train, val, config, fit, members=1)
    assert isinstance(alone, FraudHead) and len(fits) == 1


def test_the_cli_refuses_an_ensemble_with_fine_tuning_in_one_line(tiny) -> None:
    from click.testing import CliRunner

    from stream.cli import main

    args = ["fit-fraud", "--model", str(tiny.model_dir), "--transactions", str(tiny.transactions_path),
            "--fine-tune", "--heads", "2"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "leave out --heads" in result.output and "Traceback" not in result.output
