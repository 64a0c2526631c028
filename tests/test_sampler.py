"""The BPR sampler: negatives are never training positives; a seed fixes the batches."""
import numpy as np
import pytest

from mmrec_motor.data.dataset import Split
from mmrec_motor.data.sampler import BPRSampler


def dense_train(seed=0, n_users=50, n_items=40):
    """Users who each own a large share of the items, so rejections happen often."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        owned = rng.choice(n_items, size=rng.integers(5, 30), replace=False)
        users += [u] * len(owned)
        items += owned.tolist()
    return Split(np.array(users), np.array(items)), n_items


def test_negatives_are_never_training_positives():
    train, n_items = dense_train()
    positives = set(zip(train.users.tolist(), train.items.tolist()))
    sampler = BPRSampler(train, n_items, batch_size=64, seed=3)
    seen = 0
    for _ in range(20):
        for batch in sampler:
            assert batch.shape[0] == 3
            for u, pos, neg in batch.T.tolist():
                assert (u, pos) in positives
                assert (u, neg) not in positives
                seen += 1
    assert seen == 20 * len(train)


def test_each_epoch_visits_every_interaction_once():
    train, n_items = dense_train()
    sampler = BPRSampler(train, n_items, batch_size=100, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-len(train) // 100)
    pairs = np.concatenate([b[:2].numpy() for b in batches], axis=1)
    assert sorted(zip(*pairs.tolist())) == sorted(zip(train.users.tolist(), train.items.tolist()))


def test_negatives_come_from_training_items_only():
    train = Split(np.array([0, 0, 1, 2]), np.array([0, 1, 2, 3]))
    sampler = BPRSampler(train, n_items=10, batch_size=4, seed=0)  # items 4..9 never trained
    negs = np.concatenate([next(iter(sampler))[2].numpy() for _ in range(200)])
    assert set(negs.tolist()) <= {0, 1, 2, 3}


def test_same_seed_same_batches_other_seed_differs():
    train, n_items = dense_train()
    run = lambda seed: [b.numpy().copy() for _ in range(2) for b in BPRSampler(train, n_items, 64, seed)]
    a, b, c = run(7), run(7), run(8)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any((x != y).any() for x, y in zip(a, c))


def test_negative_distribution_is_uniform_over_allowed_items():
    # user 0 owns item 0; allowed negatives 1..4 should each get about a quarter
    train = Split(np.array([0, 1, 1, 1, 1]), np.array([0, 1, 2, 3, 4]))
    sampler = BPRSampler(train, n_items=5, batch_size=1, seed=0)
    counts = np.bincount(sampler.sample_negatives(np.zeros(40000, np.int64)), minlength=5)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / 40000, 0.25, atol=0.01)


def test_user_owning_every_item_is_an_error():
    train = Split(np.array([0, 0, 1]), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="every training item"):
        BPRSampler(train, n_items=2, batch_size=2, seed=0)
