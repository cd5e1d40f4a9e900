"""Nearest-neighbor search of feature vectors under zero-centered cosine distance.

NNST's distance between a query ``q`` and a style vector ``k`` is

    d(q, k) = w_cos * (1 - cos(q - mean_q, k - mean_k)) + w_guide * |g_q - g_k|^2

where the means are taken over each whole set (all rotations included) and the
optional guide channels ``g`` come from segmentation masks (the paper's section 5).
Minimizing ``d`` over ``k`` is maximizing one dot product of augmented vectors,

    score(q, k) = [w_cos q^, 2 w_guide g_q, -w_guide] . [k^, g_k, |g_k|^2]

(``^`` = centered and unit-normalized), so the guide term costs a few extra columns
of the same matrix product rather than a second pass. Hard guidance adds
``HARD_LABEL_BONUS`` for equal labels, which outweighs any possible cosine and
guide difference.

Vectors are rows: queries ``(N, C)``, keys ``(M, C)``; results index key rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NORM_EPS = 1e-8  # floor of a vector's norm before dividing (constant vectors)
HARD_LABEL_BONUS = 16.0  # > max |cosine term| + max guide term, so labels always win
# CPU search settings (tuned on 2 cores; see SearchSettings for the GPU's)
SCORE_BLOCK_BYTES = 256 * 2**20  # memory for one block of the score matrix (wide vectors)
SMALL_BLOCK_BYTES = 32 * 2**20  # narrow vectors make the product bandwidth-bound: keep blocks in cache
NARROW = 1024  # vectors with fewer components than this are narrow
APPROX_MIN_WORK = 5e11  # multiply-adds below which the exhaustive search is faster (measured crossover)
# CUDA search settings: the exhaustive bf16 product runs on tensor cores (hundreds of TFLOP/s),
# while the shortlist's top-k and gathers are memory-bound; 1e14 keeps 1024 px searches
# (2.6e13 multiply-adds with rotations) exhaustive. Not yet measured on a GPU (bench/gpu.sh).
CUDA_APPROX_MIN_WORK = 1e14
CUDA_BLOCK_FRACTION = 1 / 8  # share of the free GPU memory one score block may take
CUDA_MIN_BLOCK_BYTES = 256 * 2**20  # block bounds on the GPU
CUDA_MAX_BLOCK_BYTES = 2**30
RERANK = 4  # keys per query that a bf16 search re-scores in fp32
PRINCIPAL_AXES_ITERATIONS = 2  # power iterations of the randomized range finder (svd_lowrank's default)


@dataclass(frozen=True)
class SearchSettings:
    """How a search is cut into blocks and when the shortlist pays, on one device.

    block_bytes : memory for one block of the score matrix (wide vectors)
    small_block_bytes : the same for vectors narrower than ``NARROW`` components
    approx_min_work : multiply-adds below which the exhaustive search is used
    """

    block_bytes: int
    small_block_bytes: int
    approx_min_work: float


def search_settings(device: torch.device, score_bytes: float | None = None) -> SearchSettings:
    """The :class:`SearchSettings` of ``device``.

    CPU: the module constants (read at each call). CUDA: one block takes
    ``CUDA_BLOCK_FRACTION`` of the memory free to torch (free on the device plus what the
    caching allocator holds unused), within ``CUDA_MIN_BLOCK_BYTES .. CUDA_MAX_BLOCK_BYTES``;
    narrow vectors get no smaller blocks (no cache to fit), and the exhaustive search is
    used up to ``CUDA_APPROX_MIN_WORK``. When the whole score matrix (``score_bytes``, fp32)
    fits in the smallest block, the driver is not asked for the free memory (the
    feature-splitting pass searches thousands of times).

    >>> search_settings(torch.device("cpu")).approx_min_work == APPROX_MIN_WORK
    True
    """
    device = torch.device(device)
    if device.type != "cuda":
        return SearchSettings(SCORE_BLOCK_BYTES, SMALL_BLOCK_BYTES, APPROX_MIN_WORK)
    if score_bytes is not None and score_bytes <= CUDA_MIN_BLOCK_BYTES:
        return SearchSettings(CUDA_MIN_BLOCK_BYTES, CUDA_MIN_BLOCK_BYTES, CUDA_APPROX_MIN_WORK)
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    block = int(min(CUDA_MAX_BLOCK_BYTES, max(CUDA_MIN_BLOCK_BYTES, free * CUDA_BLOCK_FRACTION)))
    return SearchSettings(block, block, CUDA_APPROX_MIN_WORK)


@dataclass
class Guides:
    """Guide channels of the queries and keys (one channel per mask label).

    queries : (N, G) float32, keys : (M, G) float32; weight = w_guide in [0, 1];
    with ``hard``, ``query_labels (N,)`` and ``key_labels (M,)`` (int, -1 = unguided)
    restrict each guided query to keys of its own label; ``n_labels`` (more than the
    largest label) saves reading the labels' maximum back from the device.
    """

    queries: torch.Tensor
    keys: torch.Tensor
    weight: float = 0.5
    hard: bool = False
    query_labels: torch.Tensor | None = None
    key_labels: torch.Tensor | None = None
    n_labels: int | None = None

    @classmethod
    def from_maps(cls, query_channels: torch.Tensor, key_channels: list[torch.Tensor], *, weight: float,
                  hard: bool = False, query_labels: torch.Tensor | None = None,
                  key_labels: list[torch.Tensor] | None = None, n_labels: int | None = None) -> Guides:
        """Guides from maps: query channels ``(G, h, w)``, key channels ``(G, h_r, w_r)`` per block.

        The key blocks (one per style rotation) are stacked in order; with ``hard``,
        ``query_labels (h, w)`` and ``key_labels[r] (h_r, w_r)`` are flattened the same way.
        """
        return cls(
            queries=flat_cells(query_channels[None]),
            keys=torch.cat([flat_cells(c[None]) for c in key_channels]),
            weight=weight,
            hard=hard,
            query_labels=query_labels.flatten() if hard else None,
            key_labels=torch.cat([lab.flatten() for lab in key_labels]) if hard else None,
            n_labels=n_labels,
        )


def flat_cells(x: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (h * w, C): the cells of a map as rows, row-major."""
    return x.flatten(2)[0].t()


