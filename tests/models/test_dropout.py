"""The classifier's dropouts: word dropout, and the wrapping that keeps weight names."""

from __future__ import annotations

import torch

from rnnkit.models import build_model
from rnnkit.models.classifier import ClassifierConfig
from rnnkit.models.dropout import PooledDropout, WordDropout, regularised

PAD_ID, UNK_ID = 0, 1


def test_word_dropout_hides_words_in_training_only() -> None:
    ids = torch.tensor([[7, 8, 9, PAD_ID], [5, PAD_ID, PAD_ID, PAD_ID]])
    drop = WordDropout(1.0, pad_id=PAD_ID, unk_id=UNK_ID)
    assert torch.equal(drop.eval()(ids), ids)
    hidden = drop.train()(ids)
    assert torch.equal(hidden == UNK_ID, ids != PAD_ID)
    torch.manual_seed(0)
    many = WordDropout(0.25, pad_id=PAD_ID, unk_id=UNK_ID).train()(torch.full((200, 50), 9))
    assert 0.2 < float((many == UNK_ID).float().mean()) < 0.3


def test_regularised_keeps_the_weights_and_is_the_plain_model_in_eval() -> None:
    config = ClassifierConfig(vocab_size=12, embed=4, hidden=5, pooling="max", head="multiclass",
                              num_classes=3)  # fmt: skip
    torch.manual_seed(0)
    plain = build_model(config).eval()
    torch.manual_seed(0)
    wrapped = regularised(build_model(config), word=0.5, embed=0.5, pooled=0.5, pad_id=PAD_ID,
                          unk_id=UNK_ID).eval()  # fmt: skip
    assert isinstance(wrapped.pooling, PooledDropout)
    names = {name.replace("inputs.1.", "inputs.").replace("pooling.inner.", "pooling.")
             for name in wrapped.state_dict()}  # fmt: skip
    assert names == set(plain.state_dict())
    ids, lengths = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])
    torch.testing.assert_close(
        wrapped.probabilities(ids, lengths), plain.probabilities(ids, lengths)
    )
    # In training the words and embeddings are dropped (probabilities() runs in eval).
    torch.manual_seed(1)
    assert not torch.equal(wrapped.inputs.train()(ids), wrapped.inputs.eval()(ids))


def test_locked_dropout_keeps_one_mask_for_every_step() -> None:
    from rnnkit.models.dropout import LockedDropout

    torch.manual_seed(0)
    x = torch.ones(64, 7, 32)
    drop = LockedDropout(0.25)
    assert torch.equal(drop.eval()(x), x)
    out = drop.train()(x)  # (B, T, F)
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same mask at every step
    values = out.unique()
    assert values.numel() == 2 and values[0] == 0.0
    torch.testing.assert_close(values[1], torch.tensor(1.0 / 0.75))
    kept = float((out[:, 0] > 0).float().mean())
    assert abs(kept - 0.75) < 0.05  # 2,048 draws: 0.05 is over 5 standard deviations
    assert not torch.equal(out[0, 0], out[1, 0])  # each sequence has its own mask


def test_embedding_dropout_drops_every_occurrence_of_a_word_and_spares_padding() -> None:
    from rnnkit.models.dropout import embedding_dropout

    torch.manual_seed(1)
    weight = torch.randn(50, 4, requires_grad=True)
    ids = torch.tensor([[3, 3, 7, 0], [7, 3, 9, 0]])
    assert torch.equal(embedding_dropout(weight, ids, 0.5, False), weight[ids])
    for _ in range(20):  # some draw drops 3 and keeps 7
        out = embedding_dropout(weight, ids, 0.5, True, padding_idx=0)
        zero = out.abs().sum(-1) == 0  # (B, T)
        for word in (3, 7, 9):
            where = ids == word
            assert bool(zero[where].all()) or not bool(zero[where].any())  # all or none
        kept = ~zero & (ids != 0)
        torch.testing.assert_close(out[kept], weight[ids][kept] * 2.0)
    out.sum().backward()
    assert weight.grad is not None and bool((weight.grad[0] == 0).all())  # the pad row
