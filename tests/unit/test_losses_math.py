"""Every loss against an independent reference written straight from its formula, on known logits.

A stand-in model holds one learnable logit per (text_a, text_b) pair, so the test knows every logit the loss
sees; references are computed in float64 with plain Python loops (pairs, positions, permutations) and
their gradients w.r.t. the logits come from autograd on that reference.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from raycross import losses as L


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TOL = 1e-5


class TableModel(nn.Module):
    """Stand-in CrossEncoder: a learnable logit vector per pair of (texts_a x texts_b)."""

    def __init__(self, texts_a, texts_b, num_labels: int = 1, seed: int = 0, spread: float = 2.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.index = {pair: i for i, pair in enumerate(itertools.product(texts_a, texts_b))}
        self.table = nn.Parameter(torch.randn(len(self.index), num_labels, generator=gen) * spread)
        self.num_labels = num_labels
        self.device = torch.device("cpu")

    def preprocess(self, pairs):
        return {"index": torch.tensor([self.index[tuple(p)] for p in pairs], dtype=torch.long)}

    def forward(self, features):
        return self.table[features["index"]]

    def logit(self, a: str, b: str, table: torch.Tensor | None = None) -> torch.Tensor:
        table = self.table if table is None else table
        return table[self.index[(a, b)]]


def reference_check(model: TableModel, loss: nn.Module, inputs, labels, reference) -> None:
    """loss(inputs, labels) and its gradient w.r.t. the logits equal reference(table64) and its gradient."""
    value = loss(inputs, labels)
    value.backward()
    table64 = model.table.detach().double().requires_grad_(True)
    expected = reference(table64)
    expected.backward()
    assert value.dtype == torch.float32
    assert abs(value.item() - expected.item()) < TOL, (value.item(), expected.item())
    assert torch.allclose(model.table.grad.double(), table64.grad, atol=TOL, rtol=0), (
        (model.table.grad.double() - table64.grad).abs().max()
    )


def log_sigmoid(x):
    return -torch.log1p(torch.exp(-x))


QUERIES = [f"q{i}" for i in range(4)]
TEXTS = [f"t{i}" for i in range(12)]


# ---------------------------------------------------------------------------------------------- pairwise
@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_binary_cross_entropy_matches_formula(pos_weight):
    model = TableModel(QUERIES, TEXTS)
    docs, y = TEXTS[:4], [1.0, 0.0, 0.3, 1.0]
    loss = L.BinaryCrossEntropyLoss(model, pos_weight=None if pos_weight is None else torch.tensor(pos_weight))

    def reference(table):
        w = 1.0 if pos_weight is None else pos_weight
        terms = []
        for q, d, t in zip(QUERIES, docs, y):
            p = torch.sigmoid(model.logit(q, d, table)[0])
            terms.append(-(w * t * torch.log(p) + (1 - t) * torch.log(1 - p)))
        return sum(terms) / len(terms)

    reference_check(model, loss, [QUERIES, docs], torch.tensor(y), reference)
    assert loss.get_config_dict() == {"activation_fn": "torch.nn.modules.linear.Identity", "pos_weight": pos_weight}


def test_binary_cross_entropy_applies_activation_before_sigmoid():
    model = TableModel(QUERIES, TEXTS)
    docs, y = TEXTS[:4], [1, 0, 1, 0]
    loss = L.BinaryCrossEntropyLoss(model, activation_fn=nn.Tanh())

    def reference(table):
        terms = [
            -(t * log_sigmoid(torch.tanh(model.logit(q, d, table)[0]))
              + (1 - t) * log_sigmoid(-torch.tanh(model.logit(q, d, table)[0])))
            for q, d, t in zip(QUERIES, docs, y)
        ]
        return sum(terms) / 4

    reference_check(model, loss, [QUERIES, docs], torch.tensor(y), reference)


@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_matches_formula(soft):
    model = TableModel(QUERIES, TEXTS, num_labels=3)
    docs = TEXTS[:4]
    classes = [0, 2, 1, 2]
    probs = [[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.0, 0.1, 0.9], [1 / 3, 1 / 3, 1 / 3]]
    labels = torch.tensor(probs) if soft else torch.tensor(classes)

    def reference(table):
        total = 0.0
        for i, (q, d) in enumerate(zip(QUERIES, docs)):
            z = model.logit(q, d, table)
            log_norm = torch.log(sum(torch.exp(z[c]) for c in range(3)))
            if soft:
                total = total - sum(probs[i][c] * (z[c] - log_norm) for c in range(3))
            else:
                total = total - (z[classes[i]] - log_norm)
        return total / 4

    reference_check(model, L.CrossEntropyLoss(model), [QUERIES, docs], labels, reference)


def test_cross_entropy_accepts_column_labels_and_whole_floats():
    model = TableModel(QUERIES, TEXTS, num_labels=3)
    loss = L.CrossEntropyLoss(model)
    inputs = [QUERIES, TEXTS[:4]]
    base = loss(inputs, torch.tensor([0, 2, 1, 2])).item()
    assert loss(inputs, torch.tensor([[0], [2], [1], [2]])).item() == pytest.approx(base, abs=1e-7)
    assert loss(inputs, torch.tensor([0.0, 2.0, 1.0, 2.0])).item() == pytest.approx(base, abs=1e-7)


@pytest.mark.parametrize("activation", [nn.Identity(), nn.Sigmoid()])
def test_mse_matches_formula(activation):
    model = TableModel(QUERIES, TEXTS)
    docs, y = TEXTS[:4], [0.9, -1.0, 0.25, 3.0]

    def reference(table):
        act = torch.sigmoid if isinstance(activation, nn.Sigmoid) else (lambda x: x)
        return sum((act(model.logit(q, d, table)[0]) - t) ** 2 for q, d, t in zip(QUERIES, docs, y)) / 4

    reference_check(model, L.MSELoss(model, activation_fn=activation), [QUERIES, docs], torch.tensor(y), reference)


@pytest.mark.parametrize("label_format", ["margins", "raw_scores", "list_of_tensors", "list_of_raw_lists"])
def test_margin_mse_n_tuples_matches_formula(label_format):
    model = TableModel(QUERIES, TEXTS)
    pos, neg1, neg2 = TEXTS[:4], TEXTS[4:8], TEXTS[8:12]
    teacher = [[3.0, 1.0, -2.0], [0.5, 0.5, 0.0], [2.0, 4.0, 1.0], [-1.0, -3.0, -2.5]]
    margins = [[row[0] - row[1], row[0] - row[2]] for row in teacher]
    labels = {
        "margins": torch.tensor(margins),
        "raw_scores": torch.tensor(teacher),
        "list_of_tensors": [torch.tensor(m) for m in margins],
        "list_of_raw_lists": teacher,
    }[label_format]

    def reference(table):
        total = 0.0
        for i, q in enumerate(QUERIES):
            s_pos = model.logit(q, pos[i], table)[0]
            for j, negs in enumerate((neg1, neg2)):
                total = total + ((s_pos - model.logit(q, negs[i], table)[0]) - margins[i][j]) ** 2
        return total / 8

    reference_check(model, L.MarginMSELoss(model), [QUERIES, pos, neg1, neg2], labels, reference)


@pytest.mark.parametrize("label_format", ["margin", "raw_pair"])
def test_margin_mse_triplets_matches_formula(label_format):
    model = TableModel(QUERIES, TEXTS)
    pos, neg = TEXTS[:4], TEXTS[4:8]
    teacher = [[3.0, 1.0], [0.5, 0.5], [2.0, 4.0], [-1.0, -3.0]]
    labels = torch.tensor([a - b for a, b in teacher]) if label_format == "margin" else torch.tensor(teacher)

    def reference(table):
        return sum(
            ((model.logit(q, pos[i], table)[0] - model.logit(q, neg[i], table)[0]) - (teacher[i][0] - teacher[i][1]))
            ** 2
            for i, q in enumerate(QUERIES)
        ) / 4

    reference_check(model, L.MarginMSELoss(model), [QUERIES, pos, neg], labels, reference)


# ---------------------------------------------------------------------------------------------- MNRL
def mnrl_reference(model, table, columns, scale=10.0, activation=torch.sigmoid):
    """Row i: softmax cross-entropy of its positive against every text of every other row and its own negatives."""
    anchors, cands = columns[0], columns[1:]
    total = 0.0
    for i, a in enumerate(anchors):
        texts = [cands[0][i]]
        texts += [col[j] for col in cands for j in range(len(anchors)) if j != i]
        texts += [col[i] for col in cands[1:]]
        scores = [scale * activation(model.logit(a, t, table)[0]) for t in texts]
        total = total - (scores[0] - torch.log(sum(torch.exp(s) for s in scores)))
    return total / len(anchors)


@pytest.mark.parametrize("num_columns", [2, 3, 4])
@pytest.mark.parametrize("cached", [False, True])
def test_mnrl_all_in_batch_negatives_matches_formula(num_columns, cached):
    model = TableModel(QUERIES, TEXTS)
    columns = [QUERIES] + [TEXTS[4 * c: 4 * c + 4] for c in range(num_columns - 1)]
    if cached:
        loss = L.CachedMultipleNegativesRankingLoss(model, num_negatives=None, mini_batch_size=5)
    else:
        loss = L.MultipleNegativesRankingLoss(model, num_negatives=None)
    reference_check(model, loss, columns, None, lambda table: mnrl_reference(model, table, columns))


def test_mnrl_scale_and_activation_options():
    model = TableModel(QUERIES, TEXTS)
    columns = [QUERIES, TEXTS[:4], TEXTS[4:8]]
    loss = L.MultipleNegativesRankingLoss(model, num_negatives=None, scale=3.0, activation_fn=None)
    reference_check(model, loss, columns, None,
                    lambda table: mnrl_reference(model, table, columns, scale=3.0, activation=lambda x: x))


def test_mnrl_sampled_negatives_are_other_rows_without_repeats():
    model = TableModel(QUERIES, TEXTS)
    columns = [QUERIES, TEXTS[:4], TEXTS[4:8]]
    loss = L.MultipleNegativesRankingLoss(model, num_negatives=3)
    torch.manual_seed(0)
    pairs, batch_size = loss.build_pairs(columns)
    assert batch_size == 4 and len(pairs) == 4 * (1 + 3 + 1)
    slots = [pairs[s * 4:(s + 1) * 4] for s in range(5)]
    assert slots[0] == list(zip(QUERIES, TEXTS[:4]))  # positives first
    assert slots[-1] == list(zip(QUERIES, TEXTS[4:8]))  # hard negatives last
    for i in range(4):
        negatives = [slot[i] for slot in slots[1:-1]]
        assert all(anchor == QUERIES[i] for anchor, _ in negatives)
        texts = [t for _, t in negatives]
        assert len(set(texts)) == 3
        assert TEXTS[i] not in texts and TEXTS[4 + i] not in texts  # never the row's own candidates

    # the loss is the formula over exactly these candidates
    torch.manual_seed(0)
    value = loss(columns)
    table = model.table.detach().double()
    expected = 0.0
    for i, a in enumerate(QUERIES):
        s = [10 * torch.sigmoid(model.logit(a, slot[i][1], table)[0]) for slot in slots]
        expected += -(s[0] - torch.log(sum(torch.exp(x) for x in s)))
    assert value.item() == pytest.approx(expected.item() / 4, abs=TOL)


# ---------------------------------------------------------------------------------------------- listwise
LIST_QUERIES = QUERIES[:3]
LIST_DOCS = [["t0", "t1", "t2", "t3"], ["t4", "t1"], ["t5", "t2", "t0"]]
LIST_LABELS = [[3.0, 0.0, 1.0, 1.0], [0.0, 2.0], [1.5, 0.2, 0.7]]


def listwise_scores(model, table, q, docs):
    return [model.logit(q, d, table)[0] for d in docs]


def plackett_luce_log_prob(scores, order):
    """log P(order) under Plackett-Luce: prod_r exp(s_order[r]) / sum_{t >= r} exp(s_order[t])."""
    total = 0.0
    for r in range(len(order)):
        total = total + scores[order[r]] - torch.log(sum(torch.exp(scores[order[t]]) for t in range(r, len(order))))
    return total


def test_plackett_luce_reference_is_a_distribution():
    scores = [torch.tensor(x, dtype=torch.float64) for x in (0.3, -1.0, 2.0, 0.5)]
    total = sum(torch.exp(plackett_luce_log_prob(scores, perm)) for perm in itertools.permutations(range(4)))
    assert total.item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("mini_batch_size", [None, 3])
def test_listnet_matches_formula(mini_batch_size):
    model = TableModel(LIST_QUERIES, TEXTS)

    def reference(table):
        total = 0.0
        for q, docs, y in zip(LIST_QUERIES, LIST_DOCS, LIST_LABELS):
            s = listwise_scores(model, table, q, docs)
            z_s = sum(torch.exp(x) for x in s)
            z_y = sum(math.exp(v) for v in y)
            total = total - sum(math.exp(v) / z_y * torch.log(torch.exp(x) / z_s) for v, x in zip(y, s))
        return total / 3

    loss = L.ListNetLoss(model, mini_batch_size=mini_batch_size)
    reference_check(model, loss, [LIST_QUERIES, LIST_DOCS], LIST_LABELS, reference)


def default_plist_weights(n):
    return [2.0 ** (n - r) - 1 for r in range(1, n + 1)]


@pytest.mark.parametrize("respect_input_order", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_list_mle_and_plist_mle_match_plackett_luce(respect_input_order, weighted):
    model = TableModel(LIST_QUERIES, TEXTS)
    labels = [[3.0, 0.0, 1.0, 1.0], [0.0, 2.0], [1.5, 0.2, 0.2]]  # ties keep their input order

    def reference(table):
        total = 0.0
        for q, docs, y in zip(LIST_QUERIES, LIST_DOCS, labels):
            s = listwise_scores(model, table, q, docs)
            order = list(range(len(docs)))
            if not respect_input_order:
                order = sorted(order, key=lambda j: -y[j])  # Python's sort is stable
            if weighted:
                w = default_plist_weights(len(docs))
                w = [x / (sum(w) + 1e-10) for x in w]
                for r in range(len(order)):
                    log_p = s[order[r]] - torch.log(sum(torch.exp(s[order[t]]) for t in range(r, len(order))))
                    total = total - w[r] * log_p
            else:
                total = total - plackett_luce_log_prob(s, order)
        return total / 3

    if weighted:
        loss = L.PListMLELoss(model, respect_input_order=respect_input_order)
    else:
        loss = L.ListMLELoss(model, respect_input_order=respect_input_order)
    reference_check(model, loss, [LIST_QUERIES, LIST_DOCS], labels, reference)


def test_plist_mle_custom_rank_discount():
    model = TableModel(LIST_QUERIES, TEXTS)

    def discount(mask):
        ranks = mask.cumsum(dim=1).float()
        return (1.0 / torch.log1p(ranks)).masked_fill(~mask, 0.0)

    def reference(table):
        total = 0.0
        for q, docs in zip(LIST_QUERIES, LIST_DOCS):
            s = listwise_scores(model, table, q, docs)
            w = [1.0 / math.log1p(r) for r in range(1, len(docs) + 1)]
            w = [x / (sum(w) + 1e-10) for x in w]
            for r in range(len(docs)):
                total = total - w[r] * (s[r] - torch.log(sum(torch.exp(s[t]) for t in range(r, len(docs)))))
        return total / 3

    loss = L.PListMLELoss(model, lambda_weight=L.PListMLELambdaWeight(rank_discount_fn=discount))
    reference_check(model, loss, [LIST_QUERIES, LIST_DOCS], LIST_LABELS, reference)


def test_plist_lambda_weight_stays_finite_for_long_lists():
    mask = torch.ones(1, 300, dtype=torch.bool)
    w = L.PListMLELambdaWeight()(mask)
    assert torch.isfinite(w).all() and w[0, -1] == 0
    normalised = w / w.sum()
    # the relative weights of consecutive ranks stay 2 ** (n - r) - 1 ratios (~2 for high ranks)
    assert normalised[0, 0] / normalised[0, 1] == pytest.approx(2.0, rel=1e-6)


def lambda_pair_weight(scheme, gains, inv_disc, pi, pj, mu=10.0):
    """Weight of the pair at predicted positions pi, pj (0-based) for one query."""
    d = lambda p: math.log2(1 + p)  # noqa: E731, discount at 1-based position p
    if scheme == "NoWeightingScheme":
        return 1.0
    if scheme == "NDCGLoss1Scheme":
        return gains[pi] * inv_disc[pi]
    lambda_rank = abs(inv_disc[pi] - inv_disc[pj]) * abs(gains[pi] - gains[pj])
    delta = abs(pi - pj)
    ndcg2 = 0.0 if delta == 0 else abs(1 / d(delta) - 1 / d(delta + 1)) * abs(gains[pi] - gains[pj])
    return {"LambdaRankScheme": lambda_rank, "NDCGLoss2Scheme": ndcg2, "NDCGLoss2PPScheme": mu * ndcg2 + lambda_rank}[
        scheme
    ]


def lambda_loss_reference(model, table, queries, docs_list, labels, scheme, k=None, sigma=1.0, log="binary", mu=10.0):
    """Sum over all queries' selected pairs of -w log sigmoid(sigma (s_i - s_j)), divided by their number."""
    total, count = 0.0, 0
    for q, docs, y in zip(queries, docs_list, labels):
        s = listwise_scores(model, table, q, docs)
        n = len(docs)
        order = sorted(range(n), key=lambda j: -s[j].item())  # predicted ranking
        y_pred = [max(y[j], 0.0) for j in order]
        ideal = sorted((max(v, 0.0) for v in y), reverse=True)
        cut = k or max(len(d) for d in docs_list)
        max_dcg = max(sum((2 ** v - 1) / math.log2(2 + p) for p, v in enumerate(ideal[:cut])), 1e-10)
        gains = [(2 ** v - 1) / max_dcg for v in y_pred]
        inv_disc = [1 / math.log2(2 + p) for p in range(n)]
        for pi in range(n):
            for pj in range(n):
                if scheme != "NDCGLoss1Scheme" and not y[order[pi]] > y[order[pj]]:
                    continue
                if not (pi < cut or pj < cut):
                    continue
                w = lambda_pair_weight(scheme, gains, inv_disc, pi, pj, mu)
                term = w * log_sigmoid(sigma * (s[order[pi]] - s[order[pj]]))
                total = total - (term / math.log(2) if log == "binary" else term)
                count += 1
    return total / max(count, 1)


