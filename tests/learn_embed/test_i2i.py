import numpy as np

from learn_embed.i2i import label_share_at_k, nearest_neighbours, normalise


def test_nearest_neighbours_by_hand():
    m = normalise(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]))
    idx, sims = nearest_neighbours(m, k=2)
    assert idx.tolist() == [[1, 3], [0, 3], [3, 1], [2, 1]]
    assert np.all(np.diff(sims, axis=1) <= 0)  # sorted, best first
    idx_chunked, _ = nearest_neighbours(m, k=2, chunk=1)
    assert idx_chunked.tolist() == idx.tolist()


def test_label_share_by_hand():
    m = normalise(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]))
    labels = [frozenset({"a"}), frozenset({"a", "b"}), frozenset({"b"}), frozenset({"c"})]
    # k=1: 0->1 shares a; 1->0 shares a; 2->3 no; 3->2 no  => 0.5
    assert label_share_at_k(m, labels, 1) == 0.5
    # k=2: 0->{1,3}: 1/2; 1->{0,3}: 1/2; 2->{3,1}: 1/2; 3->{2,1}: 0  => 0.375
    assert label_share_at_k(m, labels, 2) == 0.375
    # items without labels are not queries
    assert label_share_at_k(m, labels[:3] + [frozenset()], 1) == 2 / 3


def test_centring_removes_a_common_offset():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 8))
    shifted = base + 20.0  # anisotropic: all raw cosines near 1
    assert (normalise(shifted) @ normalise(shifted).T).min() > 0.9
    np.testing.assert_allclose(normalise(shifted, centre=True), normalise(base, centre=True), atol=1e-5)
