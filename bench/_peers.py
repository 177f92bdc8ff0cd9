"""Peer training-data-attribution libraries, run like refine's ``gradient`` backend.

Kronfluence (``kronfluence`` 1.0.1, EK-FAC / K-FAC / diagonal / identity influence functions)
and TRAK (``traker`` 0.3.2) score the same training pairs for the same queries, on the same
local Hugging Face causal LM, with the same loss as :mod:`refine.attribution.gradient`: each
example is formatted by :func:`refine.attribution.gradient.encode_example` (chat template,
labels -100 on everything but the answer tokens and the end-of-turn token), padded on the
right, and its loss is the **mean next-token cross-entropy over its answer tokens**. Both
libraries see the same layers as refine's default: the Linear/Conv1D layers inside the
transformer blocks (for GPT-2: ``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc``, ``mlp.c_proj``
of every block; not the embeddings, LayerNorms or the tied ``lm_head``).

Installed into refine's virtualenv with (torch stays 2.13.0; kronfluence declares torchvision,
whose available build breaks ``import transformers`` models, so it is left out / uninstalled;
kronfluence works without it; ``accelerate`` was already installed)::

    .venv/bin/pip install --no-deps kronfluence==1.0.1 traker==0.3.2
    .venv/bin/pip install --no-deps einconv==0.1.0 einops==0.8.2 opt_einsum==3.4.0
    .venv/bin/pip uninstall -y torchvision        # only if something pulled it in
    # kronfluence also imports accelerate (here 1.15.0) and safetensors, tqdm, numpy

Sign convention of every score returned here: **positive = a training step on the pair
lowers the query's loss**, i.e. it pushes the model toward the query's answer (same as refine).

* Kronfluence: measurement = the query's loss; its pairwise score is
  ∇L_qᵀ (G + λI)⁻¹ ∇L_i, positive when removing the pair would *raise* the query loss, i.e.
  the pair helped: already our convention, no flip.
* TRAK: model output f = −loss (the mean log-likelihood of the answer tokens) and
  out-to-loss weight Q = 1, so the score φ_q (ΦᵀΦ + λI)⁻¹ φ_iᵀ · Q_i with φ = P∇f = −P∇L is the
  same sign as ∇L_q·∇L_i-style products: positive = helpful, no flip.

Timings returned with the scores: ``fit_s`` (training side: Kronfluence's factors, TRAK's
featurization + finalize_features), ``score_s`` (query gradients + scores), ``total_s`` (wall
time of the whole call, model loading and tokenization included) and ``cpu_s`` (process CPU
time of the call: the wall times move a lot when the cores are shared); TRAK adds ``lambda``.

Caveats (CPU): TRAK's CPU ``BasicProjector`` redraws its dense Gaussian d×k matrix in blocks of
100 columns *on every call* (d = 1.33M block parameters for the tiny LM, k = 2048: 2.7 G normals
per call), so featurizing in batches of 16 would redraw it 22 times. Here per-sample gradients
are vmapped ``batch_size`` examples at a time but projected in as few calls as a memory budget
allows (``grad_memory_gb``, default 2 GB of float32 gradients): one call for the training set
and one for the queries on the tiny LM. TRAK's per-sample gradients cover every parameter
(embeddings and tied LM head included) before ``grad_wrt`` keeps the block layers: that vmap is
most of its time. TRAK's default λ = 0 makes ΦᵀΦ singular when pairs < ``proj_dim``; by default
λ follows refine's rule here (damping × the mean non-zero eigenvalue of ΦᵀΦ). Its
``finalize_features`` frees the projector, which a single-block projector (proj_dim ≤ 100)
never redraws: it is redrawn here before scoring.

Threads: with both cores busy elsewhere, torch's default 2 intra-op threads made these calls
4-10× slower than 1 thread (Kronfluence's eigendecomposition 127 s vs 1 s; TRAK's vmap
63 s vs 6 s), with identical scores; pass ``num_threads=1`` (or time every method alike).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

Example = tuple[str, str, "str | None"]

INSTALL = {
    "kronfluence": ".venv/bin/pip install --no-deps kronfluence==1.0.1 einconv==0.1.0 "
                   "einops==0.8.2 opt_einsum==3.4.0 accelerate  (then: .venv/bin/pip "
                   "uninstall -y torchvision if present: it breaks transformers)",
    "trak": ".venv/bin/pip install --no-deps traker==0.3.2",
}

__all__ = ["INSTALL", "available", "kronfluence_scores", "trak_scores"]


def available() -> dict[str, str | None]:
    """name -> None when importable (with transformers' GPT-2), else why not + how to install."""
    out: dict[str, str | None] = {}
    for name, probe in (("kronfluence", "from kronfluence.analyzer import Analyzer, prepare_model"),
                        ("trak", "from trak import TRAKer")):
        try:
            exec("import transformers\nfrom transformers import GPT2LMHeadModel\n" + probe, {})
        except Exception as error:  # ImportError, or torchvision's "operator ... does not exist"
            out[name] = f"not installed ({type(error).__name__}: {error}); install: {INSTALL[name]}"
        else:
            out[name] = None
    return out


# -- shared: the model, the encoding and the loss of refine's gradient backend ---------------


def _load(model_dir: str, **kwargs: Any) -> tuple[Any, Any, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True,
                                                 dtype=torch.float32, **kwargs)
    model.eval()
    positions = getattr(model.config, "n_positions", None) or \
        getattr(model.config, "max_position_embeddings", None)
    return tokenizer, model, min(512, positions or 512)   # refine: min(max_length=512, positions)


def _encode(tokenizer: Any, examples: Sequence[Example], max_length: int
            ) -> list[tuple[list[int], list[int]]]:
    from refine.attribution.gradient import DEFAULT_FALLBACK, encode_example

    return [encode_example(tokenizer, q, a, s, fallback=DEFAULT_FALLBACK, max_length=max_length)
            for q, a, s in examples]


def _by_length(encoded: list) -> tuple[list, np.ndarray]:
    """Examples sorted by length (less padding, as refine does) and the permutation used."""
    order = np.array(sorted(range(len(encoded)), key=lambda i: len(encoded[i][0])), dtype=np.int64)
    return [encoded[i] for i in order], order


def _pad(rows: Sequence[tuple[list[int], list[int]]], pad: int) -> dict[str, Any]:
    """Right padding: causal attention never lets a real token see the pads."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (i, l) in enumerate(rows):
        ids[row, :len(i)] = torch.tensor(i)
        labels[row, :len(l)] = torch.tensor(l)
        mask[row, :len(i)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _example_losses(logits: Any, labels: Any) -> Any:
    """Per-example mean next-token cross-entropy over the labelled (answer) tokens: (B,)."""
    import torch

    shifted, targets = logits[:, :-1].float(), labels[:, 1:]
    token_loss = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1), ignore_index=-100,
        reduction="none").view(targets.shape)
    counts = (targets != -100).sum(dim=1).clamp(min=1)
    return token_loss.sum(dim=1) / counts


def _example_margins(logits: Any, labels: Any) -> Any:
    """Per-example mean of −log(p/(1−p)) over the answer tokens (TRAK's margin; refine's
    default measurement): logsumexp of the other logits minus the chosen one. (B,)."""
    import torch

    shifted, targets = logits[:, :-1].float(), labels[:, 1:]
    keep = targets != -100
    safe = targets.clamp(min=0).unsqueeze(-1)
    chosen = shifted.gather(-1, safe).squeeze(-1)
    others = torch.logsumexp(shifted.scatter(-1, safe, float("-inf")), dim=-1)
    counts = keep.sum(dim=1).clamp(min=1)
    return torch.where(keep, others - chosen, 0.0).sum(dim=1) / counts


def _block_modules(model: Any) -> list[str]:
    """refine's default layer selection: Linear/Conv1D leaves whose name has a block index."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [name for name, module in model.named_modules()
            if isinstance(module, (Conv1D, torch.nn.Linear))
            and any(part.isdigit() for part in name.split("."))]


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count for a block. On 2 shared cores, 2 threads can be far
    slower than 1 (LAPACK eigh of a 769×769 matrix: 12 s vs 0.07 s, measured here)."""
    import torch

    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


# -- Kronfluence ------------------------------------------------------------------------------


def _conv1d_to_linear(model: Any) -> int:
    """Replace transformers' Conv1D (y = x W + b, W: in×out) by nn.Linear (weight = Wᵀ), which
    kronfluence can track (it supports nn.Linear and nn.Conv2d only); the outputs are equal."""
    import torch
    from transformers.pytorch_utils import Conv1D

    changed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape
                linear = torch.nn.Linear(n_in, n_out, bias=child.bias is not None)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
                changed += 1
    return changed


class _ListDataset:
    def __init__(self, rows: list) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Any:
        return self.rows[index]


def _unsorted(sorted_scores: np.ndarray, query_order: np.ndarray,
              train_order: np.ndarray) -> np.ndarray:
    """Scores computed on length-sorted examples, put back in the callers' order."""
    scores = np.empty_like(sorted_scores)
    scores[np.ix_(query_order, train_order)] = sorted_scores
    return scores