SCHEMES = ["NoWeightingScheme", "NDCGLoss1Scheme", "NDCGLoss2Scheme", "LambdaRankScheme", "NDCGLoss2PPScheme"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("k", [None, 2])
def test_lambda_loss_schemes_match_formula(scheme, k):
    model = TableModel(LIST_QUERIES, TEXTS)
    loss = L.LambdaLoss(model, weighting_scheme=getattr(L, scheme)(), k=k)
    reference_check(
        model, loss, [LIST_QUERIES, LIST_DOCS], LIST_LABELS,
        lambda table: lambda_loss_reference(model, table, LIST_QUERIES, LIST_DOCS, LIST_LABELS, scheme, k=k),
    )


def test_lambda_loss_sigma_natural_log_and_mu():
    model = TableModel(LIST_QUERIES, TEXTS)
    loss = L.LambdaLoss(model, weighting_scheme=L.NDCGLoss2PPScheme(mu=3.0), sigma=2.0, reduction_log="natural")
    reference_check(
        model, loss, [LIST_QUERIES, LIST_DOCS], LIST_LABELS,
        lambda table: lambda_loss_reference(model, table, LIST_QUERIES, LIST_DOCS, LIST_LABELS, "NDCGLoss2PPScheme",
                                            sigma=2.0, log="natural", mu=3.0),
    )


@pytest.mark.parametrize("k", [None, 1])
def test_rank_net_is_mean_pairwise_logistic_loss(k):
    model = TableModel(LIST_QUERIES, TEXTS)

    def reference(table):
        # every ordered pair (i, j) with y_i > y_j, optionally one of them in the model's top k
        total, count = 0.0, 0
        for q, docs, y in zip(LIST_QUERIES, LIST_DOCS, LIST_LABELS):
            s = listwise_scores(model, table, q, docs)
            rank = {j: r for r, j in enumerate(sorted(range(len(docs)), key=lambda j: -s[j].item()))}
            for i, j in itertools.permutations(range(len(docs)), 2):
                if y[i] > y[j] and (k is None or rank[i] < k or rank[j] < k):
                    total = total - log_sigmoid(s[i] - s[j]) / math.log(2)
                    count += 1
        return total / count

    reference_check(model, L.RankNetLoss(model, k=k), [LIST_QUERIES, LIST_DOCS], LIST_LABELS, reference)


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_adr_mse_matches_formula(alpha):
    model = TableModel(LIST_QUERIES, TEXTS)
    labels = [[3.0, 1.0, 1.0, 0.0], [0.0, 2.0], [0.7, 0.7, 0.7]]  # ties share their average rank

    def reference(table):
        total, count = 0.0, 0
        for q, docs, y in zip(LIST_QUERIES, LIST_DOCS, labels):
            s = listwise_scores(model, table, q, docs)
            for i in range(len(docs)):
                better = sum(1 for v in y if v > y[i])
                ties = sum(1 for v in y if v == y[i])  # includes i itself
                true_rank = better + (ties + 1) / 2
                approx = 1 + sum(torch.sigmoid(alpha * (s[j] - s[i])) for j in range(len(docs)) if j != i)
                total = total + (true_rank - approx) ** 2 / math.log2(true_rank + 1)
                count += 1
        return total / count

    reference_check(model, L.ADRMSELoss(model, alpha=alpha), [LIST_QUERIES, LIST_DOCS], labels, reference)


# ---------------------------------------------------------------------------------------------- padding
LISTWISE = {
    "ListNetLoss": lambda m: L.ListNetLoss(m),
    "ListMLELoss": lambda m: L.ListMLELoss(m, respect_input_order=False),
    "PListMLELoss": lambda m: L.PListMLELoss(m),
    "LambdaLoss": lambda m: L.LambdaLoss(m),
    "RankNetLoss": lambda m: L.RankNetLoss(m),
    "ADRMSELoss": lambda m: L.ADRMSELoss(m),
}


def query_weight(name: str, labels: list[float]) -> float:
    """How much a query counts in the batch reduction: 1 (mean over queries), #pairs or #documents."""
    if name in ("LambdaLoss", "RankNetLoss"):
        return sum(1 for a, b in itertools.permutations(labels, 2) if a > b)
    if name == "ADRMSELoss":
        return len(labels)
    return 1.0


@pytest.mark.parametrize("name", sorted(LISTWISE))
@pytest.mark.parametrize("mini_batch_size", [None, 2])
def test_listwise_losses_are_invariant_to_padding(name, mini_batch_size):
    """Batched loss (lists of 4, 2 and 3 documents padded to 4) = the reduction of the per-query losses.

    ListNet/ListMLE/PListMLE average over queries; LambdaLoss/RankNet average over all pairs and ADRMSE
    over all documents (like sentence-transformers), so their per-query losses are weighted by pair and
    document counts. Gradients combine the same way.
    """
    model = TableModel(LIST_QUERIES, TEXTS)
    loss = LISTWISE[name](model)
    loss.mini_batch_size = mini_batch_size
    batched = loss([LIST_QUERIES, LIST_DOCS], LIST_LABELS)
    batched.backward()
    batched_grad = model.table.grad.clone()

    weights = [query_weight(name, y) for y in LIST_LABELS]
    combined, combined_grad = 0.0, torch.zeros_like(batched_grad)
    for q, docs, y, w in zip(LIST_QUERIES, LIST_DOCS, LIST_LABELS, weights):
        model.table.grad = None
        single = loss([[q], [docs]], [y])
        single.backward()
        combined += single.item() * w / sum(weights)
        combined_grad += model.table.grad * w / sum(weights)
    assert batched.item() == pytest.approx(combined, abs=TOL)
    assert torch.allclose(batched_grad, combined_grad, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", sorted(LISTWISE))
def test_listwise_accepts_padded_label_tensor(name):
    model = TableModel(LIST_QUERIES, TEXTS)
    loss = LISTWISE[name](model)
    padded = torch.full((3, 5), -7.0)  # junk in the padding and one extra column
    for i, y in enumerate(LIST_LABELS):
        padded[i, : len(y)] = torch.tensor(y)
    as_lists = loss([LIST_QUERIES, LIST_DOCS], LIST_LABELS).item()
    as_tensors = loss([LIST_QUERIES, LIST_DOCS], [torch.tensor(y) for y in LIST_LABELS]).item()
    assert loss([LIST_QUERIES, LIST_DOCS], padded).item() == pytest.approx(as_lists, abs=1e-7)
    assert as_tensors == pytest.approx(as_lists, abs=1e-7)


def object_array(rows):
    out = np.empty(len(rows), dtype=object)
    out[:] = [np.asarray(r) for r in rows]
    return out


@pytest.mark.parametrize("name", sorted(LISTWISE))
def test_listwise_accepts_numpy_batches_like_ray_data(name):
    """Ray Data batches hold numpy arrays: strings, and object arrays of ragged lists."""
    model = TableModel(LIST_QUERIES, TEXTS)
    loss = LISTWISE[name](model)
    expected = loss([LIST_QUERIES, LIST_DOCS], LIST_LABELS).item()
    got = loss([np.array(LIST_QUERIES), object_array(LIST_DOCS)], object_array(LIST_LABELS)).item()
    assert got == pytest.approx(expected, abs=1e-7)


def test_pairwise_losses_accept_numpy_batches_like_ray_data():
    model = TableModel(QUERIES, TEXTS)
    cols = [np.array(QUERIES), np.array(TEXTS[:4]), np.array(TEXTS[4:8])]
    margin = L.MarginMSELoss(model)
    raw = [[1.0, 0.5], [0.0, 2.0], [3.0, 3.0], [1.0, -1.0]]
    assert margin(cols, object_array(raw)).item() == pytest.approx(margin(cols, torch.tensor(raw)).item(), abs=1e-7)
    assert margin(cols, np.array(raw)).item() == pytest.approx(margin(cols, torch.tensor(raw)).item(), abs=1e-7)
    bce = L.BinaryCrossEntropyLoss(model)
    assert bce(cols[:2], np.array([1, 0, 1, 1])).item() == pytest.approx(
        bce(cols[:2], torch.tensor([1, 0, 1, 1])).item(), abs=1e-7)
    model3 = TableModel(QUERIES, TEXTS, num_labels=3)
    ce = L.CrossEntropyLoss(model3)
    assert ce(cols[:2], np.array([0, 2, 1, 1])).item() == pytest.approx(
        ce(cols[:2], torch.tensor([0, 2, 1, 1])).item(), abs=1e-7)
