"""k-NN, linear and attentive probes on real features, checked against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mimzoo
from mimzoo.data import open_dataset, subset
from mimzoo.eval.attentive import AttentiveConfig, AttentivePooler, attentive_probe
from mimzoo.eval.features import ExtractConfig, extract_features
from mimzoo.eval.knn import KnnConfig, knn_eval, knn_scores
from mimzoo.eval.linear import LinearConfig, linear_probe
from mimzoo.eval.training import Lars, lr_at
from mimzoo.errors import MimzooError


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    """Pooled features and tokens of 600 training / 300 test digits from a fixed random tiny ViT."""
    torch.manual_seed(0)
    enc = mimzoo.load("mae-vit-test", pretrained=False)
    src = open_dataset("digits")
    cfg = ExtractConfig(batch_size=128, workers=0, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return tuple(extract_features(enc, subset(split, n), tokens=True, config=cfg)
                 for split, n in ((src.train, 600), (src.eval, 300)))


@pytest.mark.parametrize("k", [1, 5, 20])
def test_uniform_knn_predicts_exactly_what_sklearn_predicts(feats, k):
    from sklearn.neighbors import KNeighborsClassifier

    tr, te = feats
    x, xt = tr.pooled.double(), te.pooled.double()
    ours = knn_scores(x, tr.labels, xt, 10, KnnConfig(k=k, voting="uniform", chunk=64)).argmax(1).numpy()
    sk = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(x.numpy(), tr.labels.numpy()).predict(xt.numpy())
    assert (ours == sk).all()
    sk_acc = 100.0 * (sk == te.labels.numpy()).mean()
    assert knn_eval(x, tr.labels, xt, te.labels, 10, KnnConfig(k=k, voting="uniform"))["top1"] == pytest.approx(sk_acc)


def test_distance_weighted_votes_follow_exp_cos_over_t():
    bank = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # unit vectors
    labels = torch.tensor([0, 1, 1])
    q = torch.tensor([[1.0, 0.1]])
    cos = torch.nn.functional.normalize(q, dim=1) @ bank.t()
    s = knn_scores(bank, labels, q, 2, KnnConfig(k=3, temperature=0.5))
    expected = torch.stack([(cos[0, 0] / 0.5).exp(), (cos[0, 1] / 0.5).exp() + (cos[0, 2] / 0.5).exp()])
    torch.testing.assert_close(s[0], expected)
    assert knn_scores(bank, labels, q, 2, KnnConfig(k=3, voting="uniform")).tolist() == [[1.0, 2.0]]
    assert s.argmax(1).item() == 0  # one close neighbour outvotes two far ones at a low temperature
    with pytest.raises(MimzooError, match="knn voting 'cosine' is not one of distance, uniform"):
        knn_scores(bank, labels, q, 2, KnnConfig(voting="cosine"))


def test_linear_probe_reaches_logistic_regression_on_the_same_features(feats):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, te = feats
    x, y, xt, yt = tr.pooled.numpy(), tr.labels.numpy(), te.pooled.numpy(), te.labels.numpy()
    raw = 100 * LogisticRegression(max_iter=5000).fit(x, y).score(xt, yt)
    standardised = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x, y)
    sk = 100 * standardised.score(xt, yt)
    m, head, fit = linear_probe(tr.pooled, tr.labels, te.pooled, te.labels, 10)  # the default: held-out L2
    assert fit["solver"] == "lbfgs" and m["top1"] >= max(raw, sk) - 1.0
    # the same objective as sklearn's C=1 (mean loss + ||W||^2 / (2 C N)) lands on the same classifier
    same, head, _ = linear_probe(tr.pooled, tr.labels, te.pooled, te.labels, 10,
                                 LinearConfig(optimizer="lbfgs", weight_decay=1.0 / len(y)))
    assert abs(same["top1"] - sk) <= 1.0
    with torch.no_grad():
        ours = head(te.pooled).argmax(1).numpy()
    assert (ours == standardised.predict(xt)).mean() >= 0.98
    assert isinstance(head[0], torch.nn.BatchNorm1d) and not head[0].affine  # the MAE head


def test_small_lbfgs_fits_run_on_one_thread_and_restore_the_thread_count(feats, monkeypatch):
    import mimzoo.eval.linear as linear

    tr, te = feats
    seen = []
    real = linear._lbfgs
    monkeypatch.setattr(linear, "_lbfgs", lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = LinearConfig(weight_decay=1e-4)
        one, _, _ = linear_probe(tr.pooled, tr.labels, te.pooled, te.labels, 10, cfg)
        assert seen == [1] and torch.get_num_threads() == 2
        monkeypatch.setattr(linear, "ONE_THREAD_MAX", 0)  # a large problem keeps the caller's threads
        two, _, _ = linear_probe(tr.pooled, tr.labels, te.pooled, te.labels, 10, cfg)
        assert seen == [1, 2] and abs(one["top1"] - two["top1"]) <= 0.5
    finally:
        torch.set_num_threads(before)


def test_minibatch_probes_train_with_the_mae_recipe(feats):
    tr, te = feats
    m, head, fit = linear_probe(tr.pooled, tr.labels, te.pooled, te.labels, 10,
                                LinearConfig(optimizer="sgd", base_lr=1.0, batch_size=128, epochs=30))
    assert fit["solver"] == "sgd" and m["top1"] > 60.0 and np.isfinite(fit["final_loss"])


def test_lars_scales_each_matrix_step_by_its_trust_ratio():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = Lars([w, b], lr=2.0, momentum=0.9, weight_decay=0.0, trust=0.01)
    w.grad, b.grad = torch.tensor([[0.0, 10.0]]), torch.tensor([0.5])  # ||g|| = 10
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0 - 2.0 * 0.01 * 5 / 10 * 10.0]]))
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 2.0 * 0.5]))  # biases: plain SGD


def test_lr_schedule_warms_up_then_follows_a_cosine():
    lrs = [lr_at(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.55) and lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_attentive_probe_pools_tokens_by_cross_attention(feats):
    tr, te = feats
    m, probe, hist = attentive_probe(tr.tokens, tr.labels, te.tokens, te.labels, 10,
                                     AttentiveConfig(epochs=8, min_steps=0, batch_size=64), prefix=tr.prefix_tokens)
    assert m["top1"] > 40.0 and hist[-1] < hist[0]  # well above chance (10%) from patch tokens alone
    pooler = AttentivePooler(32, 10, num_heads=4, num_queries=2).eval()
    tokens = torch.randn(3, 16, 32)
    with torch.no_grad():  # attention pooling ignores token order
        torch.testing.assert_close(pooler(tokens), pooler(tokens[:, torch.randperm(16)]), rtol=1e-5, atol=1e-5)


def test_attentive_pooler_is_standard_multihead_cross_attention():
    """The reordered computation equals torch's own MultiheadAttention with the same weights."""
    torch.manual_seed(1)
    pooler = AttentivePooler(48, 10, num_heads=3, num_queries=2)
    mha = torch.nn.MultiheadAttention(48, 3, batch_first=True)
    with torch.no_grad():
        for t in (pooler.k.bias, pooler.v.bias, pooler.q.bias):
            t.normal_()
        mha.in_proj_weight.copy_(torch.cat([pooler.q.weight, pooler.k.weight, pooler.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([pooler.q.bias, pooler.k.bias, pooler.v.bias]))
        mha.out_proj.weight.copy_(pooler.proj.weight)
        mha.out_proj.bias.copy_(pooler.proj.bias)
        tokens = torch.randn(4, 20, 48)
        kv = pooler.norm_kv(tokens)
        expected = mha(pooler.query.expand(4, -1, -1), kv, kv, need_weights=False)[0]
        torch.testing.assert_close(pooler.cross_attend(tokens), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(MimzooError, match="5 heads do not divide the feature size 32"):
        AttentivePooler(32, 10, num_heads=5)
