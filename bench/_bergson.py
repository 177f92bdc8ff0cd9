"""Peer training-data-attribution library Bergson, run like refine's ``gradient`` backend.

Bergson (``bergson`` 2.5.1, EleutherAI: TrackStar, (E)K-FAC / TK-FAC / Shampoo influence,
gradient cosine) scores the same training pairs for the same queries, on the same local Hugging
Face causal LM, with the same loss as :mod:`refine.attribution.gradient` and the Kronfluence /
TRAK runners of ``_peers.py``: each example is formatted by
:func:`refine.attribution.gradient.encode_example` (chat template, labels -100 on everything
but the answer tokens and the end-of-turn token), padded on the right, and its loss is the
**mean next-token cross-entropy over its answer tokens** (Bergson's ``loss_reduction="mean"``;
its default is ``"sum"``). Bergson differentiates the same layers as refine's default: the
Linear/Conv1D layers inside the transformer blocks (for GPT-2: ``attn.c_attn``,
``attn.c_proj``, ``mlp.c_fc``, ``mlp.c_proj`` of every block; not the embeddings, LayerNorms
or the tied ``lm_head``), passed to its collectors as ``target_modules``.

Installed into refine's virtualenv with (torch stays 2.13.0+cpu; bergson declares torchvision,
torchaudio, torchopt and bitsandbytes, none of which the pieces used here import)::

    .venv/bin/pip install --no-deps bergson==2.5.1
    # it also imports: jaxtyping, wadler_lindig, simple-parsing, natsort, ml_dtypes, petname,
    # peft, accelerate, datasets, pyarrow, safetensors, scipy, pandas, pyyaml, tqdm

Bergson's Python API, in process, no CLI, no subprocess, no dataset or model written to disk:
the encoded examples become an in-memory ``datasets.Dataset`` (columns ``input_ids``,
``labels``, ``length``, what Bergson's ``CollectorComputer`` and ``allocate_batches`` read),
batched by ``allocate_batches`` (``token_batch_size`` tokens per padded batch, Bergson's
default 2048); per-example gradients come from ``InMemoryCollector`` driven by
``CollectorComputer`` (Bergson's forward/backward: ``model(input_ids)`` without an attention
mask, which right padding makes unnecessary); scores from ``Scorer`` with an
``InMemorySequenceScoreWriter``. Only the factored Hessians write files (Bergson's
safetensors shards, under a temporary folder in ``work_dir``, removed afterwards), and every
collector pass drops a one-number ``total_processed.pt`` there.

Random projection: Bergson's ``per_module`` projection (``projection_target="per_module"``,
its default; Rademacher entries, JL scale, no seed): each module's O×I gradient becomes
P_l G P_rᵀ of size p×p. It only takes the per-module side p, so p is chosen so that
n_modules · p² is nearest to ``projection_dim``: for the 2-block tiny LM (8 modules) and
``projection_dim=4096``, p = 23 and the total is 8 · 529 = **4232**; for the 3-block one
(12 modules), p = 18 and the total is 12 · 324 = **3888**. The total used is returned as
``"projection_dim"`` with the timings (``"per_module_dim"`` = p). Every method scores in that
same projected space. ``projection_dim=0`` turns the projection off (Bergson's own default
for its Hessian pipeline) for ``"cosine"`` and the factored methods; TrackStar refuses it
(its dense per-module Grams would be (O·I)² each).

Methods (``method=``):

* ``"trackstar"`` — Bergson's TrackStar recipe (its ``trackstar`` pipeline, in memory): the
  gradients are divided elementwise by the square root of an Adam-style second moment
  (``AdamNormalizer``, eps 1e-8 outside the root), projected, preconditioned on both sides
  by R^(-1/2) and unit-normalised (``unit_normalize=True``, which the recipe needs and
  ``PreprocessConfig`` leaves off by default: query and training vectors are each normalised
  *after* R^(-1/2)); the score is their dot product, a cosine. R is the mixed
  autocorrelation matrix of the pipeline's "mix" step, R = c·R_query + (1−c)·R_train, per
  module, with R_train / R_query the projected gradient Grams over the training pairs / the
  queries divided by their counts, and c from Bergson's ``compute_lambda`` (the sorted pooled
  eigenvalue curves of c·R_query and (1−c)·R_train cross at component k). Deviations:
  - **second moment**: TrackStar takes Adam's ``exp_avg_sq`` from the optimizer state
    (``IndexConfig.optimizer_state``); there is none for these models and Bergson has no
    estimator without one, so by default (``normalizer="adam"``) it is estimated here as the
    mean over the training pairs of the squared per-pair gradient (the empirical Fisher
    diagonal, one extra pass with a small Bergson ``HookCollectorBase`` subclass, no
    projection) and handed to Bergson's own ``AdamNormalizer``. ``normalizer="adafactor"``
    hands its row/column means to ``AdafactorNormalizer`` instead; ``normalizer=None``
    skips the normalisation (what Bergson does without ``optimizer_state``).
  - **k** (``target_downweight_components``): Bergson's default is 1000 of "~65K" components;
    here the query Grams have at most #queries non-zero eigenvalues per module (≈ 35 × 8 =
    280 in all) and ~4K components exist, so k = 1000 would give c = 1 (R = R_query alone).
    By default k = round(1000 · total / 65536), the same share (65 for 4232), at most the
    pooled number of queries × modules; the c used comes back as ``"mix"``.
* ``"ekfac"`` / ``"kfac"`` / ``"tkfac"`` / ``"shampoo"`` — Bergson's Hessian pipeline
  (``hessian_pipeline``): the factors are fit on the training pairs by
  ``fit_factored_hessians`` (K-FAC covariances over the answer-and-prompt positions with
  labels *sampled* from the model, Bergson's default ``use_dataset_labels=False``, seeded by
  ``seed``; EK-FAC adds the eigenvalue correction pass; Shampoo's factors come from batch
  gradients), the query gradients are collected unprojected, ``FactoredPreconditioner``
  applies H⁻¹ to them, and the result is projected with the same per-module matrices as the
  training gradients (what its ``EkfacApplicator`` does with ``projection_dim``); the score
  is the plain dot product of H⁻¹-preconditioned query and training gradient (no unit
  normalisation: Bergson refuses it with factored Hessians). Deviation: Bergson's
  applicator refuses ``projection_dim`` together with EK-FAC's ``ev_correction`` (a guard,
  the inverse is applied before the projection either way), so for ``"ekfac"`` the same
  apply-then-project step is done here with its ``FactoredPreconditioner`` and
  ``create_module_projection_matrix``.
* ``"cosine"`` — plain gradient cosine: projected gradients, no normaliser, no
  preconditioner, unit-normalised on both sides (``Scorer(unit_normalize=True)``).

Damping: without ``damping_rule``, Bergson's default ``InversionConfig``
(``damped_inverse``, c = 0.1): every eigenvalue e of a curvature block becomes
e + 0.1 · mean(e) before inversion (TrackStar: of each module's mixed R, raised to −1/2;
factored methods: of each module's O×I eigenvalue grid — λ_G ⊗ λ_A, or EK-FAC's corrected
grid — raised to −1). With ``damping_rule``, it is called once per block with that block's
eigenvalues (a 1-D float64 numpy array, clamped at 0) and must return the absolute λ; the
block is then inverted with Bergson's ``absolute_damped_inverse`` and damping λ, i.e.
e + λ. ``lambda e: 0.1 * e.mean()`` reproduces the default. The λ used per block come back
as ``"lambda"`` (a dict module → λ).

Caveat (projection noise; measured on sample_data/generalise: 360 pairs, 35 planted
queries): the per-module projection is a Kronecker product of two p-row matrices, much
noisier than a dense JL projection of the same total. Raw gradient cosines survive it
(projected vs exact cosine: correlation 0.85; precision@10 0.28 vs 0.29 unprojected), but
H⁻¹q is nearly orthogonal to every training gradient (mean |cos(H⁻¹q, g)| ≈ 0.001 for
EK-FAC, against ≈ 0.03 for q itself), so at ~4K dimensions the factored scores are mostly projection noise:
projected vs unprojected K-FAC / EK-FAC scores correlate 0.11 / 0.13, and precision@10 drops
from 0.41 / 0.33 / 0.47 / 0.36 (K-FAC / EK-FAC / TK-FAC / Shampoo, ``projection_dim=0``) to
0.15 / 0.09 / 0.17 / 0.15 at ``projection_dim=4096``. Bergson's ``projection_target="global"``
(one dense projection) would be more faithful, but on CPU it redraws each module's dense
k×(O·I) matrix in blocks on every batch; it is not offered here.

Sign convention: Bergson's scores are inner products of gradients of the *loss* (its
``fwd_bwd`` differentiates the cross-entropy), preconditioned by a positive (semi)definite
matrix, and its pipelines mark them ``higher_is_better=True`` ("a positive scoring item is a
proponent of the query"). A gradient step on training pair i changes the query loss by
−η ∇L_qᵀ ∇L_i (−η ∇L_qᵀ H⁻¹ ∇L_i for a preconditioned step), so a positive score means the
pair lowers the query's loss: already refine's convention, **no flip**. Checked on the
generalising sample: for 35 (query, pair) cases the sign of the exact gradient dot product
matched the sign of the query-loss drop after a real SGD step on the pair, 35/35 (the
projected cosine: 33/35, its two misses had |cosine| < 0.06); Bergson's per-example
gradients matched autograd of refine's loss to 1e-6 relative error.

Timings returned with the scores: ``fit_s`` (training side: second moments and gradients of
the training pairs, the training Gram or the Hessian factors), ``score_s`` (query gradients,
the query Gram, mixing and inversion, preconditioning and scoring), ``total_s`` (wall time of
the whole call, model loading, imports and tokenization included) and ``cpu_s`` (process CPU
time of the call).

Threads: torch's intra-op threads and the BLAS pools (threadpoolctl) are set to
``num_threads`` for the call and restored afterwards. While it runs, Bergson's prints go to
stderr and its INFO logging is muted; importing Bergson reconfigures the root logger to
stdout (``logging.basicConfig(..., force=True)``), which is undone here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import _peers  # noqa: E402  (the sibling runner: model loading, encoding, timing helpers)

Example = tuple[str, str, "str | None"]

INSTALL = (".venv/bin/pip install --no-deps bergson==2.5.1  (it also imports jaxtyping, "
           "wadler_lindig, simple-parsing, natsort, ml_dtypes, petname, peft, accelerate)")

METHODS = ("trackstar", "ekfac", "kfac", "tkfac", "shampoo", "cosine")
FACTORED = {"ekfac": "kfac", "kfac": "kfac", "tkfac": "tkfac", "shampoo": "shampoo"}

__all__ = ["INSTALL", "METHODS", "available", "bergson_scores"]


@contextlib.contextmanager
def _keep_root_logging() -> Iterator[None]:
    """bergson.utils.logger runs ``logging.basicConfig(stream=sys.stdout, level=INFO,
    force=True)`` on import: put the root logger's handlers and level back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


