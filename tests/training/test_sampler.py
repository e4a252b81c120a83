"""The Trainer's batching: global batches first, then micro-batches and shards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.training.sampler import Examples, Geometry, Sampler, bucket


def steps_of(sampler: Sampler, epoch: int) -> list[list[int]]:
    """Each step's counted example indices on this process, in order."""
    return [
        [i for shard in shards if shard.weight == 1.0 for i in shard.indices]
        for shards in sampler.steps(epoch)
    ]


@given(
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=80),
    batch=st.integers(1, 5),
    accumulate=st.integers(1, 4),
    world=st.integers(1, 3),
    epoch=st.integers(0, 3),
    bucketed=st.booleans(),
    shuffle=st.booleans(),
)
def test_any_split_of_a_step_sees_the_examples_of_one_whole_batch(
    lengths: list[int], batch: int, accumulate: int, world: int, epoch: int, bucketed: bool,
    shuffle: bool,
) -> None:  # fmt: skip
    examples = Examples(list(range(len(lengths))), lengths=lengths if bucketed else None)
    whole = Sampler(examples, Geometry(batch * accumulate * world), seed=5, shuffle=shuffle)
    ranks = [Sampler(examples, Geometry(batch, accumulate, world), seed=5, shuffle=shuffle,
                     rank=r) for r in range(world)]  # fmt: skip
    expected = steps_of(whole, epoch)
    per_rank = [list(r.steps(epoch)) for r in ranks]
    assert all(len(steps) == len(expected) for steps in per_rank)
    for k, step in enumerate(expected):
        # Every process runs the same number of micro-batches (DDP reduces once each).
        assert len({len(steps[k]) for steps in per_rank}) == 1
        assert len(per_rank[0][k]) <= accumulate
        counted = [i for steps in per_rank for shard in steps[k] if shard.weight == 1.0
                   for i in shard.indices]  # fmt: skip
        assert sorted(counted) == sorted(step)
        for steps in per_rank:
            assert all(len(shard.indices) <= batch for shard in steps[k])
    assert sorted(i for step in expected for i in step) == list(range(len(lengths)))


def test_buckets_hold_alike_lengths_and_every_index_once() -> None:
    lengths = [(7 * i) % 23 + 1 for i in range(200)]
    batches = bucket(lengths, 8, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
    # Sorted within chunks of 50 batches: each batch spans a narrow range of lengths.
    spread = sum(lengths[b[0]] - lengths[b[-1]] for b in batches) / len(batches)
    assert spread <= 2


def test_the_order_is_a_function_of_seed_and_epoch_and_resumes_by_step() -> None:
    examples = Examples(list(range(50)), lengths=[i % 7 + 1 for i in range(50)])
    a = Sampler(examples, Geometry(4, 2), seed=1)
    assert a.global_batches(2) == Sampler(examples, Geometry(4, 2), seed=1).global_batches(2)
    assert a.global_batches(2) != a.global_batches(3)
    assert a.global_batches(3) != Sampler(examples, Geometry(4, 2), seed=2).global_batches(3)
    assert list(a.steps(1, start=3)) == list(a.steps(1))[3:]


def test_continuous_examples_keep_their_rows_in_their_slots() -> None:
    rows, chunks = 8, 5
    # Chunk-major: example k·rows + r is row r's chunk k.
    streams = Examples([(k, r) for k in range(chunks) for r in range(rows)], continuous=True)
    sampler = Sampler(streams, Geometry(2, 2, 2), seed=0, shuffle=True, rank=1)
    assert len(sampler) == chunks
    for k, shards in enumerate(sampler.steps(0)):
        slots = [[streams.items[i] for i in shard.indices] for shard in shards]
        # Slot j of process 1 holds rows 4j + 1 and 4j + 3 at every step.
        assert slots == [[(k, 1), (k, 3)], [(k, 5), (k, 7)]]


def test_empty_data_and_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="the data is empty"):
        Sampler(Examples([]), Geometry(2))
    with pytest.raises(ValueError, match="lengths: expected one per example"):
        Examples([1, 2], lengths=[1])
