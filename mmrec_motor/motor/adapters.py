"""Per-backbone adapters: where a backbone keeps its item ID table and how MOTOR is swapped in.

Four generic kinds cover MMRec's models (``mmrec-notes.md`` section 5):

* :class:`EmbeddingAdapter` ``(path)``: an ``nn.Embedding`` attribute (dotted path allowed). The
  module is replaced by the :class:`MotorItemEmbedding`, which has ``.weight``/``__call__``.
* :class:`AttributeAdapter` ``(path, aliases=())``: an ``nn.Parameter`` or a plain tensor attribute
  (VBPR ``i_embedding``, LayerGCN ``item_embeddings``, MVGAE ``collaborative``). The attribute is
  removed from the owner (so ``parameters()`` no longer yields it), the MOTOR module is registered on
  the owner as ``motor_items``, and the owner's class is swapped for a dynamic subclass (same name)
  whose property ``<attr>`` returns ``motor_items.weight``. ``aliases`` are further attributes that
  held the same tensor (MVGAE ``c_gcn.features``) and get the same property.
* :class:`JointTableAdapter` ``(path)``: a joint (n_users + n_items, d) table (GRCN
  ``id_gcn.id_embedding`` Parameter, MMGCN ``id_embedding`` plain tensor). Only the item rows
  [n_users:] are replaced: the user rows become the trainable Parameter ``motor_user_rows`` and reads
  return ``cat(motor_user_rows, motor_items.weight)``.
* :class:`ParameterDictAdapter` ``(path, key)``: an entry of an ``nn.ParameterDict`` (LightGCN
  ``embedding_dict['item_emb']``, SELFCFED_LGN ``online_encoder.embedding_dict['item_emb']``). The
  entry is deleted, MOTOR is registered in the dict as the sub-module ``motor_items`` and the dict's
  class is swapped for a subclass whose ``[key]`` returns ``motor_items.weight`` (``key in d`` is
  True; ``keys()``/``values()`` list only the remaining real parameters).

Lookup (:func:`get_adapter`) is by class name along the MRO, so subclasses of a registered backbone
work. Unknown classes fall back to an ``item_id_embedding`` ``nn.Embedding``; otherwise an error names
the class and what was looked for. Backbones without an item ID table (DualGNN, DRAGON, PGL,
ItemKNNCBF) raise :class:`MotorNotApplicableError`. A model with a swapped class can still be saved
with ``state_dict()``; pickling the whole model object is not supported.
"""
from __future__ import annotations

import warnings
from typing import Dict, Tuple

import torch
from torch import nn

MOTOR_ATTR = "motor_items"
USER_ROWS_ATTR = "motor_user_rows"


class MotorNotApplicableError(ValueError):
    """The backbone has no item ID table for MOTOR to replace."""


class AlreadyMotorizedError(ValueError):
    """motorize() was called twice on one model."""


def _resolve(model: nn.Module, path: str) -> Tuple[object, str]:
    """(owner object, attribute name) of a dotted path; AttributeError naming the path if absent."""
    parts = path.split(".")
    obj = model
    for i, p in enumerate(parts[:-1]):
        if not hasattr(obj, p):
            raise AttributeError(f"{type(model).__name__} has no attribute {'.'.join(parts[:i + 1])!r}")
        obj = getattr(obj, p)
    if not hasattr(obj, parts[-1]):
        raise AttributeError(f"{type(model).__name__} has no attribute {path!r}")
    return obj, parts[-1]


def _get(model: nn.Module, path: str):
    owner, name = _resolve(model, path)
    return getattr(owner, name)


def _remove_attribute(owner: object, name: str) -> None:
    if isinstance(owner, nn.Module):
        for store in (owner._parameters, owner._buffers, owner._modules):
            if name in store:
                del store[name]
                return
    if name in owner.__dict__:
        del owner.__dict__[name]


def _swap_class(owner: object, namespace: Dict[str, object]) -> None:
    """Give ``owner`` a dynamic subclass of its class (same name) with extra attributes."""
    cls = type(owner)
    new = type(cls.__name__, (cls,), dict(namespace, __module__=cls.__module__,
                                          __qualname__=cls.__qualname__, _motor_swapped=True))
    owner.__class__ = new


