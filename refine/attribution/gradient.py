"""Gradient attribution: which training pairs pushed the model toward the answer it gave.

For a local causal LM (a Hugging Face model directory, optionally with a PEFT LoRA adapter),
every training pair and every eval item becomes the gradient of a function of its answer, over
the **final assistant turn only** (the prompt — system message, question, chat-template
markers — is masked to -100). Restricting it to the answer is what makes the gradient about
*what was said*, not about how questions are phrased. The function (``measurement``) is

* ``margin`` (default): the mean over answer tokens of −log(p/(1−p)), TRAK's margin. Its
  gradient is the token loss gradient divided by (1−p), so each answer token weighs the same
  however confident the model is. With the plain loss, an answer the model has learned by
  heart has almost no gradient left except on its few uncertain tokens, and those decide the
  ranking: on the sample tiny LM the margin puts a culprit first for every repeated planted
  answer (the loss: 92%);
* ``loss``: the mean next-token loss itself.

The gradients are projected, LoGra-style, without ever forming a d×k matrix: for a linear
layer with inputs x (T×n) and output gradients g (T×m), the example's weight gradient is
Σ_t g_tᵀ x_t, and its projection through seeded Gaussian P_in (n×k_in), P_out (m×k_out) is
Σ_t (g_t P_out)ᵀ (x_t P_in): k_out·k_in numbers per layer, built from the hooks' x and g.
Layers are concatenated; k_in, k_out are chosen so the total is about ``projection_dim``.
Entries of P are N(0, 1/k), so projected inner products estimate the true ones.

The score of training pair i for eval item q is

* ``layerwise`` (default): φ_q H⁻¹ φ_i with H block-diagonal, one block per layer,
  H_l = Φ_lᵀΦ_l + λ_l I, Φ_l the N×D_l training features of layer l and
  λ_l = damping · tr(Φ_lᵀΦ_l) / min(N, D_l): ``damping`` is relative to the block's mean
  non-zero eigenvalue, so it has no scale of its own. Per-layer curvature is what LoGra and
  Kronfluence's (E)K-FAC use; each layer is whitened on its own scale, so the few layers with
  the largest gradients do not decide every ranking. On the sample tiny LM it ranks a topic's
  other planted pairs (the same wrong fact, worded differently) higher than one D×D block does
  (precision@10 0.55 against 0.46, and 11 of 13 planted pairs flagged against 9 on a second
  seed), and its blocks hold Σ D_l² numbers instead of D²;
* ``trak``: the same with one block over all D columns, φ_q (ΦᵀΦ + λI)⁻¹ φ_i (TRAK);
* ``identity``: φ_q · φ_i (TracIn with one checkpoint);
* ``cosine``: the cosine of φ_q and φ_i.

With ``relative`` (the default; it applies to ``layerwise`` and ``trak``), each training pair's
score is divided by its own size under the same metric, √(φ_i H⁻¹ φ_i) — the "relative
influence" of Barshan et al. (RelatIF, 2020); ``identity`` stays the raw inner product
(TracIn), and ``cosine`` is already scale-free. Raw inner products are dominated by
the few pairs with the largest gradients (answers the model never fitted, outliers): they
rank near the top for every query and would be cited by good and bad answers alike, which is
exactly what repeated-culprit statistics must not see. Dividing by the pair's norm asks
instead which pairs this answer is *most specifically* aligned with (on the sample tiny LM it
cuts planted pairs cited by good answers from 13 to 5, at some cost in precision@10).

Sign convention: the features are gradients of the *loss* (or of −margin), so a **positive**
score means the two gradients align: a training step on the pair lowers the loss of the item's
answer, i.e. training on the pair pushed the model toward saying this answer. Negative scores (pairs that
pushed away from it) are never cited: the sign is the only absolute floor gradient scores
have (their scale varies per query), so levels come from the per-query robust z-score
(:mod:`refine.calibration`) with ``min_score = 0``.

Training features are cached as a float32 ``.npy`` under ``<cache>/gradients/<key>/``, the
key hashing the model files, the pairs' content and every setting that changes a feature; they
are written in chunks, so an interrupted run resumes, and read back a block at a time, so memory
holds one block, never the N×D matrix.

Features and the whitening statistics are computed by workers (:mod:`refine.executors`): in
this process by default, or by Ray actors that each hold a model replica on their own device.
Each task is one chunk of 64 examples; its features are written at the chunk's rows as they
arrive (in any order), and the statistics are summed in chunk order, so where the work ran never
changes the bytes, beyond what a different BLAS thread count changes in the last float bits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._atomic import atomic_open, write_json
from ..calibration import LevelCalibration, levels_of_blocks
from ..devices import resolve_device
from ..embeddings import _fingerprint, default_cache_dir
from ..errors import BackendError, ConfigError
from ..evalset import EvalItem
from ..records import Attribution, Influence
from ..text import qa_text
from ..training import TrainingPair, TrainingSet
from .base import AttributionBackend

__all__ = ["GradientBackend", "GradientOptions", "encode_example"]

PRECONDITIONERS = ("layerwise", "trak", "identity", "cosine")
MEASUREMENTS = ("margin", "loss")
WHITENINGS = ("none", "diag", "kfac")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16")
FEATURE_FORMAT = 1
_CHUNK = 64              # training pairs per resumable chunk
_SCORE_CHUNK = 1024      # training features read at a time: 16 MB of float32 at D ≈ 3,900
DEFAULT_FALLBACK = "{system}Q: {question}\nA: "


@dataclass(frozen=True)
class GradientOptions:
    model: str = ""
    adapter: str | None = None
    projection_dim: int = 4096
    seed: int = 0
    damping: float = 1.0
    preconditioner: str = "cosine"
    relative: bool = True
    measurement: str = "margin"
    batch_size: int | str = field(default=16, metadata={"affects_results": False})
    device: str = field(default="auto", metadata={"affects_results": False})
    dtype: str = "float32"
    modules: list[str] | None = None
    chat_template_fallback: str = DEFAULT_FALLBACK
    max_length: int = 512
    whiten: str = "kfac"
    whiten_damping: float = 0.1
    whiten_examples: int = 1024
    whiten_max_dim: int = 4096
    eval_mix: float = 0.0
    contrast: float = 1.0
    contrast_neighbours: int = 8
    z_low: float = LevelCalibration.z_low
    z_medium: float = LevelCalibration.z_medium
    z_high: float = LevelCalibration.z_high
    cache_dir: str | None = field(default=None, metadata={"affects_results": False})

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(why, key=f"backend_options.{key}")

        if not isinstance(self.model, str) or not self.model:
            raise bad("model", "is required: the path of a local causal LM directory")
        for key in ("projection_dim", "batch_size", "max_length"):
            value = getattr(self, key)
            if key == "batch_size" and value == "auto":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(key, f"must be a positive integer{' or auto' if key == 'batch_size' else ''}, "
                          f"got {value!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise bad("device", f"is {self.device!r}; expected one of {', '.join(DEVICES)} (or cuda:N)")
        if self.dtype not in DTYPES:
            raise bad("dtype", f"is {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise bad("seed", f"must be an integer, got {self.seed!r}")
        if not isinstance(self.damping, (int, float)) or isinstance(self.damping, bool) \
                or not self.damping > 0:
            raise bad("damping", f"must be a positive number, got {self.damping!r}")
        if self.measurement not in MEASUREMENTS:
            raise bad("measurement", f"is {self.measurement!r}; expected one of "
                      f"{', '.join(MEASUREMENTS)}")
        if not isinstance(self.relative, bool):
            raise bad("relative", f"must be true or false, got {self.relative!r}")
        if self.preconditioner not in PRECONDITIONERS:
            raise bad("preconditioner", f"is {self.preconditioner!r}; expected one of "
                      f"{', '.join(PRECONDITIONERS)}")
        if self.whiten not in WHITENINGS:
            raise bad("whiten", f"is {self.whiten!r}; expected one of {', '.join(WHITENINGS)}")
        for key in ("whiten_damping", "eval_mix"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= (
                    1 if key == "eval_mix" else math.inf) or (key == "whiten_damping" and value == 0):
                raise bad(key, f"must be {'in [0, 1]' if key == 'eval_mix' else 'a positive number'}, "
                          f"got {value!r}")
        for key in ("whiten_examples", "whiten_max_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(key, f"must be a positive integer, got {value!r}")
        if not isinstance(self.contrast, (int, float)) or isinstance(self.contrast, bool) \
                or not 0 <= self.contrast <= 1:
            raise bad("contrast", f"must be in [0, 1], got {self.contrast!r}")
        if not isinstance(self.contrast_neighbours, int) or isinstance(self.contrast_neighbours, bool) \
                or self.contrast_neighbours < 1:
            raise bad("contrast_neighbours", f"must be a positive integer, got {self.contrast_neighbours!r}")
        if self.eval_mix > 0 and self.preconditioner not in ("layerwise", "trak"):
            raise bad("eval_mix", "mixes the eval set into the curvature of `layerwise` or `trak`")
        if self.modules is not None and (not isinstance(self.modules, (list, tuple)) or not all(
                isinstance(m, str) and m for m in self.modules) or not self.modules):
            raise bad("modules", "must be a non-empty list of module name patterns (fnmatch)")
        if not isinstance(self.chat_template_fallback, str) or "{question}" not in \
                self.chat_template_fallback:
            raise bad("chat_template_fallback", "must be a string containing '{question}'")
        self.calibration()

    def calibration(self) -> LevelCalibration:
        return LevelCalibration(self.z_low, self.z_medium, self.z_high, 0.0)


def _prompt_text(tokenizer: Any, question: str, system: str | None, fallback: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": question}]
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
        except Exception as exc:   # jinja2's TemplateError, or the template's raise_exception()
            raise ConfigError(f"the tokenizer's chat template refused a {len(messages)}-message "
                              f"prompt{' with a system prompt' if system else ''}: {exc}",
                              key="backend_options.model") from None
    return fallback.format(system=f"{system}\n\n" if system else "", question=question)


def encode_example(tokenizer: Any, question: str, answer: str, system: str | None = None, *,
                   fallback: str = DEFAULT_FALLBACK,
                   max_length: int = 512) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one exchange: labels are -100 everywhere but the answer tokens
    (and the end-of-turn token after them, when the tokenizer has one).

    Prompt and answer are tokenized apart and joined as ids, so the mask never depends on how
    a tokenizer would merge across the boundary. Overlong prompts are cut from the left, so
    the answer is kept.
    """
    prompt = tokenizer(_prompt_text(tokenizer, question, system, fallback),
                       add_special_tokens=False)["input_ids"]
    target = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        target = target + [tokenizer.eos_token_id]
    target = target[:max(1, max_length - 1)]
    prompt = prompt[max(0, len(prompt) + len(target) - max_length):]
    return prompt + target, [-100] * len(prompt) + target


