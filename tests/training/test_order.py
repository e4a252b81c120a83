"""The data order: a function of seed and epoch, sharded so N processes equal one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rnnkit.training.order import EpochOrder


@given(
    size=st.integers(1, 60),
    batch=st.integers(1, 7),
    world=st.integers(1, 4),
    epoch=st.integers(0, 3),
    shuffle=st.booleans(),
)
def test_shards_of_n_processes_make_the_batches_of_one(
    size: int, batch: int, world: int, epoch: int, shuffle: bool
) -> None:
    one = EpochOrder(size, batch * world, seed=5, shuffle=shuffle)
    ranks = [
        EpochOrder(size, batch, seed=5, shuffle=shuffle, rank=r, world_size=world)
        for r in range(world)
    ]
    assert all(len(r) == len(one) for r in ranks)  # every process steps the same number of times
    per_rank = [list(r.batches(epoch)) for r in ranks]
    for k, whole in enumerate(one.batches(epoch)):
        counted = [i for shards in per_rank for i in shards[k].indices if shards[k].weight == 1.0]
        assert sorted(counted) == sorted(whole.indices)
    seen = sorted(i for shard in one.batches(epoch) for i in shard.indices)
    assert seen == list(range(size))  # each example once per epoch


def test_order_depends_on_seed_and_epoch_only_and_resumes_by_position() -> None:
    a = EpochOrder(50, 4, seed=1)
    assert a.permutation(2) == EpochOrder(50, 4, seed=1).permutation(2)
    assert a.permutation(2) != a.permutation(3) != EpochOrder(50, 4, seed=2).permutation(3)
    assert list(a.batches(1, start=5)) == list(a.batches(1))[5:]