def _timing(fit_s: float, score_s: float, started: float, cpu_started: float,
            **extra: Any) -> dict:
    return {"fit_s": fit_s, "score_s": score_s, "total_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started, **extra}


def kronfluence_scores(model_dir: str, train_examples: Sequence[Example],
                       query_examples: Sequence[Example], *, strategy: str = "ekfac",
                       batch_size: int = 16, work_dir: str | Path,
                       damping: float | None = 1e-8, seed: int = 0,
                       use_empirical_fisher: bool = False, measurement: str = "loss",
                       num_threads: int | None = None) -> tuple[np.ndarray, dict]:
    """Kronfluence influence scores, (len(query_examples), len(train_examples)).

    ``strategy``: "ekfac" (default), "kfac", "diagonal" or "identity". ``damping``: the λ added
    to the (E)K-FAC eigenvalues; default kronfluence's own ScoreArguments default, 1e-8;
    None = its heuristic, 0.1 × their mean. The true Fisher is estimated with labels sampled
    from the model at the answer positions (kronfluence's default), under ``seed``.
    Positive = the pair lowers the query's loss (kronfluence's sign with measurement = loss).
    ``measurement``: the query function, "loss" or "margin" (refine's default); the training
    side stays the loss, whose Fisher the (E)K-FAC factors estimate.
    ``num_threads``: torch's intra-op threads during the call (restored after); None = as set.
    """
    with _threads(num_threads):
        return _kronfluence_scores(model_dir, train_examples, query_examples, strategy=strategy,
                                   batch_size=batch_size, work_dir=work_dir, damping=damping,
                                   seed=seed, use_empirical_fisher=use_empirical_fisher,
                                   measurement=measurement)


def _kronfluence_scores(model_dir: str, train_examples: Sequence[Example],
                        query_examples: Sequence[Example], *, strategy: str, batch_size: int,
                        work_dir: str | Path, damping: float | None, seed: int,
                        use_empirical_fisher: bool, measurement: str) -> tuple[np.ndarray, dict]:
    import torch
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task
    from kronfluence.utils.dataset import DataLoaderKwargs

    started, cpu_started = time.perf_counter(), time.process_time()
    tokenizer, model, max_length = _load(model_dir)
    modules = _block_modules(model)
    _conv1d_to_linear(model)
    pad = _pad_id(tokenizer)
    train, train_order = _by_length(_encode(tokenizer, train_examples, max_length))
    query, query_order = _by_length(_encode(tokenizer, query_examples, max_length))

    class LMTask(Task):
        def compute_train_loss(self, batch: Any, model: Any, sample: bool = False) -> Any:
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"]
            if sample:   # true Fisher: labels drawn from the model where the answer is
                with torch.no_grad():
                    probs = torch.softmax(logits.detach().float(), dim=-1)
                    drawn = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1)
                    drawn = drawn.view(labels.shape)
                    # position t predicts token t+1: draw from t-1's distribution for label t
                    sampled = torch.full_like(labels, -100)
                    sampled[:, 1:] = torch.where(labels[:, 1:] == -100, -100, drawn[:, :-1])
                labels = sampled
            # A sum of per-example means: each example's gradient is that of its own loss.
            return _example_losses(logits, labels).sum()

        def compute_measurement(self, batch: Any, model: Any) -> Any:
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
            measure = _example_margins if measurement == "margin" else _example_losses
            return measure(logits, batch["labels"]).sum()

        def get_influence_tracked_modules(self) -> list[str]:
            return modules

        def get_attention_mask(self, batch: Any) -> Any:
            return batch["attention_mask"]

    task = LMTask()
    model = prepare_model(model, task)
    root = Path(tempfile.mkdtemp(prefix="kronfluence-", dir=work_dir))
    try:
        analyzer = Analyzer(analysis_name="peer", model=model, task=task, cpu=True,
                            disable_tqdm=True, output_dir=str(root),
                            log_level=logging.WARNING, disable_model_save=True)
        kwargs = DataLoaderKwargs(collate_fn=lambda rows: _pad(rows, pad))
        torch.manual_seed(seed)
        fit_start = time.perf_counter()
        analyzer.fit_all_factors(
            factors_name=strategy, dataset=_ListDataset(train), per_device_batch_size=batch_size,
            dataloader_kwargs=kwargs, overwrite_output_dir=True,
            factor_args=FactorArguments(strategy=strategy,
                                        use_empirical_fisher=use_empirical_fisher))
        fit_s = time.perf_counter() - fit_start
        score_start = time.perf_counter()
        analyzer.compute_pairwise_scores(
            scores_name="scores", factors_name=strategy, query_dataset=_ListDataset(query),
            train_dataset=_ListDataset(train), per_device_query_batch_size=batch_size,
            per_device_train_batch_size=batch_size, dataloader_kwargs=kwargs,
            overwrite_output_dir=True, score_args=ScoreArguments(damping_factor=damping))
        sorted_scores = analyzer.load_pairwise_scores("scores")["all_modules"]
        sorted_scores = sorted_scores.to(torch.float64).numpy()
        score_s = time.perf_counter() - score_start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return _unsorted(sorted_scores, query_order, train_order), _timing(
        fit_s, score_s, started, cpu_started)