def _read_only(name: str):
    def _set(self, value):
        raise AttributeError(f"{name} is provided by MOTOR (token network) and cannot be assigned")
    return _set


def _check_not_motorized(value, path: str) -> None:
    from .item_embedding import MotorItemEmbedding
    if isinstance(value, MotorItemEmbedding):
        raise AlreadyMotorizedError(f"{path} is already a MotorItemEmbedding: motorize() was called twice")


class Adapter:
    """Interface: locate the item table, count its parameters, install a MOTOR module in its place."""

    kind = "abstract"
    path = ""

    def item_table(self, model: nn.Module) -> torch.Tensor:
        """The current item rows, (n_items, d) (for shape, device, dtype and the parameter count)."""
        raise NotImplementedError

    def param_count(self, model: nn.Module) -> int:
        return int(self.item_table(model).numel())

    def extra_param_count(self, model: nn.Module) -> int:
        """Parameters the swap adds besides MOTOR's (user rows of a joint table); 0 by default."""
        return 0

    def install(self, model: nn.Module, motor: nn.Module) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind}:{self.path}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class EmbeddingAdapter(Adapter):
    """An ``nn.Embedding`` attribute, replaced by the MOTOR module."""

    kind = "embedding"

    def __init__(self, path: str):
        self.path = path

    def _module(self, model):
        value = _get(model, self.path)
        _check_not_motorized(value, self.path)
        if not isinstance(value, nn.Embedding):
            raise TypeError(f"{type(model).__name__}.{self.path} is a {type(value).__name__}, expected "
                            f"nn.Embedding")
        return value

    def item_table(self, model):
        return self._module(model).weight

    def install(self, model, motor):
        self._module(model)
        owner, name = _resolve(model, self.path)
        setattr(owner, name, motor)


class AttributeAdapter(Adapter):
    """An ``nn.Parameter`` or plain-tensor attribute, served by a property after the swap."""

    kind = "attribute"

    def __init__(self, path: str, aliases: Tuple[str, ...] = ()):
        self.path, self.aliases = path, tuple(aliases)

    def item_table(self, model):
        owner, name = _resolve(model, self.path)
        if getattr(type(owner), "_motor_swapped", False) and hasattr(owner, MOTOR_ATTR):
            raise AlreadyMotorizedError(f"{self.path}: motorize() was called twice")
        value = getattr(owner, name)
        if not isinstance(value, torch.Tensor) or value.dim() != 2:
            raise TypeError(f"{type(model).__name__}.{self.path}: expected a 2-D tensor/Parameter "
                            f"(n_items, d), got {type(value).__name__} "
                            f"{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}")
        return value

    def install(self, model, motor):
        self.item_table(model)
        owner, name = _resolve(model, self.path)
        _remove_attribute(owner, name)
        owner.add_module(MOTOR_ATTR, motor)
        _swap_class(owner, {name: property(lambda self: getattr(self, MOTOR_ATTR).weight, _read_only(name))})
        for alias in self.aliases:
            try:
                a_owner, a_name = _resolve(model, alias)
            except AttributeError:
                warnings.warn(f"MOTOR: {type(model).__name__}.{alias} not found; only {self.path} "
                              f"reads the MOTOR table", stacklevel=3)
                continue
            _remove_attribute(a_owner, a_name)
            # a plain (unregistered) reference: the parameters stay registered once, on `owner`
            object.__setattr__(a_owner, "_motor_alias_target", motor)
            _swap_class(a_owner, {a_name: property(lambda self: self._motor_alias_target.weight,
                                                   _read_only(a_name))})

    def describe(self):
        return f"{self.kind}:{self.path}" + (f" (+ {', '.join(self.aliases)})" if self.aliases else "")


