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