def _import_bergson() -> None:
    with _keep_root_logging():
        import bergson  # noqa: F401
        from bergson.collector.collector import CollectorComputer  # noqa: F401
        from bergson.collector.in_memory_collector import InMemoryCollector  # noqa: F401
        from bergson.hessians.hessian_approximations import fit_factored_hessians  # noqa: F401
        from bergson.hessians.preconditioner import FactoredPreconditioner  # noqa: F401
        from bergson.score.scorer import Scorer  # noqa: F401


def available() -> str | None:
    """None when Bergson's pieces import (with transformers' GPT-2), else why not + install."""
    try:
        exec("import transformers\nfrom transformers import GPT2LMHeadModel", {})
        _import_bergson()
    except Exception as error:  # ImportError, or a broken torchvision pulled in by a dependency
        return f"not installed ({type(error).__name__}: {error}); install: {INSTALL}"
    return None


# -- call-scoped settings ----------------------------------------------------------------------


@contextlib.contextmanager
def _limits(count: int | None) -> Iterator[None]:
    """torch intra-op threads and the BLAS pools (threadpoolctl) for a block, restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        with threadpool_limits(count):
            yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Bergson's prints to stderr (stdout may carry a JSON line); its INFO logs muted."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.INFO))
    try:
        with contextlib.redirect_stdout(sys.stderr), _keep_root_logging():
            yield
    finally:
        logging.disable(previous)


# -- data and configuration --------------------------------------------------------------------


def _dataset(encoded: list[tuple[list[int], list[int]]]) -> Any:
    """The in-memory dataset Bergson's collectors read: input_ids, labels (-100 = no loss;
    Bergson shifts them itself, as transformers does), length (for ``allocate_batches``)."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [ids for ids, _ in encoded],
                              "labels": [labels for _, labels in encoded],
                              "length": [len(ids) for ids, _ in encoded]})


