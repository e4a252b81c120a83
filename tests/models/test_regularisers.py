"""Every model configuration carries the stack's regularisers once, checked on arrival."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from rnnkit.models import build_model
from rnnkit.models.classifier import ClassifierConfig
from rnnkit.models.generator import GeneratorConfig
from rnnkit.models.language_model import LanguageModelConfig
from rnnkit.models.music import MusicConfig
from rnnkit.models.seq2seq import Seq2SeqConfig
from rnnkit.models.tagger import TaggerConfig
from rnnkit.recurrent import Recurrent, Regularisers

CONFIGS: dict[str, Callable[..., Any]] = {
    "classifier": lambda **kw: ClassifierConfig(vocab_size=9, hidden=4, **kw),
    "generator": lambda **kw: GeneratorConfig(9, num_labels=2, hidden=4, **kw),
    "language_model": lambda **kw: LanguageModelConfig(vocab_size=9, hidden=4, **kw),
    "music": lambda **kw: MusicConfig(pitches=5, hidden=4, **kw),
    "seq2seq": lambda **kw: Seq2SeqConfig(source_vocab=9, target_vocab=9, hidden=4, **kw),
    "tagger": lambda **kw: TaggerConfig(vocab_size=9, num_tags=3, hidden=4, **kw),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_bad_regularisers_are_refused_by_the_model_config(name: str) -> None:
    make = CONFIGS[name]
    assert isinstance(make(), Regularisers)
    with pytest.raises(ValueError, match=r"^zoneout: expected a number in \[0, 1\), got 1\.5$"):
        make(zoneout=1.5)
    with pytest.raises(ValueError, match=r"^weight_drop: expected a number"):
        make(weight_drop=-0.1)
    with pytest.raises(ValueError, match=r"^locked_dropout: expected True or False"):
        make(locked_dropout=1)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_regularisers_reach_every_recurrent_stack_of_the_model(name: str) -> None:
    config = CONFIGS[name](locked_dropout=True, weight_drop=0.25, zoneout=0.125, backend="unrolled")
    model = build_model(config)
    stacks = [m for m in model.modules() if isinstance(m, Recurrent)]
    assert stacks
    for stack in stacks:
        assert (stack.locked_dropout, stack.weight_drop, stack.zoneout) == (True, 0.25, 0.125)


def test_the_regularisers_are_keyword_only_after_the_models_own_fields() -> None:
    names = [f.name for f in dataclasses.fields(GeneratorConfig) if not f.kw_only]
    assert names[0] == "vocab_size" and "zoneout" not in names
    assert GeneratorConfig(9, num_labels=2).vocab_size == 9