class FeatureFile:
    """A float32 ``.npy`` matrix written and read in row blocks with plain file I/O.

    Not memory-mapped on purpose: pages of a mapping that were touched count as the process's
    resident memory, so scoring against a mapped 50,000 × 4,096 matrix would show 800 MB of RSS;
    reads into a reused block keep it at one block (the OS page cache still speeds re-reads).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran or dtype != np.dtype("<f4") or len(shape) != 2:
            raise ValueError(f"{path} is not a C-ordered float32 matrix")
        if path.stat().st_size != self.offset + shape[0] * shape[1] * 4:
            raise ValueError(f"{path} is truncated or padded")
        self.shape: tuple[int, int] = shape

    @classmethod
    def create(cls, path: Path, shape: tuple[int, int]) -> "FeatureFile":
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
            fh.truncate(fh.tell() + shape[0] * shape[1] * 4)
        return cls(path)

    def __len__(self) -> int:
        return self.shape[0]

    def write(self, start: int, rows: np.ndarray) -> None:
        """Store rows at `start` and make them durable (the resume point is written after)."""
        if not np.isfinite(rows).all():
            raise BackendError("the model's gradients are not finite (NaN or inf) for "
                               f"training pairs {start + 1}–{start + len(rows)}: check the weights")
        with open(self.path, "r+b") as fh:
            fh.seek(self.offset + start * self.shape[1] * 4)
            fh.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())
            fh.flush()
            os.fsync(fh.fileno())

    def blocks(self, size: int = 0):
        """(start, rows) over the whole matrix, `size` rows at a time."""
        size = size or _SCORE_CHUNK
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            for start in range(0, self.shape[0], size):
                n = min(size, self.shape[0] - start)
                rows = np.fromfile(fh, dtype="<f4", count=n * self.shape[1])
                yield start, rows.reshape(n, self.shape[1])


class _Projector:
    """Hooks on the chosen layers that turn one backward pass into projected per-example grads."""

    def __init__(self, torch: Any, layers: list[tuple[str, Any, int, int, bool]],
                 projection_dim: int, seed: int, device: Any = "cpu") -> None:
        self.torch = torch
        self.layers = layers
        self.device = device
        budget = max(1, projection_dim // len(layers))
        self.shapes: list[tuple[int, int]] = []
        self.p_in: list[Any] = []
        self.p_out: list[Any] = []
        for index, (_, _, n_in, n_out, _) in enumerate(layers):
            # Square when both sides are wide; when one is narrow (a LoRA rank), it is kept whole
            # and the other side gets the rest of the budget.
            k_in = max(1, min(n_in, max(round(math.sqrt(budget)), budget // n_out)))
            k_out = max(1, min(n_out, budget // k_in))
            # Drawn on the CPU (the same numbers on every device), then moved; always float32.
            gen = torch.Generator().manual_seed(seed * 100_003 + index)
            self.p_in.append((torch.randn(n_in, k_in, generator=gen) / math.sqrt(k_in)).to(device))
            self.p_out.append((torch.randn(n_out, k_out, generator=gen) / math.sqrt(k_out)).to(device))
            self.shapes.append((k_out, k_in))
        self.dim = sum(a * b for a, b in self.shapes)
        self._inputs: dict[int, Any] = {}
        self._parts: dict[int, Any] = {}
        self._handles: list[Any] = []
        self.statistics: list[list[Any]] | None = None   # [A, S, tokens] per layer while collecting
        self.token_mask: Any = None                        # B×T: 1 for a real token

    def collect_statistics(self, diagonal: bool, max_dim: int) -> None:
        """From now on, accumulate each layer's input and output-gradient second moments over
        tokens (K-FAC's A and S) instead of features: their diagonals only when `diagonal`, or
        for a side wider than `max_dim` (a d² matrix would not fit)."""
        t = self.torch
        shape = lambda n: n if diagonal or n > max_dim else (n, n)  # noqa: E731
        self.statistics = [[t.zeros(shape(n_in), dtype=t.float64), t.zeros(shape(n_out), dtype=t.float64), 0]
                           for _, _, n_in, n_out, _ in self.layers]

    def whiten(self, factors: list[tuple[Any, Any]]) -> None:
        """Fold per-layer whitening matrices into the projections: x A^{-1/2} P_in is
        x (A^{-1/2} P_in), so the hooks stay as they are and no d×k matrix is formed."""
        self.statistics = None
        for index, (w_in, w_out) in enumerate(factors):
            w_in, w_out = w_in.to(self.device), w_out.to(self.device)
            self.p_in[index] = (w_in @ self.p_in[index]) if w_in.dim() == 2 else w_in[:, None] * self.p_in[index]
            self.p_out[index] = (w_out @ self.p_out[index]) if w_out.dim() == 2 else w_out[:, None] * self.p_out[index]

    def __enter__(self) -> "_Projector":
        for index, (_, module, _, _, _) in enumerate(self.layers):
            self._handles.append(module.register_forward_hook(self._forward_hook(index)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _forward_hook(self, index: int) -> Callable:
        def hook(module: Any, args: tuple, output: Any) -> None:
            if not output.requires_grad:
                return
            if self.statistics is not None:
                self._accumulate(index, 0, args[0].detach())
            else:   # projected in float32 whatever the model's dtype
                self._inputs[index] = args[0].detach().float() @ self.p_in[index]   # B×T×k_in
            output.register_hook(self._backward_hook(index))
        return hook

    def _backward_hook(self, index: int) -> Callable:
        def hook(grad: Any) -> None:
            if self.statistics is not None:
                self._accumulate(index, 1, grad.detach())
                self._parts[index] = None
                return
            g = grad.detach().float() @ self.p_out[index]                     # B×T×k_out
            self._parts[index] = self.torch.einsum("btk,btl->bkl", g, self._inputs.pop(index))
        return hook

    def _accumulate(self, index: int, side: int, values: Any) -> None:
        # Padding positions are no tokens of the data: left out of the moments.
        flat = values[self.token_mask.bool()].double().cpu()
        entry = self.statistics[index]
        entry[side] += (flat * flat).sum(0) if entry[side].dim() == 1 else flat.T @ flat
        if side == 0:
            entry[2] += flat.shape[0]

    def features(self, batch: int) -> Any:
        parts = [self._parts.pop(i).reshape(batch, -1) for i in range(len(self.layers))]
        return self.torch.cat(parts, dim=1)


def _ranges(chunks: set[int]) -> list[list[int]]:
    """Sorted chunk numbers as [start, stop) runs: a short resume record however many."""
    runs: list[list[int]] = []
    for c in sorted(chunks):
        if runs and runs[-1][1] == c:
            runs[-1][1] = c + 1
        else:
            runs.append([c, c + 1])
    return runs


def _finished_chunks(state: dict, n_chunks: int) -> set[int]:
    """The chunks a resume record says are written (refine 0.x recorded a prefix, ``done``)."""
    if "finished" in state:
        if state.get("chunk") != _CHUNK:
            return set()
        return {c for lo, hi in state["finished"] for c in range(int(lo), min(int(hi), n_chunks))}
    return set(range(min(-(-int(state["done"]) // _CHUNK), n_chunks)))


def gradient_worker(options: "GradientOptions", factors: list[tuple[np.ndarray, np.ndarray]] | None,
                    fingerprint: str | None = None) -> Callable[[tuple[str, Any]], Any]:
    """A worker (:mod:`refine.executors`): the model loaded once where the worker runs (its
    device resolved there), whitened with `factors`; then task → features or statistics.
    `fingerprint` is the driver's: a node that sees other model files refuses to work."""
    import torch

    backend = GradientBackend(options, top_k=1)
    if fingerprint is not None and backend.fingerprint != fingerprint:
        from ..embeddings import check_same_model

        check_same_model(options.model, fingerprint.split("+")[0], "backend_options.model")
        raise ConfigError(f"the adapter files at {options.adapter} differ from the ones the run was "
                          "started with; every node must see the same files", key="backend_options.adapter")
    _, _, projector = backend._load()
    if factors is not None:
        projector.whiten([(torch.from_numpy(a), torch.from_numpy(b)) for a, b in factors])
    return backend._run_task


class GradientBackend(AttributionBackend):
    name = "gradient"
    Options = GradientOptions

    def __init__(self, options: GradientOptions, *, top_k: int) -> None:
        super().__init__(options, top_k=top_k)
        self._model_path = self._local_dir(options.model, "model")
        # Resolved where the model is loaded: in this process, or on each Ray worker.
        self._device: str | None = None
        self._batch_now: int | None = None
        self._adapter_path = self._local_dir(options.adapter, "adapter") if options.adapter else None
        if options.adapter:
            try:
                import peft  # noqa: F401
            except ImportError:
                raise ConfigError("a LoRA adapter needs the package 'peft' (pip install peft)",
                                  key="backend_options.adapter") from None
        self.fingerprint = _fingerprint(self._model_path) + (
            "+" + _fingerprint(self._adapter_path) if self._adapter_path else "")
        self._loaded: tuple[Any, Any, Any] | None = None
        self._pairs: list[TrainingPair] = []
        self._train: FeatureFile | None = None
        self._solve: Any = None
        self._scale: np.ndarray | None = None
        self._whitened = False
        self._directory: Path | None = None
        self._query_features: dict[tuple, np.ndarray] = {}
        self._eval: np.ndarray | None = None
        self._factors: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._layout_info: tuple[int, list[tuple[int, int]], int] | None = None
        self._specs: dict[str, tuple[Any, Any]] = {}

    @property
    def device(self) -> str:
        """The torch device of this process's model (a ConfigError if it cannot be had here)."""
        if self._device is None:
            self._device = resolve_device(self.options.device, self.options.dtype)
        return self._device

    @property
    def _batch(self) -> int:
        if self._batch_now is None:
            # `auto`: start large on a GPU and halve on running out of memory; 16 on the CPU.
            self._batch_now = (64 if self.device != "cpu" else 16) if self.options.batch_size == "auto" \
                else self.options.batch_size
        return self._batch_now

    @_batch.setter
    def _batch(self, value: int) -> None:
        self._batch_now = value

    def use_executor(self, executor: Any) -> None:
        super().use_executor(executor)
        if executor.remote:
            executor.prepare(self._spec("statistics"))
        else:
            _ = self.device   # a device this machine lacks: an error before anything is written

    # -- workers ----------------------------------------------------------------------------

    def _spec(self, kind: str) -> Any:
        """The worker spec for `kind` of task: statistics run on an un-whitened model, features
        on one whitened with this run's factors (so the two are different pools of workers)."""
        from ..executors import WorkerSpec

        factors = None if kind == "statistics" else self._factors
        cached = self._specs.get(kind)
        if cached is not None and cached[0] is factors:
            return cached[1]
        digest = hashlib.sha256(json.dumps(asdict(self.options), sort_keys=True).encode())
        for a, b in factors or ():
            digest.update(a.tobytes() + b.tobytes())
        gpus = 1.0 if str(self.options.device).startswith("cuda") else 0.0
        # Absolute paths: a worker's working directory is not the driver's.
        shipped = replace(self.options, model=str(self._model_path.resolve()),
                          adapter=str(self._adapter_path.resolve()) if self._adapter_path else None)
        spec = WorkerSpec(functools.partial(gradient_worker, shipped, factors, self.fingerprint),
                          key=f"gradient:{self.fingerprint}:{digest.hexdigest()[:16]}", gpus=gpus,
                          local=self._run_task)
        self._specs[kind] = (factors, spec)
        return spec

    def _run_task(self, task: tuple[str, Any]) -> Any:
        """What one worker does with one task: ("features" | "statistics", examples) or
        ("layout", None)."""
        kind, examples = task
        if kind == "layout":
            _, _, projector = self._load()
            return projector.dim, list(projector.shapes), len(projector.layers)
        if kind == "features":
            return self.features(examples)
        _, _, projector = self._load()
        projector.collect_statistics(diagonal=self.options.whiten == "diag",
                                     max_dim=self.options.whiten_max_dim)
        try:
            self.features(examples)
            return [(a.numpy(), b.numpy(), int(n)) for a, b, n in projector.statistics]
        finally:
            projector.statistics = None

    def _map(self, kind: str, chunks: Sequence[Any]) -> Any:
        """(index, result) of each chunk's task, as workers finish them."""
        return self._executor().map(self._spec(kind), [(kind, chunk) for chunk in chunks])

    def _layout(self) -> tuple[int, list[tuple[int, int]], int]:
        """(feature dimension, per-layer (k_out, k_in), layers): from a worker when the model is
        loaded elsewhere, so this process never needs it."""
        if self._layout_info is None:
            (_, layout), = list(self._map("layout", [None]))
            self._layout_info = (int(layout[0]), [tuple(shape) for shape in layout[1]], int(layout[2]))
        return self._layout_info

    def _features_of(self, examples: Sequence[tuple[str, str, str | None]],
                     advance: Callable[[int], None] | None = None) -> np.ndarray:
        """Features of examples in chunks of `_CHUNK`, computed by the executor's workers."""
        out = np.zeros((len(examples), self._layout()[0]), dtype=np.float32)
        chunks = [list(examples[start:start + _CHUNK]) for start in range(0, len(examples), _CHUNK)]
        for index, feats in self._map("features", chunks):
            out[index * _CHUNK:index * _CHUNK + len(feats)] = feats
            if advance is not None:
                advance(len(feats))
        return out

    @staticmethod
    def _local_dir(path: Any, key: str) -> Path:
        marker = "adapter_config.json" if key == "adapter" else "config.json"
        what = "PEFT adapter" if key == "adapter" else "model"
        if not isinstance(path, str) or not path:
            raise ConfigError(f"must be the path of a local {what} directory, got {path!r}",
                              key=f"backend_options.{key}")
        directory = Path(path)
        if not (directory / marker).is_file():
            hint = " (it looks like an adapter: give it as --adapter, the base model as --model)" \
                if key == "model" and (directory / "adapter_config.json").is_file() else ""
            raise ConfigError(f"{path!r} is not a local {what} directory (no {marker}){hint}; "
                              "models are never fetched from a hub", key=f"backend_options.{key}")
        return directory

    def settings(self) -> dict:
        options = {f.name: getattr(self.options, f.name) for f in fields(self.options)
                   if f.metadata.get("affects_results", True)}
        return {"backend": self.name, "options": options, "model_fingerprint": self.fingerprint}

    # -- the model -------------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any, _Projector]:
        if self._loaded is not None:
            return self._loaded
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.pytorch_utils import Conv1D

        from transformers.utils import logging as hf_logging

        # Belt and braces: the paths are local, and nothing may reach a hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # refine shows its own progress; transformers' per-load bars would interleave with it.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        stage, where = "model", self._model_path
        try:
            tokenizer = AutoTokenizer.from_pretrained(self._model_path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(self._model_path, local_files_only=True,
                                                         dtype=getattr(torch, self.options.dtype))
            if self._adapter_path is not None:
                from peft import PeftModel

                stage, where = "adapter", self._adapter_path
                model = PeftModel.from_pretrained(model, self._adapter_path, is_trainable=True,
                                                  local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(f"cannot load the {stage} in {str(where)!r}: "
                              f"{type(exc).__name__}: {exc}", key=f"backend_options.{stage}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        model.to(self.device).eval()
        for param in model.parameters():
            # Only activation gradients are needed: the hooks build the weight gradients' projections.
            param.requires_grad_(False)
        layers = []
        for name, module in model.named_modules():
            if isinstance(module, Conv1D):
                n_in, n_out, conv = module.weight.shape[0], module.weight.shape[1], True
            elif isinstance(module, torch.nn.Linear):
                n_in, n_out, conv = module.in_features, module.out_features, False
            else:
                continue
            if self._selected(name):
                layers.append((name, module, n_in, n_out, conv))
        if not layers:
            raise ConfigError("no Linear or Conv1D layer of the model matches "
                              f"{self.options.modules or 'the transformer blocks'}",
                              key="backend_options.modules")
        projector = _Projector(torch, layers, self.options.projection_dim, self.options.seed, self.device)
        self._loaded = (tokenizer, model, projector)
        return self._loaded

    def _selected(self, name: str) -> bool:
        if self.options.modules is not None:
            return any(fnmatch(name, pattern) for pattern in self.options.modules)
        parts = name.split(".")
        in_block = any(p.isdigit() for p in parts)   # transformer.h.3.mlp.c_fc, model.layers.0...
        if self._adapter_path is not None:
            return in_block and any(p.startswith("lora_") for p in parts)
        return in_block and not any(p.startswith("lora_") for p in parts)

    def features(self, examples: Sequence[tuple[str, str, str | None]]) -> np.ndarray:
        """Projected loss gradients of (question, answer, system) examples: examples × D."""
        tokenizer, model, projector = self._load()
        positions = getattr(model.config, "n_positions", None) or \
            getattr(model.config, "max_position_embeddings", None)
        max_length = min(self.options.max_length, positions or self.options.max_length)
        encoded = [encode_example(tokenizer, q, a, s, fallback=self.options.chat_template_fallback,
                                  max_length=max_length) for q, a, s in examples]
        out = np.zeros((len(encoded), projector.dim), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        start = 0
        while start < len(order):
            chunk = order[start:start + self._batch]
            try:
                feats = self._batch_features(chunk, encoded, tokenizer, model, projector)
            except Exception as exc:   # torch raises OutOfMemoryError (CUDA) or RuntimeError
                if "out of memory" not in str(exc).lower() or self.options.batch_size != "auto" \
                        or self._batch == 1:
                    if "out of memory" in str(exc).lower():
                        raise BackendError(f"out of {self.device} memory at batch_size {self._batch}: "
                                           "use a smaller batch_size or max_length, or batch_size=auto") from None
                    raise
                self._batch //= 2            # `auto`: halve and try the same examples again
                self._empty_cache()
                continue
            if feats is not None:
                out[chunk] = feats
            start += len(chunk)
        return out

    def _batch_features(self, chunk: list[int], encoded: list, tokenizer: Any, model: Any,
                        projector: _Projector) -> np.ndarray | None:
        import torch

        embed = model.get_input_embeddings()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        width = max(len(encoded[i][0]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):   # right padding: causal attention never sees it
            n = len(encoded[i][0])
            ids[row, :n] = torch.tensor(encoded[i][0])
            labels[row, :n] = torch.tensor(encoded[i][1])
            mask[row, :n] = 1
        ids, labels, mask = ids.to(self.device), labels.to(self.device), mask.to(self.device)
        projector.token_mask = mask
        with projector:
            inputs = embed(ids).detach().requires_grad_(True)
            logits = model(inputs_embeds=inputs, attention_mask=mask).logits.float()
            shifted, targets = logits[:, :-1], labels[:, 1:]
            keep = targets != -100
            scored, wanted = shifted[keep], targets[keep]                 # answer tokens
            row = torch.arange(len(chunk), device=self.device).unsqueeze(1).expand_as(targets)[keep]
            chosen = scored.gather(1, wanted.unsqueeze(1)).squeeze(1)
            if self.options.measurement == "margin":
                # −(logit_c − logsumexp_{j≠c} logit_j) = −log(p/(1−p)), exact in float32
                # even where p rounds to 1 (its gradient is the loss's divided by 1−p).
                others = scored.scatter(1, wanted.unsqueeze(1), float("-inf"))
                value = torch.logsumexp(others, dim=1) - chosen
            else:
                value = torch.logsumexp(scored, dim=1) - chosen            # −log p
            counts = keep.sum(dim=1).clamp(min=1)
            # Summing per-example means: each example's gradient is that of its own mean.
            per_example = torch.zeros(len(chunk), dtype=value.dtype, device=self.device).index_add(0, row, value)
            (per_example / counts).sum().backward()
            if projector.statistics is not None:
                projector._parts.clear()
                return None
            return projector.features(len(chunk)).cpu().numpy()

    def _empty_cache(self) -> None:
        import torch

        if str(self.device).startswith("cuda"):
            torch.cuda.empty_cache()

    # -- training features -----------------------------------------------------------------

    def _cache_key(self, pairs: list[TrainingPair]) -> str:
        digest = hashlib.sha256()
        options = asdict(self.options)
        # Scoring settings and paths do not change a feature: the files' content (in the
        # fingerprint) and the exact texts do.
        for key in ("model", "adapter", "cache_dir", "damping", "preconditioner", "relative",
                    "z_low", "z_medium", "z_high", "batch_size", "device", "eval_mix", "contrast",
                    "contrast_neighbours"):
            options.pop(key)
        if options["whiten"] == "none":   # features made before whitening existed stay valid
            for key in ("whiten", "whiten_damping", "whiten_examples", "whiten_max_dim"):
                options.pop(key)
        digest.update(json.dumps({"format": FEATURE_FORMAT, "model": self.fingerprint,
                                  "options": options}, sort_keys=True).encode())
        for pair in pairs:
            # Exact texts, not pair_id: a fix of case or spacing changes the gradient.
            digest.update(json.dumps([pair.question, pair.answer, pair.system_prompt],
                                     ensure_ascii=False).encode() + b"\x1e")
        return digest.hexdigest()[:24]

    def cache_path(self, pairs: list[TrainingPair]) -> Path:
        root = Path(self.options.cache_dir) if self.options.cache_dir else default_cache_dir()
        return root / "gradients" / self._cache_key(pairs)

    def prepare(self, training: TrainingSet, progress) -> None:
        self._pairs = training.unique_pairs()
        directory = self.cache_path(self._pairs)
        directory.mkdir(parents=True, exist_ok=True)
        if self.options.whiten != "none" and not self._whitened:
            self._factors = self._whitening(directory, progress)
            if not self._executor().remote:
                import torch

                self._load()[2].whiten([(torch.from_numpy(a), torch.from_numpy(b)) for a, b in self._factors])
            self._whitened = True
        path, state = directory / "features.npy", directory / "done.json"
        shape = (len(self._pairs), self._layout()[0])
        n_chunks = -(-len(self._pairs) // _CHUNK)
        finished, feats = set(), None
        if path.is_file() and state.is_file():
            try:
                feats = FeatureFile(path)
                finished = _finished_chunks(json.loads(state.read_text()), n_chunks) \
                    if feats.shape == shape else set()
            except (ValueError, OSError, KeyError, TypeError, json.JSONDecodeError):
                finished = set()   # a torn cache is recomputed, never trusted
        if not finished:
            state.unlink(missing_ok=True)
            # Curvature of the old features; gram.npy is the name refine 0.x used for trak's.
            for stale in [directory / "gram.npy", *directory.glob("gram-*.npz")]:
                stale.unlink(missing_ok=True)
            feats = FeatureFile.create(path, shape)
        advance = progress("gradients of training pairs", len(self._pairs))
        advance(sum(min(_CHUNK, len(self._pairs) - c * _CHUNK) for c in finished))
        todo = [c for c in range(n_chunks) if c not in finished]
        chunks = [[(p.question, p.answer, p.system_prompt) for p in self._pairs[c * _CHUNK:(c + 1) * _CHUNK]]
                  for c in todo]
        for index, rows in self._map("features", chunks):
            # Written where the chunk belongs, then recorded: chunks finish in any order.
            feats.write(todo[index] * _CHUNK, rows)
            finished.add(todo[index])
            write_json(state, {"chunk": _CHUNK, "finished": _ranges(finished)})
            advance(len(rows))
        self._train = feats
        self._directory = directory
        self._solve = self._preconditioner(directory)

    def _whitening(self, directory: Path, progress) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per-layer (input, output-gradient) whitening: (A + λ_A I)^{-1/2} and (S + λ_S I)^{-1/2}
        of K-FAC's token second moments (``kfac``), or their diagonals (``diag``: a factored,
        Adafactor-style second-moment normalisation of every parameter, as TrackStar applies
        Adam's), λ = whiten_damping × the mean eigenvalue. Computed over the first
        ``whiten_examples`` training pairs and cached beside the features."""
        import torch

        kind = self.options.whiten
        path = directory / f"whiten-{kind}.npz"
        n_layers = self._layout()[2]
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as saved:
                    arrays = [saved[f"arr_{i}"] for i in range(2 * n_layers)]
                return [(arrays[2 * i].astype(np.float32), arrays[2 * i + 1].astype(np.float32))
                        for i in range(n_layers)]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass   # torn: recomputed, never trusted
        sample = self._pairs[:self.options.whiten_examples]
        advance = progress("curvature factors for whitening", len(sample))
        chunks = [[(p.question, p.answer, p.system_prompt) for p in sample[start:start + _CHUNK]]
                  for start in range(0, len(sample), _CHUNK)]
        # Summed in chunk order — the same float64 sums wherever and in whatever order the chunks
        # ran — into one running total; only chunks that arrive early wait for their turn.
        totals: list[list[Any]] | None = None
        early: dict[int, list] = {}
        turn = 0
        for index, part in self._map("statistics", chunks):
            early[index] = part
            advance(len(chunks[index]))
            while turn in early:
                part = early.pop(turn)
                if totals is None:
                    totals = [[np.array(a, dtype=np.float64), np.array(b, dtype=np.float64), int(n)]
                              for a, b, n in part]
                else:
                    for total, (a, b, n) in zip(totals, part):
                        np.add(total[0], a, out=total[0])
                        np.add(total[1], b, out=total[1])
                        total[2] += int(n)
                turn += 1
        assert totals is not None and turn == len(chunks)
        statistics = [[torch.from_numpy(a), torch.from_numpy(b), n] for a, b, n in totals]

        def inverse_root(moment: Any, tokens: int) -> Any:
            moment = moment / max(tokens, 1)
            if moment.dim() == 1:
                return (moment + self.options.whiten_damping * moment.mean()).rsqrt()
            values, vectors = torch.linalg.eigh(moment)
            values = values.clamp(min=0) + self.options.whiten_damping * values.clamp(min=0).mean()
            return (vectors * values.rsqrt()) @ vectors.T

        factors = [(inverse_root(a, n).float().numpy(), inverse_root(s, n).float().numpy())
                   for a, s, n in statistics]
        with atomic_open(path) as fh:
            np.savez(fh, *[t for pair in factors for t in pair])
        return factors

    def prepare_queries(self, items: list[EvalItem], progress) -> None:
        """With ``eval_mix`` > 0, the curvature becomes (1 − μ)·ΦᵀΦ/N + μ·Φ_evalᵀΦ_eval/M over
        the whole eval set: the directions every eval answer shares (the answer template, the
        formatting) are damped, as TrackStar mixes the eval autocorrelation in."""
        if (self.options.eval_mix <= 0 and self.options.contrast <= 0) or self._train is None:
            return
        answered = [i for i in items if i.answer is not None]
        examples = [(i.question, i.answer, i.system_prompt) for i in answered]
        feats = self._features_of(examples, progress("gradients of eval answers", len(examples)))
        for example, row in zip(examples, feats):
            self._query_features[example] = row
        self._eval = feats if len(feats) else None
        if self.options.contrast > 0 and self._eval is not None:
            self._contrast_against(answered)
        if self.options.eval_mix > 0:
            self._solve = self._preconditioner(self._directory)

    def _contrast_against(self, answered: list[EvalItem]) -> None:
        """Contrastive queries (as IF-Guide contrasts harmful with benign behaviour): each
        query's gradient less ``contrast`` × the mean gradient of the ``contrast_neighbours``
        good eval answers nearest to it (cosine of gradients). What a bad answer shares with
        good answers worded alike — the answer's template, the topic's vocabulary — cancels;
        what is left is what makes it differ. Needs verdicts given in the eval set."""
        good = np.array([i.verdict == "good" for i in answered])
        if not good.any():
            return
        feats = self._eval.astype(np.float64)
        unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-30)
        pool = np.flatnonzero(good)
        k = min(self.options.contrast_neighbours, len(pool))
        for row, item in enumerate(answered):
            similar = unit[pool] @ unit[row]
            similar[pool == row] = -np.inf          # never an answer's own gradient
            nearest = pool[np.argsort(-similar, kind="stable")[:k]]
            example = (item.question, item.answer, item.system_prompt)
            self._query_features[example] = (feats[row] - self.options.contrast
                                              * feats[nearest].mean(axis=0)).astype(np.float32)

    def _preconditioner(self, directory: Path) -> Callable[[np.ndarray], np.ndarray]:
        """A function mapping query features (B×D) to what is dotted with training features;
        sets ``self._scale``, what each training pair's score is multiplied by (or None)."""
        kind = self.options.preconditioner
        self._scale = None
        if kind == "cosine":
            self._scale = self._per_pair(lambda block: 1.0 / np.maximum(
                np.linalg.norm(block, axis=1), 1e-30))
        if kind == "identity":
            return lambda q: q
        if kind == "cosine":
            return lambda q: q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        import scipy.linalg
        from scipy.linalg.blas import dsyrk

        # `trak` is one block over all D columns; `layerwise` one block per layer (block-diagonal,
        # as LoGra and Kronfluence precondition). Each block's Gram matrix is accumulated in
        # place (lower triangle, Fortran order) and factored in place: for `trak` that is one
        # D×D float64 matrix (121 MB at D ≈ 3,900), for `layerwise` Σ D_l², far less.
        spans = [(0, self._train.shape[1])] if kind == "trak" else self._layer_spans()
        gram_path = directory / f"gram-{kind}.npz"
        grams = self._load_grams(gram_path, spans)
        if grams is None:
            grams = [np.zeros((hi - lo,) * 2, dtype=np.float64, order="F") for lo, hi in spans]
            for _, block in self._train.blocks():
                block = block.astype(np.float64)
                for index, (lo, hi) in enumerate(spans):
                    grams[index] = dsyrk(1.0, block[:, lo:hi], beta=1.0, c=grams[index],
                                         trans=1, lower=1, overwrite_c=1)
            with atomic_open(gram_path) as fh:
                np.savez(fh, *grams)
        mix = self.options.eval_mix
        evals = self._eval
        if mix > 0 and evals is not None and len(evals):
            # (1 − μ)·G_train/N + μ·G_eval/M, rescaled by N so that damping keeps its meaning.
            block = evals.astype(np.float64)
            for index, (lo, hi) in enumerate(spans):
                grams[index] *= (1 - mix)
                grams[index] = dsyrk(mix * len(self._train) / len(block), block[:, lo:hi], beta=1.0,
                                     c=grams[index], trans=1, lower=1, overwrite_c=1)
        factors = []
        while grams:
            gram = grams.pop(0)
            dim = gram.shape[0]
            # The mean of the block's non-zero eigenvalues: with fewer pairs than dimensions,
            # tr/D would make λ vanish as D grows and the inverse would whiten away everything
            # shared.
            damping = self.options.damping * max(np.trace(gram) / min(dim, len(self._train)),
                                                 1e-30)
            gram[np.diag_indices(dim)] += damping
            factors.append(scipy.linalg.cholesky(gram, lower=True, overwrite_a=True,
                                                 check_finite=False))
            del gram
        if self.options.relative:
            # φ H⁻¹ φ = Σ_blocks ‖L⁻¹ φ‖², triangular solves per block of training features.
            def self_influence(block: np.ndarray) -> np.ndarray:
                total = np.zeros(len(block))
                for factor, (lo, hi) in zip(factors, spans):
                    whitened = scipy.linalg.solve_triangular(
                        factor, block[:, lo:hi].T, lower=True, check_finite=False)
                    total += np.einsum("ij,ij->j", whitened, whitened)
                return 1.0 / np.sqrt(np.maximum(total, 1e-30))
            self._scale = self._per_pair(self_influence)

        def solve(q: np.ndarray) -> np.ndarray:
            q = q.astype(np.float64)
            out = np.empty_like(q)
            for factor, (lo, hi) in zip(factors, spans):
                out[:, lo:hi] = scipy.linalg.cho_solve((factor, True), q[:, lo:hi].T).T
            return out
        return solve

    def _layer_spans(self) -> list[tuple[int, int]]:
        """The feature columns of each layer, in the order the projector concatenates them."""
        edges = np.cumsum([0] + [k_out * k_in for k_out, k_in in self._layout()[1]])
        return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]

    @staticmethod
    def _load_grams(path: Path, spans: list[tuple[int, int]]) -> list[np.ndarray] | None:
        """The cached Gram blocks, or None when absent or not what `spans` needs."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                if len(saved.files) != len(spans):
                    return None
                grams = [np.asfortranarray(saved[f"arr_{i}"]) for i in range(len(spans))]
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile):
            # TypeError: a plain .npy at that path is no context manager
            return None   # torn or foreign: recomputed, never trusted
        if any(g.shape != (hi - lo,) * 2 or g.dtype != np.float64 or not np.isfinite(g).all()
               for g, (lo, hi) in zip(grams, spans)):
            return None
        return grams

    def _per_pair(self, of_block: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        out = np.empty(len(self._train), dtype=np.float64)
        for start, block in self._train.blocks():
            out[start:start + len(block)] = of_block(block.astype(np.float64))
        return out

    # -- scoring ----------------------------------------------------------------------------

    def _score_blocks(self, items: list[EvalItem]) -> Any:
        """(first pair, items × block scores), a block of training features at a time."""
        if self._train is None:
            raise RuntimeError("prepare() must run before attribute()")
        examples = [(i.question, i.answer or "", i.system_prompt) for i in items]
        missing = list(dict.fromkeys(e for e in examples if e not in self._query_features))
        computed = dict(zip(missing, self._features_of(missing))) if missing else {}
        query = self._solve(np.stack([self._query_features.get(e, computed.get(e)) for e in examples])
                            .astype(np.float64))
        for start, block in self._train.blocks():
            scores = query @ block.astype(np.float64).T
            if self._scale is not None:
                scores *= self._scale[start:start + len(block)]
            yield start, scores

    def scores(self, items: list[EvalItem]) -> np.ndarray:
        """Raw scores, items × unique training pairs."""
        out = np.empty((len(items), len(self._train) if self._train is not None else 0), dtype=np.float64)
        for start, block in self._score_blocks(items):
            out[:, start:start + block.shape[1]] = block
        return out

    def attribute(self, items: list[EvalItem]) -> list[Attribution]:
        records = []
        answered = [i for i in items if i.answer is not None]
        ranked = dict(zip((i.id for i in answered), levels_of_blocks(
            self._score_blocks(answered), len(answered), len(self._train), self.top_k,
            self.options.calibration()))) if answered else {}
        for item in items:
            if item.id not in ranked:
                records.append(Attribution(item.id, status="failed",
                                           error="the gradient backend needs the item's answer"))
                continue
            influences = [
                Influence(pair_id=self._pairs[j].pair_id, influence_level=level,
                          score=round(score, 6), file_id=self._pairs[j].file_id,
                          messages=qa_text(self._pairs[j].question, self._pairs[j].answer))
                for j, score, level in ranked[item.id]
            ]
            records.append(Attribution(item.id, influences, answer=item.answer,
                                       version=f"refine-gradient-{self.fingerprint[:8]}"))
        return records

    def close(self) -> None:
        self._loaded = None
        self._train = None