def _per_module_dim(projection_dim: int, modules: int) -> int:
    """Bergson's per-module side p whose total, modules · p², is nearest projection_dim
    (0: no projection)."""
    if projection_dim <= 0:
        return 0
    root = math.sqrt(max(1, projection_dim) / modules)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(sorted(candidates), key=lambda p: abs(modules * p * p - projection_dim))


def _block_modules(base: Any) -> list[str]:
    """refine's default layer selection, named as Bergson's collectors name them (relative to
    ``model.base_model``): Linear/Conv1D leaves whose name has a block index."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [name for name, module in base.named_modules()
            if isinstance(module, (Conv1D, torch.nn.Linear))
            and any(part.isdigit() for part in name.split("."))]


def _config(root: Path, stage: str, model_dir: str, projection_dim: int,
            token_batch_size: int) -> Any:
    from bergson.config.config import IndexConfig

    cfg = IndexConfig(run_path=str(root / stage), model=model_dir, projection_dim=projection_dim,
                      loss_reduction="mean", token_batch_size=token_batch_size)
    cfg.partial_run_path.mkdir(parents=True, exist_ok=True)  # total_processed.pt lands here
    return cfg


def _batches(ds: Any, cfg: Any) -> list[list[int]]:
    from bergson.data import allocate_batches

    return allocate_batches(ds["length"][:], cfg.token_batch_size)


def _collect(model: Any, ds: Any, cfg: Any, processor: Any, targets: set[str], *,
             gram: bool = False) -> dict[str, Any]:
    """Per-example gradients {module: (N, d) float32} from Bergson's ``InMemoryCollector``
    (normalised and projected as ``processor`` says); with ``gram`` it also leaves each
    module's Gram / N and its eigendecomposition in ``processor.hessians(_eigen)``."""
    from bergson.collector.collector import CollectorComputer
    from bergson.collector.in_memory_collector import InMemoryCollector

    collector = InMemoryCollector(model=model.base_model, cfg=cfg, processor=processor, data=ds,
                                  target_modules=targets, skip_hessians=not gram)
    CollectorComputer(model=model, data=ds, collector=collector, batches=_batches(ds, cfg),
                      cfg=cfg).run_with_collector_hooks(desc="gradients")
    return {name: grads.float() for name, grads in collector.gradients.items()}


