"""``MotorItemEmbedding``: a drop-in for the ``nn.Embedding(n_items, d)`` item ID table.

* ``.weight`` -> (n_items, d) tensor computed by the Token Cross Network, with autograd.
* ``forward(idx)`` / ``__call__(idx)`` -> ``weight[idx]``, shape ``idx.shape + (d,)``: read from the
  step's cached table when there is one, else computed for those rows alone (:meth:`rows`: the network
  on the distinct items of ``idx``), so a backbone that reads only its batch's items (BPR) never builds
  the whole table and its step costs the same at any catalogue size.
* ``num_embeddings`` = n_items, ``embedding_dim`` = d, ``padding_idx`` = ``max_norm`` = None.

Caching. Backbones read ``.weight`` 2-4 times per forward (FREEDOM 2, MGCN 3, SMORE 4); the network
runs once and the result is reused while all of the following hold:

* the key is unchanged: for every parameter and buffer (identity, ``_version``, data pointer,
  device, dtype), the global count of optimizer steps (a post-step hook on every torch optimizer:
  fused optimizers do not bump ``_version``), plus ``self.training``, ``torch.is_grad_enabled()`` and
  inference mode. An ``optimizer.step()``, ``load_state_dict`` or ``.to()`` changes the key;
  ``train()``/``eval()`` drop the cache;
* the cached tensor has not been modified in place (its own ``_version``);
* (grad mode) no backward pass has gone through it: a hook on the cached tensor drops it as soon as
  its gradient is computed, because ``backward()`` frees the graph behind it. So two
  loss/backward rounds without an optimizer step in between each get a fresh graph.

Under ``torch.no_grad()`` a valid grad-mode entry is reused detached (same values), otherwise a
no-grad entry is computed and cached separately; it is keyed on the parameter versions, so
evaluation after training steps always sees fresh values.
Limitation: two forwards that share one cached table and are then back-propagated *separately*
(without ``retain_graph=True``) fail like any shared graph would; sum the losses instead.
``n_computations`` counts the network runs over the whole table, ``n_row_computations`` those over
some rows (for tests and profiling).
"""
from __future__ import annotations

import weakref
from typing import Optional, Tuple

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook


# Every optimizer step anywhere bumps this counter, which is part of the cache key. Parameter
# ``_version`` counters alone are not enough: torch's fused Adam/AdamW/SGD update parameters in place
# without bumping them (seen with torch 2.13), which left evaluation reading a stale table.
_OPTIMIZER_STEPS = [0]


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    _OPTIMIZER_STEPS[0] += 1


register_optimizer_step_post_hook(_count_optimizer_step)


def _make_invalidation_hook(module_ref, tensor_ref):
    def _drop_after_backward(grad):
        module, tensor = module_ref(), tensor_ref()
        if module is not None and tensor is not None:
            module._invalidate_grad_slot(tensor)
        return None
    return _drop_after_backward


class MotorItemEmbedding(nn.Module):
    """Item table (n_items, d) computed from item tokens by a :class:`~.tcn.TokenCrossNetwork`.

    Args:
        network: the token network, any module with ``num_items``, ``dim`` and ``network()`` ->
            (n_items, d) (this module does not import :mod:`.tcn`: it only calls the network).
        cache: reuse ``.weight`` within a step (see module docstring). False = recompute every read.
    """

    def __init__(self, network: nn.Module, cache: bool = True):
        super().__init__()
        self.tcn = network
        self.num_embeddings = int(network.num_items)
        self.embedding_dim = int(network.dim)
        self.padding_idx = None
        self.max_norm = None
        self.cache_enabled = bool(cache)
        self.n_computations = 0
        self.n_row_computations = 0
        # slot per grad mode: (key, tensor, tensor_version)
        self._slots = {}

    # -- cache ----------------------------------------------------------------------------------
    def _key(self) -> Tuple:
        state = tuple((id(t), t._version, t.data_ptr(), t.device, t.dtype)
                      for t in list(self.parameters()) + list(self.buffers()))
        return (state, _OPTIMIZER_STEPS[0], self.training, torch.is_inference_mode_enabled())

    def _lookup(self, grad_mode: bool, key) -> Optional[torch.Tensor]:
        slot = self._slots.get(grad_mode)
        if slot is None:
            return None
        k, tensor, version = slot
        if k != key or tensor._version != version:
            self._slots.pop(grad_mode, None)
            return None
        return tensor

    def _invalidate_grad_slot(self, tensor: torch.Tensor) -> None:
        slot = self._slots.get(True)
        if slot is not None and slot[1] is tensor:
            self._slots.pop(True, None)

    def clear_cache(self) -> None:
        """Drop cached tables (not needed in normal use)."""
        self._slots = {}

    def compute(self) -> torch.Tensor:
        """Run the network (no caching): (n_items, d)."""
        self.n_computations += 1
        return self.tcn()

    @property
    def weight(self) -> torch.Tensor:
        """The full item table (n_items, d), computed at most once per optimisation step."""
        if not self.cache_enabled:
            return self.compute()
        grad_mode = torch.is_grad_enabled()
        key = self._key()
        hit = self._lookup(grad_mode, key)
        if hit is not None:
            return hit
        if not grad_mode:
            g = self._lookup(True, key)
            if g is not None:
                return g.detach()
        w = self.compute()
        if grad_mode and w.requires_grad:
            # weak references: the hook must keep neither the table (and its graph) nor the module alive
            w.register_hook(_make_invalidation_hook(weakref.ref(self), weakref.ref(w)))
        self._slots[grad_mode] = (key, w, w._version)
        return w

    # -- nn.Embedding interface -----------------------------------------------------------------
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows of the table: ``weight[idx]`` (idx: LongTensor of any shape) -> idx.shape + (d,); from
        the cached table when this step has one, else :meth:`rows`."""
        if self.cache_enabled:
            grad_mode = torch.is_grad_enabled()
            hit = self._lookup(grad_mode, self._key())
            if hit is not None:
                return hit[idx]
        return self.rows(idx)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """``weight[idx]`` computed from these items' tokens only (the network on the distinct items
        of ``idx``, cost in len(idx), not in n_items): idx.shape + (d,). Counted in ``n_row_computations``."""
        self.n_row_computations += 1
        unique, inverse = torch.unique(idx.reshape(-1), return_inverse=True)
        return self.tcn(unique)[inverse].reshape(*idx.shape, self.embedding_dim)

    def train(self, mode: bool = True):
        # model.train() / model.eval() start a new phase (an epoch, an evaluation): never carry a
        # table across it, whatever changed the parameters in between.
        self._slots = {}
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._slots = {}
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state["_slots"] = {}  # cached tables (with graphs) are neither copied nor pickled
        return state

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, cache={self.cache_enabled}"
