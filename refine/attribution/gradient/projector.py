"""LoGra's projection of per-example weight gradients, built from hooks on the chosen layers.

For a linear layer with inputs x (T×n) and output gradients g (T×m), an example's weight
gradient is Σ_t g_tᵀ x_t, and its projection through seeded Gaussian P_in (n×k_in),
P_out (m×k_out) is Σ_t (g_t P_out)ᵀ (x_t P_in): k_out·k_in numbers per layer, built from the
hooks' x and g, so no d×k matrix is ever formed. Layers are concatenated; k_in, k_out are
chosen so that the total is about ``projection_dim``. Entries of P are N(0, 1/k), so projected
inner products estimate the true ones.

The same hooks can instead sum each layer's input and output-gradient second moments over
tokens (K-FAC's A and S), from which :mod:`.whitening` makes the factors that
:meth:`Projector.whiten` folds into the projections.
"""

from __future__ import annotations

import math
from typing import Any, Callable

__all__ = ["Projector"]


class Projector:
    """Hooks on the chosen layers that turn one backward pass into projected per-example grads.

    `layers` are (name, module, n_in, n_out, is_conv1d); use the projector as a context manager
    around the forward and backward pass, then read :meth:`features`.
    """

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

    def __enter__(self) -> "Projector":
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

    def discard(self) -> None:
        """Forget what the last backward pass left (when it ran for the statistics)."""
        self._parts.clear()

    def features(self, batch: int) -> Any:
        """The last backward pass's projected gradients, batch × dim (a torch tensor)."""
        parts = [self._parts.pop(i).reshape(batch, -1) for i in range(len(self.layers))]
        return self.torch.cat(parts, dim=1)