def _second_moments(model: Any, ds: Any, cfg: Any, targets: set[str], kind: str) -> dict:
    """Bergson normalizers from the mean squared per-example gradient over ``ds`` (no
    projection): ``AdamNormalizer(v)`` or ``AdafactorNormalizer(v.mean(1), v.mean(0))``."""
    from dataclasses import dataclass, field

    import torch
    from bergson.collector.collector import CollectorComputer, HookCollectorBase
    from bergson.gradients import AdafactorNormalizer, AdamNormalizer, GradientProcessor

    @dataclass(kw_only=True)
    class SecondMomentCollector(HookCollectorBase):
        sums: dict = field(default_factory=dict)

        def setup(self) -> None:
            self.sums = {}

        def backward_hook(self, module: Any, g: Any) -> None:
            grads = self._module_gradient(module, g).materialize().float()   # (N, O, I)
            square = grads.pow(2).sum(dim=0)
            name = module._name
            self.sums[name] = square if name not in self.sums else self.sums[name].add_(square)

        def process_batch(self, indices: list[int], **kwargs: Any) -> None:
            pass

        def teardown(self) -> None:
            pass

    collector = SecondMomentCollector(model=model.base_model, processor=GradientProcessor(),
                                      target_modules=targets)
    CollectorComputer(model=model, data=ds, collector=collector, batches=_batches(ds, cfg),
                      cfg=cfg).run_with_collector_hooks(desc="second moments")
    out = {}
    for name, total in collector.sums.items():
        moment = (total / len(ds)).to(torch.float32)
        out[name] = (AdamNormalizer(weight_avg_sq=moment) if kind == "adam" else
                     AdafactorNormalizer(row=moment.mean(dim=1), col=moment.mean(dim=0)))
    return out