class JointTableAdapter(Adapter):
    """A joint (n_users + n_items, d) table; only rows [n_users:] become MOTOR.

    Reads after the swap return ``torch.cat([motor_user_rows, motor_items.weight])``; the user rows
    are a trainable ``nn.Parameter`` initialised from the original rows.
    """

    kind = "joint"

    def __init__(self, path: str):
        self.path = path

    def n_users(self, model, full: torch.Tensor) -> int:
        U = getattr(model, "n_users", None)
        if U is None:
            I = getattr(model, "n_items", None)
            if I is None:
                raise AttributeError(f"{type(model).__name__}: need n_users or n_items to split the joint "
                                     f"table {self.path} of shape {tuple(full.shape)}")
            U = full.shape[0] - int(I)
        return int(U)

    def _full(self, model):
        value = _get(model, self.path)
        if not isinstance(value, torch.Tensor) or value.dim() != 2:
            raise TypeError(f"{type(model).__name__}.{self.path}: expected a 2-D (n_users + n_items, d) "
                            f"tensor, got {type(value).__name__}")
        owner, _ = _resolve(model, self.path)
        if hasattr(owner, MOTOR_ATTR):
            raise AlreadyMotorizedError(f"{self.path}: motorize() was called twice")
        return value

    def item_table(self, model):
        full = self._full(model)
        return full[self.n_users(model, full):]

    def extra_param_count(self, model):
        full = self._full(model)
        return self.n_users(model, full) * int(full.shape[1])

    def install(self, model, motor):
        full = self._full(model)
        U = self.n_users(model, full)
        owner, name = _resolve(model, self.path)
        user_rows = nn.Parameter(full[:U].detach().clone())
        _remove_attribute(owner, name)
        owner.register_parameter(USER_ROWS_ATTR, user_rows)
        owner.add_module(MOTOR_ATTR, motor)
        _swap_class(owner, {name: property(
            lambda self: torch.cat([getattr(self, USER_ROWS_ATTR), getattr(self, MOTOR_ATTR).weight], 0),
            _read_only(name))})


class ParameterDictAdapter(Adapter):
    """An entry ``key`` of an ``nn.ParameterDict`` at ``path``."""

    kind = "parameterdict"

    def __init__(self, path: str, key: str):
        self.path, self.key = path, key

    def _dict(self, model):
        pd = _get(model, self.path)
        if not isinstance(pd, nn.ParameterDict):
            raise TypeError(f"{type(model).__name__}.{self.path}: expected nn.ParameterDict, got "
                            f"{type(pd).__name__}")
        if hasattr(pd, MOTOR_ATTR) and getattr(type(pd), "_motor_swapped", False):
            raise AlreadyMotorizedError(f"{self.path}[{self.key!r}]: motorize() was called twice")
        if self.key not in pd:
            raise KeyError(f"{type(model).__name__}.{self.path} has no entry {self.key!r} "
                           f"(has {list(pd.keys())})")
        return pd

    def item_table(self, model):
        return self._dict(model)[self.key]

    def install(self, model, motor):
        pd = self._dict(model)
        key, base = self.key, type(pd)
        del pd[key]
        pd.add_module(MOTOR_ATTR, motor)

        def __getitem__(self, k):
            if k == key:
                return getattr(self, MOTOR_ATTR).weight
            return base.__getitem__(self, k)

        def __contains__(self, k):
            return k == key or base.__contains__(self, k)

        _swap_class(pd, {"__getitem__": __getitem__, "__contains__": __contains__})

    def describe(self):
        return f"{self.kind}:{self.path}[{self.key!r}]"


class RefusedAdapter(Adapter):
    """A backbone without an item ID table: every use raises MotorNotApplicableError."""

    kind = "refused"

    def __init__(self, reason: str):
        self.reason = reason

    def _raise(self, model):
        name = type(model).__name__
        raise MotorNotApplicableError(
            f"{name} has no item ID embedding table: {self.reason}. --motor replaces the item ID table "
            f"with token embeddings, so it does not apply to {name}; run {name} without --motor.")

    def item_table(self, model):
        self._raise(model)

    def install(self, model, motor):
        self._raise(model)

    def describe(self):
        return f"refused: {self.reason}"


_ID_EMB = "item_id_embedding"
_REGISTRY: Dict[str, Adapter] = {}


