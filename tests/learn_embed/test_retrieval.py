import math

import numpy as np
import torch

from learn_embed.retrieval import retrieval_metrics, top_k


def test_metrics_by_hand():
    ranked = np.array([[5, 1, 2, 3], [0, 1, 2, 3]])
    targets = [[1, 3], [9]]
    m = retrieval_metrics(ranked, targets, ks=(1, 2, 4))
    # user 0: targets at ranks 2 and 4; user 1: none
    assert m["H@1"] == 0.0 and m["H@2"] == 0.5 and m["H@4"] == 0.5
    assert m["R@2"] == 0.25 and m["R@4"] == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert abs(m["N@4"] - dcg / idcg / 2) < 1e-12
    assert abs(m["N@2"] - (1 / math.log2(3)) / idcg / 2) < 1e-12


def test_top_k_chunks_and_exclusions():
    g = torch.Generator().manual_seed(0)
    users, gallery = torch.randn(37, 8, generator=g), torch.randn(100, 8, generator=g)
    full = torch.topk(users @ gallery.T, 10).indices
    assert torch.equal(top_k(users, gallery, 10, chunk=5), full)
    exclude = [[int(full[u, 0])] for u in range(37)]
    without = top_k(users, gallery, 10, exclude=exclude, chunk=8)
    assert torch.equal(without[:, :9], full[:, 1:])