def center_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x (N, C)`` minus their mean row, scaled to unit length."""
    x = x - x.mean(0, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)


def center_normalize_(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`center_normalize` in place (``x`` must not need gradients).

    Returns the mean row ``(1, C)`` and the row norms ``(N, 1)`` it removed, so that
    ``x * norms + mean`` restores the rows: the 2 GB of style hypercolumns at 1024 px are
    then held once, not twice.
    """
    mean = x.mean(0, keepdim=True)
    norms = x.sub_(mean).norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
    x.div_(norms)
    return mean, norms


def _one_hot(labels: torch.Tensor, n: int) -> torch.Tensor:
    """``(N,)`` labels in ``-1 .. n - 1`` -> ``(N, n)`` float32 one-hot rows (-1: all zero).

    A scatter into a spare column for -1 (no boolean indexing, which waits for the device).

    >>> _one_hot(torch.tensor([1, -1, 0]), 2).tolist()
    [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    """
    out = torch.zeros(labels.shape[0], n + 1, dtype=torch.float32, device=labels.device)
    out.scatter_(1, (labels.long() + 1).clamp_min(0)[:, None], 1.0)
    return out[:, 1:]


def augment(queries: torch.Tensor, keys: torch.Tensor, guides: Guides | None):
    """Centered, normalized and guide-augmented ``(queries (N, C'), keys (M, C'))``.

    ``argmax_j queries @ keys.T`` is then the nearest neighbor under the guided distance.
    The first ``C`` columns are the features, the ``C' - C`` after them the guide terms;
    the keys' feature columns are the centered, unit keys themselves.
    """
    return with_guides(center_normalize(queries.float()), center_normalize(keys.float()), guides)


def with_guides(q: torch.Tensor, k: torch.Tensor, guides: Guides | None):
    """:func:`augment` for queries ``q`` and keys ``k`` that are already centered and normalized."""
    if guides is None or (guides.weight == 0 and not guides.hard):
        return q, k
    w = float(guides.weight)
    gq, gk = guides.queries.float(), guides.keys.float()
    q_parts = [(1.0 - w) * q, 2.0 * w * gq, torch.full_like(q[:, :1], -w)]
    k_parts = [k, gk, (gk * gk).sum(1, keepdim=True)]
    if guides.hard:
        n = guides.n_labels
        if n is None:
            n = int(max(guides.query_labels.max(), guides.key_labels.max())) + 1
        q_parts.append(HARD_LABEL_BONUS * _one_hot(guides.query_labels, n))
        k_parts.append(_one_hot(guides.key_labels, n))
    return torch.cat(q_parts, 1), torch.cat(k_parts, 1)