# -- TRAK -------------------------------------------------------------------------------------


def trak_scores(model_dir: str, train_examples: Sequence[Example],
                query_examples: Sequence[Example], *, proj_dim: int = 2048,
                lambda_: float | None = None, batch_size: int = 16, work_dir: str | Path,
                damping: float = 1.0, seed: int = 0,
                grad_memory_gb: float = 2.0,
                num_threads: int | None = None) -> tuple[np.ndarray, dict]:
    """TRAK scores (one checkpoint), (len(query_examples), len(train_examples)).

    ``lambda_``: the ridge λ TRAK adds to ΦᵀΦ (absolute, on TRAK's features, which it divides by
    sqrt(#parameters)); None = refine's rule, ``damping`` × tr(ΦᵀΦ) / min(N, proj_dim) (TRAK's
    own default, 0, is singular with fewer pairs than dimensions). Per-sample gradients are
    vmapped ``batch_size`` at a time; up to ``grad_memory_gb`` of them are projected per call
    (TRAK's CPU projector redraws its whole matrix on each call). float32, CPU, seeded
    Gaussian projection (TRAK's CPU default). Positive = the pair lowers the query's loss.
    ``num_threads``: torch's intra-op threads during the call (restored after); None = as set.
    """
    with _threads(num_threads):
        return _trak_scores(model_dir, train_examples, query_examples, proj_dim=proj_dim,
                            lambda_=lambda_, batch_size=batch_size, work_dir=work_dir,
                            damping=damping, seed=seed, grad_memory_gb=grad_memory_gb)


