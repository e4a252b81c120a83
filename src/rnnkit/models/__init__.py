"""The model families, and :func:`build_model`: the one place a configuration becomes a model.

=====================  ======================  ====================================
family                 configuration           model
=====================  ======================  ====================================
many-to-one            ClassifierConfig        SequenceClassifier (pooling + head)
many-to-many aligned   TaggerConfig            Tagger (optional CRF)
language model         LanguageModelConfig     LanguageModel
one-to-many            GeneratorConfig         ConditionedGenerator
encoder–decoder        Seq2SeqConfig           Seq2Seq (optional attention)
polyphonic music       MusicConfig             PianoRollModel
=====================  ======================  ====================================
"""

from __future__ import annotations

from typing import Any

from torch import nn


def build_model(config: Any) -> nn.Module:
    """The model a configuration describes; names in it are mapped to classes here only."""
    from rnnkit.models.classifier import ClassifierConfig
    from rnnkit.models.generator import ConditionedGenerator, GeneratorConfig
    from rnnkit.models.language_model import LanguageModel, LanguageModelConfig
    from rnnkit.models.music import MusicConfig, PianoRollModel
    from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnkit.models.tagger import Tagger, TaggerConfig

    if isinstance(config, ClassifierConfig):
        return _classifier(config)
    builders: list[tuple[type, Any]] = [
        (TaggerConfig, Tagger),
        (LanguageModelConfig, LanguageModel),
        (GeneratorConfig, ConditionedGenerator),
        (Seq2SeqConfig, Seq2Seq),
        (MusicConfig, PianoRollModel),
    ]
    for kind, model in builders:
        if isinstance(config, kind):
            built: nn.Module = model(config)
            return built
    raise TypeError(f"build_model: no model for a {type(config).__name__}")


def _classifier(config: Any) -> nn.Module:
    from rnnkit.models.classifier import SequenceClassifier
    from rnnkit.models.heads import BinaryHead, ClassHead, RegressionHead
    from rnnkit.models.pooling import AttentionPooling, LastPooling, MaxPooling, MeanPooling
    from rnnkit.recurrent import Recurrent

    c = config
    if c.vocab_size is not None:
        inputs: nn.Module = nn.Embedding(c.vocab_size, c.embed, padding_idx=c.pad_id)
        width = c.embed
    else:
        inputs, width = nn.Identity(), c.input_size
    encoder = Recurrent(c.cell, width, c.hidden, num_layers=c.layers,
                        bidirectional=c.bidirectional, dropout=c.dropout, backend=c.backend,
                        **c.regularisers())  # fmt: skip
    if c.gate_bias:
        from rnnkit.cells.init import gate_bias_

        for cell in encoder.cells:
            gate_bias_(cell, c.gate_bias)
    features = c.hidden * (2 if c.bidirectional else 1)
    pooling: nn.Module = {
        "last": LastPooling,
        "mean": MeanPooling,
        "max": MaxPooling,
    }.get(c.pooling, lambda: AttentionPooling(features))()
    head: Any
    if c.head == "binary":
        head = BinaryHead(features)
    elif c.head == "multiclass":
        head = ClassHead(features, c.num_classes)
    else:
        head = RegressionHead(features, c.outputs, "huber" if c.loss == "huber" else "mse")
    return SequenceClassifier(inputs, encoder, pooling, head)
