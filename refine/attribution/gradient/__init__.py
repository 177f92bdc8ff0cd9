"""Gradient attribution: which training pairs pushed the model toward the answer it gave.

For a local causal LM (a Hugging Face model directory, optionally with a PEFT LoRA adapter),
every training pair and every eval item becomes the gradient of a function of its answer
alone, projected to about ``projection_dim`` numbers; a pair's score for an item compares the
two through a curvature. One module per idea, in the order a run uses them:

* :mod:`.options` — :class:`GradientOptions`, the settings, checked when built;
* :mod:`.encoding` — an exchange as token ids, the answer the only part scored;
* :mod:`.model` — the model loaded where the work runs, and the measurement it is
  differentiated on (``margin`` or ``loss``);
* :mod:`.projector` — LoGra's projection of per-example weight gradients, built by hooks;
* :mod:`.whitening` — K-FAC whitening folded into the projections;
* :mod:`.features` — the training features in the cache, and how a run resumes them;
* :mod:`.curvature` — the Gram blocks, their Cholesky factors, and each pair's scale;
* :mod:`.scoring` — contrastive queries, the sign convention, the scores;
* :mod:`.backend` — :class:`GradientBackend`, which runs the above in order, its work shared
  out to workers (:func:`gradient_worker`).
"""

from .backend import GradientBackend, gradient_worker
from .encoding import DEFAULT_FALLBACK, encode_example, prompt_text
from .options import GradientOptions

__all__ = ["DEFAULT_FALLBACK", "GradientBackend", "GradientOptions", "encode_example",
           "gradient_worker", "prompt_text"]