def _score(query: dict, train: dict, modules: list[str], *, unit_normalize: bool,
           index_transform: Callable | None = None, batch_size: int = 1024) -> np.ndarray:
    """Bergson's ``Scorer`` over stored training gradients: (queries, train) float64."""
    import torch
    from bergson.score.score_writer import InMemorySequenceScoreWriter
    from bergson.score.scorer import Scorer

    n_train, n_query = len(train[modules[0]]), len(query[modules[0]])
    writer = InMemorySequenceScoreWriter(n_train, n_query)
    scorer = Scorer(query, modules, writer, torch.device("cpu"), torch.float32,
                    unit_normalize=unit_normalize, index_transform=index_transform)
    for start in range(0, n_train, batch_size):
        rows = list(range(start, min(n_train, start + batch_size)))
        scorer(rows, {m: train[m][rows[0]:rows[-1] + 1] for m in modules})
    return writer.scores.to(torch.float64).numpy().T.copy()


def _eigenvalues(values: Any) -> np.ndarray:
    return np.clip(np.asarray(values, dtype=np.float64).ravel(), 0.0, None)


# -- entry point -------------------------------------------------------------------------------


def bergson_scores(model_dir: str, train: Sequence[Example], queries: Sequence[Example], *,
                   method: str = "trackstar", projection_dim: int = 4096,
                   work_dir: str | Path, num_threads: int | None = 1,
                   damping_rule: Callable[[np.ndarray], float] | None = None,
                   normalizer: str | None = "adam",
                   target_downweight_components: int | None = None,
                   token_batch_size: int = 2048, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Bergson attribution scores, (len(queries), len(train)); positive = the training pair
    lowers the query's loss (pushes the model toward the query's answer).

    ``method``: "trackstar" (default), "ekfac", "kfac", "tkfac", "shampoo" or "cosine" (see
    the module docstring for what each does and where it departs from Bergson's defaults).
    ``projection_dim``: the total size of Bergson's per-module projection, n_modules · p² as
    near to it as a whole p allows (the total used comes back as "projection_dim"); 0 = no
    projection (not for "trackstar"; "projection_dim" then reports the gradient size).
    ``damping_rule``: eigenvalues of one curvature block (1-D numpy) -> absolute λ added to
    each of them; None = Bergson's default, 0.1 × their mean. Unused by "cosine".
    ``normalizer`` (TrackStar only): "adam" (default), "adafactor" or None — the second
    moment that stands in for the missing optimizer state. ``target_downweight_components``
    (TrackStar only): k of Bergson's mixing rule; None = 1000 scaled to the projection size.
    ``token_batch_size``: Bergson's padded tokens per batch. ``seed``: the Fisher's sampled
    labels (factored methods); the global RNG state is left as it was.
    ``num_threads``: torch and BLAS threads during the call (restored after); None = as set.
    Returns the scores and {"fit_s", "score_s", "total_s", "cpu_s", "projection_dim",
    "per_module_dim", "lambda", and "mix" for TrackStar}.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if normalizer not in ("adam", "adafactor", None):
        raise ValueError(f"normalizer must be 'adam', 'adafactor' or None, got {normalizer!r}")
    started, cpu_started = time.perf_counter(), time.process_time()
    with _limits(num_threads), _quiet():
        _import_bergson()
        return _bergson_scores(model_dir, train, queries, method=method,
                               projection_dim=projection_dim, work_dir=Path(work_dir),
                               damping_rule=damping_rule, normalizer=normalizer,
                               target_downweight_components=target_downweight_components,
                               token_batch_size=token_batch_size, seed=seed,
                               started=started, cpu_started=cpu_started)


def _bergson_scores(model_dir: str, train_examples: Sequence[Example],
                    query_examples: Sequence[Example], *, method: str, projection_dim: int,
                    work_dir: Path, damping_rule: Callable | None, normalizer: str | None,
                    target_downweight_components: int | None, token_batch_size: int,
                    seed: int, started: float, cpu_started: float) -> tuple[np.ndarray, dict]:
    from bergson.utils.worker_utils import processor_for

    tokenizer, model, max_length = _peers._load(model_dir)
    # As Bergson's setup_model_and_peft: no parameter gradients, but a graph to hook into.
    model.requires_grad_(False)
    model.get_input_embeddings().requires_grad_(True)
    modules = _block_modules(model.base_model)
    targets = set(modules)
    p = _per_module_dim(projection_dim, len(modules))
    if p == 0 and method == "trackstar":
        raise ValueError("trackstar needs a projection (its dense per-module Grams would be "
                         "(O·I)² each); pass projection_dim > 0")
    train = _dataset(_peers._encode(tokenizer, train_examples, max_length))
    query = _dataset(_peers._encode(tokenizer, query_examples, max_length))
    token_batch_size = max(token_batch_size, max(train["length"]), max(query["length"]))
    layers = dict(model.base_model.named_modules())
    full_dim = sum(layers[name].weight.numel() for name in modules)
    extra: dict[str, Any] = {"projection_dim": len(modules) * p * p if p else full_dim,
                             "per_module_dim": p or None}

    work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bergson-", dir=work_dir))
    try:
        def config(stage: str, dim: int = p) -> Any:
            return _config(root, stage, model_dir, dim, token_batch_size)

        if method == "cosine":
            fit_start = time.perf_counter()
            train_cfg = config("train")
            train_grads = _collect(model, train, train_cfg, processor_for(train_cfg), targets)
            fit_s = time.perf_counter() - fit_start
            score_start = time.perf_counter()
            query_cfg = config("query")
            query_grads = _collect(model, query, query_cfg, processor_for(query_cfg), targets)
            scores = _cosine(query_grads, train_grads)
            score_s = time.perf_counter() - score_start
        elif method == "trackstar":
            scores, fit_s, score_s = _trackstar(
                model, train, query, config, targets, normalizer=normalizer,
                damping_rule=damping_rule, target_components=target_downweight_components,
                extra=extra)
        else:
            scores, fit_s, score_s = _factored(
                model, train, query, config, targets, method=method, p=p,
                damping_rule=damping_rule, seed=seed, extra=extra)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return scores, _peers._timing(fit_s, score_s, started, cpu_started, **extra)


def _cosine(query_grads: dict, train_grads: dict) -> np.ndarray:
    import torch
    from bergson.process_grads import normalize_and_aggregate_grads

    modules = list(train_grads)
    query = normalize_and_aggregate_grads(query_grads, modules, unit_normalize=True,
                                          device=torch.device("cpu"))
    return _score(query, train_grads, modules, unit_normalize=True)


def _trackstar(model: Any, train: Any, query: Any, config: Callable, targets: set[str], *,
               normalizer: str | None, damping_rule: Callable | None,
               target_components: int | None, extra: dict) -> tuple[np.ndarray, float, float]:
    import torch
    from bergson.config.config import InversionConfig
    from bergson.gradients import GradientProcessor
    from bergson.hessians.inversion import invert_psd_matrix
    from bergson.hessians.preconditioner import DensePreconditioner
    from bergson.process_grads import normalize_and_aggregate_grads
    from bergson.utils.math import compute_lambda
    from bergson.utils.worker_utils import processor_for

    fit_start = time.perf_counter()
    normalizers = {}
    if normalizer is not None:
        normalizers = _second_moments(model, train, config("moments", 0), targets, normalizer)
    train_cfg = config("train")
    train_processor: GradientProcessor = processor_for(train_cfg, normalizers)
    train_grads = _collect(model, train, train_cfg, train_processor, targets, gram=True)
    fit_s = time.perf_counter() - fit_start

    score_start = time.perf_counter()
    query_cfg = config("query")
    query_processor: GradientProcessor = processor_for(query_cfg, normalizers)
    query_grads = _collect(model, query, query_cfg, query_processor, targets, gram=True)
    modules = list(train_grads)
    # Bergson's "mix" step (mix_autocorrelation_matrices, in memory).
    total = sum(h.shape[0] for h in train_processor.hessians.values())
    if target_components is None:
        target_components = max(1, min(round(1000 * total / 65536), len(query) * len(modules)))
    mix = compute_lambda(query_eigen=query_processor.hessians_eigen,
                         index_eigen=train_processor.hessians_eigen,
                         target_components=target_components)
    mixed = {name: query_processor.hessians[name] * mix
             + train_processor.hessians[name] * (1 - mix) for name in modules}
    # R^(-1/2) on both sides, then unit norms (Bergson's split preconditioning).
    lambdas: dict[str, float] = {}
    h_inv = {}
    for name in modules:
        block = mixed[name].to(torch.float32)
        eigenvalues = _eigenvalues(torch.linalg.eigvalsh(block.double()))
        if damping_rule is None:                     # Bergson: c · mean eigenvalue, c = 0.1
            cfg = InversionConfig()
            lambdas[name] = cfg.damping_factor * float(eigenvalues.mean())
        else:
            lambdas[name] = float(damping_rule(eigenvalues))
            cfg = InversionConfig(inversion="absolute_damped_inverse",
                                  damping_factor=lambdas[name])
        h_inv[name] = invert_psd_matrix(block, inversion=cfg.inversion,
                                        damping_factor=cfg.damping_factor, power=-0.5)
    preconditioner = DensePreconditioner(h_inv)
    query_vectors = normalize_and_aggregate_grads(preconditioner.apply(query_grads), modules,
                                                  unit_normalize=True,
                                                  device=torch.device("cpu"))
    scores = _score(query_vectors, train_grads, modules, unit_normalize=True,
                    index_transform=preconditioner.apply)
    score_s = time.perf_counter() - score_start
    extra.update({"mix": mix, "target_downweight_components": target_components,
                  "normalizer": normalizer, "lambda": lambdas})
    return scores, fit_s, score_s


def _factored(model: Any, train: Any, query: Any, config: Callable, targets: set[str], *,
              method: str, p: int, damping_rule: Callable | None, seed: int,
              extra: dict) -> tuple[np.ndarray, float, float]:
    import torch
    from bergson.collector.collector import create_module_projection_matrix
    from bergson.config.config import HessianConfig, InversionConfig
    from bergson.gradients import GradientProcessor
    from bergson.hessians.hessian_approximations import fit_factored_hessians
    from bergson.hessians.preconditioner import FactoredPreconditioner
    from bergson.utils.worker_utils import processor_for

    fit_start = time.perf_counter()
    train_cfg = config("train")
    processor = processor_for(train_cfg)
    train_grads = _collect(model, train, train_cfg, processor, targets)
    hessian_cfg = HessianConfig(method=FACTORED[method], ev_correction=method == "ekfac")
    fit_cfg = config("hessian", 0)             # the factors live in the unprojected space
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)                # labels sampled from the model (true Fisher)
        fit_factored_hessians(model, train, fit_cfg, hessian_cfg, target_modules=targets,
                              attention_cfgs={}, batches=_batches(train, fit_cfg),
                              path=str(fit_cfg.partial_run_path), do_eigendecomposition=True)
    full = FactoredPreconditioner.from_path(fit_cfg.partial_run_path,
                                            inversion_cfg=InversionConfig(),
                                            ev_correction=method == "ekfac")
    fit_s = time.perf_counter() - fit_start

    score_start = time.perf_counter()
    query_cfg = config("query", 0)
    query_grads = _collect(model, query, query_cfg, GradientProcessor(), targets)
    modules = list(train_grads)
    lambdas: dict[str, float] = {}
    projected = {}
    for name in modules:
        grid = full.lambdas[name]
        if damping_rule is None:
            inversion = InversionConfig()
            lambdas[name] = inversion.damping_factor * float(grid.double().mean())
        else:
            lambdas[name] = float(damping_rule(_eigenvalues(grid.double().numpy())))
            inversion = InversionConfig(inversion="absolute_damped_inverse",
                                        damping_factor=lambdas[name])
        block = FactoredPreconditioner({name: full.eigen_a[name]}, {name: full.eigen_g[name]},
                                       {name: grid}, inversion_cfg=inversion, sharded=False)
        ivhp = block.apply({name: query_grads[name]})[name]      # H⁻¹ q, (M, O·I)
        if not p:                                                 # no projection
            projected[name] = ivhp
            continue
        o, i = full.eigen_g[name].shape[1], full.eigen_a[name].shape[1]
        ivhp = ivhp.view(-1, o, i)
        left, right = (create_module_projection_matrix(
            name, role, p, size, ivhp.dtype, ivhp.device, processor.projection_type,
            processor.projection_scale, processor.projection_seed)
            for role, size in (("left", o), ("right", i)))
        projected[name] = torch.einsum("ps,nsa,ra->npr", left, ivhp, right).flatten(1)
    scores = _score(projected, train_grads, modules, unit_normalize=False)
    score_s = time.perf_counter() - score_start
    extra["lambda"] = lambdas
    return scores, fit_s, score_s