def best_scores(
    q: torch.Tensor, k: torch.Tensor, *, bf16: bool = False, settings: SearchSettings | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exhaustive ``max_j q_i . k_j`` in blocks of queries.

    With ``bf16`` the products are computed in bf16 (faster where the hardware has bf16
    units) and each query's ``RERANK`` best keys are re-scored in fp32: the result differs
    from the fp32 search only where the exact best is not among the bf16 top ``RERANK``,
    and the returned score is always the fp32 score of the returned key. Scores must be
    of order 1 (no hard-label bonus): bf16 keeps 8 significant bits.

    Parameters
    ----------
    q : (N, D) prepared queries, k : (M, D) prepared keys (see :func:`augment`)
    settings : block sizes (default: :func:`search_settings` of the keys' device)

    Returns
    -------
    (scores (N,), indices (N,) int64)
    """
    settings = settings or search_settings(k.device, 4 * q.shape[0] * k.shape[0])
    block = settings.block_bytes if k.shape[1] >= NARROW else settings.small_block_bytes
    rows = max(1, block // (4 * max(1, k.shape[0])))
    scores, indices = [], []
    # converted before the transposed copy: an fp32 copy of the keys is 2 GB at 1024 px
    kt = (k.to(torch.bfloat16) if bf16 else k).t().contiguous()
    for start in range(0, q.shape[0], rows):
        part = q[start:start + rows]
        if bf16:
            s, i = _rescore(part, k, part.to(torch.bfloat16) @ kt, RERANK)
        else:
            s, i = (part @ kt).max(1)
        scores.append(s)
        indices.append(i)
    return torch.cat(scores), torch.cat(indices)


def _rescore(q: torch.Tensor, k: torch.Tensor, approx: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best of the ``n`` keys with the highest ``approx (N, M)`` score, by the exact product.

    Returns ``(scores (N,), indices (N,))`` like :func:`best_scores`.
    """
    shortlist = approx.topk(min(n, k.shape[0]), dim=1).indices
    exact = torch.einsum("nd,ncd->nc", q, k[shortlist])
    s, j = exact.max(1)
    return s, shortlist.gather(1, j[:, None])[:, 0]


def nearest_neighbors(queries: torch.Tensor, keys: torch.Tensor, guides: Guides | None = None) -> torch.Tensor:
    """Index of each query's nearest key under the (guided) centered cosine distance.

    Parameters
    ----------
    queries : (N, C) feature vectors
    keys : (M, C) feature vectors (all style rotations stacked)
    guides : optional :class:`Guides`

    Returns
    -------
    torch.Tensor (N,) int64, indices into ``keys``

    Examples
    --------
    >>> k = torch.eye(3)
    >>> nearest_neighbors(torch.tensor([[0.1, 2.0, 0.0], [2.0, 0.1, 0.0]]), k).tolist()
    [1, 0]
    """
    q, k = augment(queries, keys, guides)
    return best_scores(q, k)[1]


def cosine_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos(outputs_i, targets_i)`` over the rows of ``(N, C)``; the NNST objective."""
    num = (outputs * targets).sum(1)
    den = outputs.norm(dim=1).clamp_min(NORM_EPS) * targets.norm(dim=1).clamp_min(NORM_EPS)
    return (1.0 - num / den).mean()


def centered_cosine_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Feature-splitting loss on gathered pairs.

    ``mean_i 1 - cos(o_i - mean(o), t_i)``: the same value and gradient as the authors'
    minimum over the full distance matrix, at the memory of one row per query.
    ``outputs (N, C)`` carries gradients (the output mean too); ``targets (N, C)`` are the
    selected keys, centered on the key set's mean and unit-normalized (rows of
    :func:`center_normalize` of the keys), fixed between searches.
    """
    return cosine_loss(outputs - outputs.mean(0, keepdim=True), targets)


def principal_axes(x: torch.Tensor, dims: int, *, sample: int = 16384, seed: int = 0) -> torch.Tensor:
    """Orthonormal ``(D, dims)`` basis of the main directions of the rows of ``x (M, D)``.

    Estimated from at most ``sample`` rows by a randomized SVD (Halko et al. 2011,
    algorithm 4.4, as ``torch.svd_lowrank``): the axes only steer which candidates get an
    exact comparison, so a sample is enough. All random numbers come from a generator on
    ``x``'s device seeded with ``seed`` (the global generators are left alone, and nothing
    is copied between host and device).
    """
    gen = torch.Generator(device=x.device).manual_seed(seed)
    if x.shape[0] > sample:
        x = x[torch.randperm(x.shape[0], generator=gen, device=x.device)[:sample]]
    dims = min(dims, *x.shape)
    basis = torch.linalg.qr(x @ torch.randn(x.shape[1], dims, generator=gen, device=x.device, dtype=x.dtype)).Q
    for _ in range(PRINCIPAL_AXES_ITERATIONS):
        basis = torch.linalg.qr(x @ torch.linalg.qr(x.t() @ basis).Q).Q
    _, _, vh = torch.linalg.svd(basis.t() @ x, full_matrices=False)
    return vh.t()


def projected_best_scores(
    q: torch.Tensor, k: torch.Tensor, axes: torch.Tensor, candidates: int, tail: int = 0, *, bf16: bool = False,
    settings: SearchSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate :func:`best_scores`: shortlist on projections, decide exactly.

    Each query's ``candidates`` best keys under the projected dot product are re-scored
    with the full vectors and the best is kept. The first ``D - tail`` columns are
    projected on ``axes ((D - tail), dims)``; the last ``tail`` columns (guide and label
    columns, few but decisive) enter the shortlist score unprojected. The cost falls by
    about ``D / dims``; a query misses its exact neighbour only when that neighbour is not
    on the shortlist. With ``bf16`` the shortlist products run in bf16.
    """
    body = q.shape[1] - tail
    qp = torch.cat([q[:, :body] @ axes, q[:, body:]], 1)
    kp = torch.cat([k[:, :body] @ axes, k[:, body:]], 1).t().contiguous()
    if bf16:
        qp, kp = qp.to(torch.bfloat16), kp.to(torch.bfloat16)
    settings = settings or search_settings(k.device, 4 * q.shape[0] * k.shape[0])
    rows = max(1, settings.block_bytes // (4 * max(1, k.shape[0])))
    scores, indices = [], []
    for start in range(0, q.shape[0], rows):
        s, i = _rescore(q[start:start + rows], k, qp[start:start + rows] @ kp, candidates)
        scores.append(s)
        indices.append(i)
    return torch.cat(scores), torch.cat(indices)


def shortlisted(queries: int, keys: int, width: int, *, exact: bool, dims: int, tail: int = 0,
                approx_min_work: float = APPROX_MIN_WORK) -> bool:
    """Whether :func:`search` of ``queries`` against ``keys`` vectors of ``width`` components uses the shortlist.

    Only when it pays: not ``exact``, the feature part (all but the last ``tail`` guide columns)
    has more than ``2 * dims`` components, and the exhaustive product would cost at least
    ``approx_min_work`` multiply-adds (the device's, :func:`search_settings`).

    >>> shortlisted(16384, 45056, 2688, exact=False, dims=128), shortlisted(4096, 11264, 2688, exact=False, dims=128)
    (True, False)
    """
    work = queries * keys * width
    return not (exact or width - tail <= 2 * dims or work < approx_min_work)


def search(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    exact: bool = True,
    dims: int = 128,
    candidates: int = 16,
    tail: int = 0,
    seed: int = 0,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best key for each prepared query: exhaustive, or shortlisted on principal axes.

    The shortlist is used only when it pays: not ``exact``, the feature part (all but the
    last ``tail`` guide columns) has more than ``2 * dims`` components, and the exhaustive
    product would cost over the device's ``approx_min_work`` (:func:`search_settings`).
    With ``bf16`` (ignored when ``exact``) the products that pick candidates run in bf16
    and the final choice in fp32. Returns ``(scores (N,), indices (N,))`` like
    :func:`best_scores`.
    """
    settings = search_settings(k.device, 4 * q.shape[0] * k.shape[0])
    if not shortlisted(q.shape[0], k.shape[0], k.shape[1], exact=exact, dims=dims, tail=tail,
                       approx_min_work=settings.approx_min_work):
        return best_scores(q, k, bf16=bf16 and not exact, settings=settings)
    axes = principal_axes(k[:, :k.shape[1] - tail], dims, seed=seed)
    return projected_best_scores(q, k, axes, candidates, tail, bf16=bf16, settings=settings)