def register_adapter(name: str, adapter: Adapter, overwrite: bool = True) -> None:
    """Register how MOTOR is swapped into backbone class ``name`` (e.g. ``EmbeddingAdapter('items')``)."""
    if not isinstance(adapter, Adapter):
        raise TypeError(f"adapter must be an Adapter (EmbeddingAdapter, AttributeAdapter, "
                        f"JointTableAdapter, ParameterDictAdapter, RefusedAdapter), got {type(adapter).__name__}")
    if not overwrite and name in _REGISTRY:
        raise KeyError(f"an adapter for {name!r} is already registered")
    _REGISTRY[name] = adapter


def registered_adapters() -> Dict[str, Adapter]:
    return dict(_REGISTRY)


for _name in ("FREEDOM", "BM3", "LATTICE", "MGCN", "LGMRec", "SMORE", "DAMRS", "MMGCF"):
    register_adapter(_name, EmbeddingAdapter(_ID_EMB))
register_adapter("SLMRec", EmbeddingAdapter("embedding_item"))
register_adapter("BPR", EmbeddingAdapter("item_embedding"))
register_adapter("VBPR", AttributeAdapter("i_embedding"))
register_adapter("LayerGCN", AttributeAdapter("item_embeddings"))
# MVGAE hands `collaborative` to c_gcn at construction (GCN.features): both must read MOTOR.
register_adapter("MVGAE", AttributeAdapter("collaborative", aliases=("c_gcn.features",)))
register_adapter("GRCN", JointTableAdapter("id_gcn.id_embedding"))
register_adapter("MMGCN", JointTableAdapter("id_embedding"))
register_adapter("LightGCN", ParameterDictAdapter("embedding_dict", "item_emb"))
register_adapter("SELFCFED_LGN", ParameterDictAdapter("online_encoder.embedding_dict", "item_emb"))
register_adapter("DualGNN", RefusedAdapter(
    "its items are represented only by per-modality MLPs over the features (weight_i is used only in "
    "a regulariser)"))
register_adapter("DRAGON", RefusedAdapter(
    "its items are the concatenated per-modality MLP(features), propagated over the user-item and "
    "item-item graphs"))
register_adapter("PGL", RefusedAdapter(
    "its items are cat(normalize(image_trs(v)), normalize(text_trs(t))), built from features only"))
register_adapter("POP", RefusedAdapter(
    "it is not trained (req_training: False) and ranks items by their training interactions"))
register_adapter("ContentKNN", RefusedAdapter(
    "it is not trained (req_training: False) and ranks items by their features' cosine to the user's "
    "mean training item"))
register_adapter("ItemKNNCBF", RefusedAdapter(
    "it is not trained (req_training: False) and scores items by k-NN over content features"))


def get_adapter(model: nn.Module) -> Adapter:
    """The adapter for ``model``: by class name along its MRO, else the ``item_id_embedding`` default.

    Raises MotorNotApplicableError for backbones without an item ID table, and ValueError for an
    unknown class without an ``item_id_embedding`` nn.Embedding.
    """
    for cls in type(model).__mro__:
        adapter = _REGISTRY.get(cls.__name__)
        if adapter is not None:
            if isinstance(adapter, RefusedAdapter):
                adapter._raise(model)
            return adapter
    if isinstance(getattr(model, _ID_EMB, None), nn.Embedding):
        return EmbeddingAdapter(_ID_EMB)
    name = type(model).__name__
    raise ValueError(
        f"--motor does not know backbone {name!r}: no adapter is registered for it and it has no "
        f"{_ID_EMB!r} nn.Embedding attribute (looked for: registered class names "
        f"{sorted(k for k, v in _REGISTRY.items() if not isinstance(v, RefusedAdapter))}, then "
        f"{name}.{_ID_EMB}). Register one with register_adapter({name!r}, EmbeddingAdapter('<attr>')) "
        f"or another Adapter kind.")


def item_id_param_count(model: nn.Module, strict: bool = False) -> int:
    """Parameters in the item ID table the adapter would replace (item rows only for joint tables).

    A backbone without an item ID table (DualGNN, DRAGON, PGL, ItemKNNCBF) or an unknown one without
    an ``item_id_embedding`` has 0, unless ``strict`` (then the errors of :func:`get_adapter` raise).
    """
    try:
        adapter = get_adapter(model)
    except (MotorNotApplicableError, ValueError):
        if strict:
            raise
        return 0
    return adapter.param_count(model)