def _trak_scores(model_dir: str, train_examples: Sequence[Example],
                 query_examples: Sequence[Example], *, proj_dim: int, lambda_: float | None,
                 batch_size: int, work_dir: str | Path, damping: float, seed: int,
                 grad_memory_gb: float) -> tuple[np.ndarray, dict]:
    import torch
    from trak import TRAKer
    from trak.gradient_computers import FunctionalGradientComputer
    from trak.modelout_functions import AbstractModelOutput
    from trak.utils import vectorize

    started, cpu_started = time.perf_counter(), time.process_time()
    # transformers checks `pad_token_id in input_ids` in the forward (.item(), not vmappable):
    # no pad id, no attention mask; right padding with -100 labels makes both unnecessary.
    tokenizer, model, max_length = _load(model_dir)
    pad = _pad_id(tokenizer)
    model.config.pad_token_id = None
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = None
    modules = set(_block_modules(model))
    grad_wrt = [name for name, _ in model.named_parameters()
                if name.rsplit(".", 1)[0] in modules]
    train, train_order = _by_length(_encode(tokenizer, train_examples, max_length))
    query, query_order = _by_length(_encode(tokenizer, query_examples, max_length))

    class LMOutput(AbstractModelOutput):
        """f(z, θ) = −(mean cross-entropy of the answer tokens); Q = ∂loss/∂f magnitude = 1."""

        def __init__(self) -> None:
            super().__init__()

        @staticmethod
        def get_output(model: Any, weights: Any, buffers: Any, input_ids: Any,
                       labels: Any) -> Any:
            logits = torch.func.functional_call(
                model, (weights, buffers), args=(input_ids.unsqueeze(0),),
                kwargs={"use_cache": False}).logits
            # No data-dependent indexing under vmap: gather with clamped labels, then mask.
            targets = labels[1:].unsqueeze(0)
            keep = (targets != -100).to(logits.dtype)
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            return (picked * keep).sum() / keep.sum().clamp(min=1.0)

        def get_out_to_loss_grad(self, model: Any, weights: Any, buffers: Any,
                                 batch: Any) -> Any:
            return torch.ones(batch[0].shape[0], 1)

    class MicroBatchedGradients(FunctionalGradientComputer):
        """TRAK's vmapped per-sample gradients, ``batch_size`` examples at a time, flattened."""

        def compute_per_sample_grad(self, batch: Any) -> Any:
            n = batch[0].shape[0]
            out = torch.empty(n, self.grad_dim, dtype=torch.float32)
            for start in range(0, n, batch_size):
                grads = super().compute_per_sample_grad([b[start:start + batch_size]
                                                         for b in batch])
                out[start:start + batch_size] = vectorize(grads, device="cpu")
                del grads
            return out

    root = Path(tempfile.mkdtemp(prefix="trak-", dir=work_dir))
    try:
        traker = TRAKer(model=model, task=LMOutput(), train_set_size=len(train),
                        save_dir=str(root), device="cpu",   # a fresh, empty save_dir
                        gradient_computer=MicroBatchedGradients, proj_dim=proj_dim,
                        use_half_precision=False, projector_seed=seed, grad_wrt=grad_wrt,
                        lambda_reg=0.0 if lambda_ is None else float(lambda_),
                        logging_level=logging.WARNING)
        per_call = max(batch_size, int(grad_memory_gb * 2**30 // (4 * traker.num_params_for_grad)))

        def padded(rows: list) -> list:
            batch = _pad(rows, pad)
            return [batch["input_ids"], batch["labels"]]

        fit_start = time.perf_counter()
        traker.load_checkpoint(model.state_dict(), model_id=0)
        for start in range(0, len(train), per_call):
            rows = train[start:start + per_call]
            traker.featurize(batch=padded(rows), num_samples=len(rows))
        if lambda_ is None:
            grads = np.asarray(traker.saver.current_store["grads"], dtype=np.float64)
            traker.score_computer.lambda_reg = float(
                damping * np.einsum("ij,ij->", grads, grads) / max(1, min(grads.shape)))
            del grads
        traker.finalize_features()
        projector = traker.projector
        if getattr(projector, "num_blocks", 0) == 1 and not projector.proj_matrix_available:
            projector.generate_sketch_matrix(projector.generator_states[0])   # see the caveat
        fit_s = time.perf_counter() - fit_start
        score_start = time.perf_counter()
        traker.start_scoring_checkpoint(exp_name="queries", checkpoint=model.state_dict(),
                                        model_id=0, num_targets=len(query))
        for start in range(0, len(query), per_call):
            rows = query[start:start + per_call]
            traker.score(batch=padded(rows), num_samples=len(rows))
        sorted_scores = np.array(traker.finalize_scores(exp_name="queries"),
                                 dtype=np.float64).T                     # queries × train
        score_s = time.perf_counter() - score_start
        lam = traker.score_computer.lambda_reg
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return _unsorted(sorted_scores, query_order, train_order), _timing(
        fit_s, score_s, started, cpu_started, **{"lambda": lam})
