"""``motorize(model, config)``: swap MOTOR into a constructed backbone.

Call it after the backbone's ``__init__`` (BPR/VBPR re-initialise every sub-module there) and before
the optimizer is built from ``model.parameters()``. Works on this project's backbones and on upstream
MMRec's model objects alike (only the class name and the item table attribute matter).

Steps:
1. find the adapter for ``type(model).__name__`` (:mod:`.adapters`) and the item table it replaces;
   n_items = ``model.n_items`` (else ``dataset``, else the table's rows), d = the table's width (the
   backbone's ``embedding_size``; SLMRec calls it ``recdim``), device/dtype = the table's;
2. read each modality's features from ``<data_path>/<dataset>/<file>`` (``'v'`` ->
   ``vision_feature_file``, ``'t'`` -> ``text_feature_file``, any other name ``x`` ->
   ``x_feature_file``); a modality whose key is empty or whose file is missing is skipped (warning);
   none left is an error;
3. tokenize each modality through the LMDB :class:`TokenCache` (``motor_cache_dir``);
4. build :class:`TokenCrossNetwork` + :class:`MotorItemEmbedding` on the table's device and install
   it via the adapter;
5. return the report (also set as ``model.motor_report``)::

    {'backbone': 'FREEDOM', 'adapter': 'embedding:item_id_embedding', 'n_items': 7050, 'dim': 64,
     'modalities': ['v', 't'], 'tcn': 'agnostic', 'tcn_layers': 2, 'tcn_rank': 8,
     'tcn_dim': 16,                          # c, token width inside the cross towers (d = none)
     'item_repr_params_id': 451200,          # the replaced table (item rows only for joint tables)
     'item_repr_params_motor': 123456,       # token tables + TCN
     'token_table_params': ..., 'tcn_params': ...,
     'extra_params': 0,                      # user rows made trainable (GRCN/MMGCN joint tables)
     'cache_dir': '/.../motor_cache' or None,
     'tokenizer': {'v': {stats..., 'from_cache': bool, 'seconds': float, 'file': path}, 't': {...}},
     'notes': [...]}
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .adapters import JointTableAdapter, get_adapter
from .cache import TokenCache, cached_tokenize, open_token_cache
from .content import CONTENT_MODES, centred_features
from .fine import auto_nbits, kmeans_cells, own_cells
from .item_embedding import MotorItemEmbedding
from .settings import (config_get, dropout_setting, fine_bits_setting, fine_items_per_cell_setting,
                       fine_own_min_setting, motor_setting, tcn_dim_setting, unseen_neighbours_setting,
                       unseen_norm_setting)
from .tcn import VARIANTS, TokenCrossNetwork, resolve_cross_dim
from .tokenizer import TokenizerParams
from .unseen import training_item_counts, unseen_neighbours, unseen_weights

_MODALITY_FILE_KEYS = {"v": "vision_feature_file", "vision": "vision_feature_file",
                       "image": "vision_feature_file", "t": "text_feature_file",
                       "text": "text_feature_file"}


def optimizer_param_groups(model: torch.nn.Module, config, learning_rate: float,
                           weight_decay: float) -> List[Dict[str, Any]]:
    """The optimizer's parameter groups: MOTOR's own learning rate and weight decay, if set.

    ``[{"params": backbone}, {"params": motor, "lr": motor_learning_rate, "weight_decay":
    motor_weight_decay}]``, where motor = the trainable parameters of every
    :class:`MotorItemEmbedding` in ``model`` (token tables + TCN) and backbone = every other
    trainable parameter; an unset (null) key takes the backbone's value. One group (every
    trainable parameter) when the model has no MOTOR module or neither key is set, so a plain run
    builds the optimizer it always did.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    motor_lr = config_get(config, "motor_learning_rate")
    motor_wd = config_get(config, "motor_weight_decay")
    for key, value in (("motor_learning_rate", motor_lr), ("motor_weight_decay", motor_wd)):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise ValueError(f"config key '{key}' must be a number >= 0 or null, got {value!r}")
    motor_ids = {id(p) for m in model.modules() if isinstance(m, MotorItemEmbedding)
                 for p in m.parameters() if p.requires_grad}
    if not motor_ids or (motor_lr is None and motor_wd is None):
        return [{"params": trainable, "lr": learning_rate, "weight_decay": weight_decay}]
    return [{"params": [p for p in trainable if id(p) not in motor_ids], "lr": learning_rate,
             "weight_decay": weight_decay},
            {"params": [p for p in trainable if id(p) in motor_ids],
             "lr": float(learning_rate if motor_lr is None else motor_lr),
             "weight_decay": float(weight_decay if motor_wd is None else motor_wd)}]


def _per_modality(value: Any, modality: str, key: str) -> Any:
    """A scalar applies to every modality; a dict gives one value per modality name."""
    if isinstance(value, dict):
        if modality not in value:
            raise ValueError(f"{key}: no value for modality {modality!r} in {value}")
        return value[modality]
    return value


def modality_file_key(modality: str) -> str:
    return _MODALITY_FILE_KEYS.get(modality, f"{modality}_feature_file")


def dataset_dir(config) -> str:
    data_path = config_get(config, "data_path")
    dataset = config_get(config, "dataset")
    if data_path is None or dataset is None:
        raise ValueError(f"config needs 'data_path' and 'dataset' to find the feature files (got "
                         f"data_path={data_path!r}, dataset={dataset!r})")
    return os.path.join(str(data_path), str(dataset))


def motor_seed(config) -> int:
    seed = config_get(config, "motor_seed")
    if seed is None:
        seed = config_get(config, "seed", 0)
    if isinstance(seed, (list, tuple)):
        seed = seed[0] if seed else 0
    return int(seed)


def tokenizer_params(config, modality: str) -> TokenizerParams:
    """TokenizerParams of one modality from the motor_* keys (validated)."""
    def get(key):
        return _per_modality(motor_setting(config, key), modality, key)
    return TokenizerParams(quantizer=get("motor_quantizer"), num_subspaces=get("motor_num_subspaces"),
                           nbits=get("motor_nbits"), normalize=get("motor_normalize"),
                           pca_dim=get("motor_pca_dim"), seed=motor_seed(config),
                           max_train_items=get("motor_max_train_items"))


def load_modalities(config, n_items: Optional[int] = None,
                    modalities: Optional[Sequence[str]] = None,
                    features: Optional[Dict[str, Tuple[str, np.ndarray]]] = None
                    ) -> List[Tuple[str, str, np.ndarray]]:
    """[(modality, path, features)] for the configured modalities that have a file.

    ``features`` ({modality: (path, array)}) hands over arrays a caller has read and checked already
    (this project's runtime); the other modalities are read here. Raises ValueError when none is
    present or when a file's rows differ from ``n_items``.
    """
    mods = modalities if modalities is not None else motor_setting(config, "motor_modalities")
    if isinstance(mods, str):  # 'v,t' from a command line
        mods = [m.strip() for m in mods.split(",") if m.strip()]
    mods = [str(m) for m in mods]
    if not mods:
        raise ValueError("motor_modalities is empty: expected e.g. ['v', 't']")
    root = dataset_dir(config)
    found, tried = [], []
    for m in mods:
        if features and m in features:
            found.append((m, *features[m]))
            continue
        key = modality_file_key(m)
        fname = config_get(config, key)
        if not fname:
            tried.append(f"{m}: config key {key!r} is not set")
            warnings.warn(f"MOTOR: modality {m!r} skipped: config key {key!r} is not set", stacklevel=3)
            continue
        path = os.path.join(root, str(fname))
        if not os.path.isfile(path):
            tried.append(f"{m}: {path} (missing)")
            warnings.warn(f"MOTOR: modality {m!r} skipped: feature file {path} not found", stacklevel=3)
            continue
        try:
            feats = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"feature file {path} ({key}): not a readable .npy array (empty, truncated, "
                             f"an object array, or not a .npy file): {e}") from e
        if not isinstance(feats, np.ndarray):
            raise ValueError(f"feature file {path} ({key}): holds a {type(feats).__name__}, expected a "
                             f".npy array (n_items, dim)")
        if feats.ndim != 2:
            raise ValueError(f"feature file {path}: expected a 2-D array (n_items, dim), got shape "
                             f"{feats.shape}")
        if n_items is not None and feats.shape[0] != n_items:
            raise ValueError(f"feature file {path}: shape {feats.shape} has {feats.shape[0]} rows, "
                             f"expected n_items = {n_items} (one row per item ID)")
        found.append((m, path, feats))
    if not found:
        raise ValueError(f"MOTOR needs item features and found none for motor_modalities={mods}: "
                         + "; ".join(tried))
    return found


def open_cache(config) -> Tuple[Optional[TokenCache], Optional[str]]:
    """The TokenCache of ``motor_cache_dir`` (default ``<data_path>/<dataset>/motor_cache``).

    ``motor_cache_dir: false`` disables the cache; an unwritable location (a read-only data folder)
    moves it to the user cache directory with a warning (``cache.open_token_cache``), and when that
    cannot be written either the cache is off, with a warning.
    """
    setting = config_get(config, "motor_cache_dir")
    if setting is False or (isinstance(setting, str) and setting.lower() in ("false", "off", "none")):
        return None, None
    path = str(setting) if setting else os.path.join(dataset_dir(config), "motor_cache")
    try:
        cache = open_token_cache(path)      # a read-only folder: the user cache directory, warned
        return cache, cache.path
    except RuntimeError as e:
        warnings.warn(f"MOTOR: token cache disabled ({e})", stacklevel=3)
        return None, None


def tokenize_modalities(config, n_items: Optional[int] = None,
                        modalities: Optional[Sequence[str]] = None, with_features: bool = False,
                        features: Optional[Dict[str, Tuple[str, np.ndarray]]] = None):
    """Tokens and stats of each configured modality, through the cache.

    Returns (modalities [(name, path, tokens, stats)], cache_dir); with ``with_features`` each
    tuple also ends with the modality's feature matrix (n, D).
    """
    data = load_modalities(config, n_items, modalities, features)
    params = {m: tokenizer_params(config, m) for m, _, _ in data}  # validate before any work
    cache, cache_dir = open_cache(config)
    out = []
    try:
        for m, path, feats in data:
            tokens, stats = cached_tokenize(feats, params[m], cache, n_items, name=path)
            out.append((m, path, tokens, dict(stats, file=path)) + ((feats,) if with_features else ()))
    finally:
        if cache is not None:
            cache.close()
    return out, cache_dir


def _n_items(model, dataset, table: torch.Tensor) -> int:
    n = getattr(model, "n_items", None)
    if n is None and dataset is not None:
        n = getattr(dataset, "n_items", None)
        if n is None and hasattr(dataset, "get_item_num"):
            n = dataset.get_item_num()
        if n is None and hasattr(getattr(dataset, "dataset", None), "get_item_num"):
            n = dataset.dataset.get_item_num()
    if n is None:
        n = table.shape[0]
    return int(n)


def motorize(model: torch.nn.Module, config, dataset=None,
             features: Optional[Dict[str, Tuple[str, np.ndarray]]] = None) -> Dict[str, Any]:
    """Replace ``model``'s item ID table by MOTOR; returns (and sets ``model.motor_report``) a report.

    Args:
        model: a constructed backbone (after its ``__init__``; before the optimizer is built).
        config: dict-like; reads ``data_path``, ``dataset``, ``vision_feature_file``,
            ``text_feature_file``, ``seed`` and the ``motor_*`` keys (defaults in :data:`DEFAULTS`).
        dataset: the training data; read for n_items when the model has no ``n_items``, and, when
            the unseen-item rules or ``motor_fine_own_min_interactions`` are on, for the items'
            training interactions (``inter_matrix``).
        features: optional ``{modality: (path, array)}`` already read and checked by the caller;
            other modalities are read from their files.

    Raises:
        MotorNotApplicableError: backbone without an item ID table (DualGNN, DRAGON, PGL, ItemKNNCBF).
        ValueError: unknown backbone, bad motor_* value, missing/misshaped feature files.
    """
    adapter = get_adapter(model)
    table = adapter.item_table(model)
    if table.dim() != 2:
        raise ValueError(f"{type(model).__name__}: item table has shape {tuple(table.shape)}, expected 2-D")
    n_items = _n_items(model, dataset, table)
    if table.shape[0] != n_items:
        raise ValueError(f"{type(model).__name__}.{adapter.describe()}: item table has "
                         f"{table.shape[0]} rows, expected n_items = {n_items}")
    dim = int(table.shape[1])
    variant = str(motor_setting(config, "motor_tcn")).lower()
    if variant not in VARIANTS:
        raise ValueError(f"unknown TCN variant {variant!r} (motor_tcn): expected one of {', '.join(VARIANTS)}")
    n_layers, rank = int(motor_setting(config, "motor_tcn_layers")), int(motor_setting(config, "motor_tcn_rank"))
    cross_dim = tcn_dim_setting(config)
    resolve_cross_dim(cross_dim, dim)  # validates before the tokenizer runs
    id_params = adapter.param_count(model)
    extra = adapter.extra_param_count(model)

    content_mode = str(motor_setting(config, "motor_content")).lower()
    if content_mode not in CONTENT_MODES:
        raise ValueError(f"unknown motor_content {content_mode!r}: expected one of {', '.join(CONTENT_MODES)}")
    unseen_mode = unseen_norm_setting(config)   # before the tokenizer, so its errors come first
    neighbours_k = unseen_neighbours_setting(config)
    fine_own_min = fine_own_min_setting(config)
    counts = (None if unseen_mode == "off" and neighbours_k == 0 and fine_own_min is None
              else training_item_counts(dataset, n_items))
    mods, cache_dir = tokenize_modalities(config, n_items, with_features=True, features=features)
    names = [m for m, _, _, _, _ in mods]
    content = None
    if content_mode != "none":   # each modality's features as its tokenizer normalised them, centred
        content = [centred_features(f, tokenizer_params(config, m).normalize) for m, _, _, _, f in mods]
    fine_nbits = fine_bits_setting(config)
    fine, fine_sizes, fine_stats = None, None, {}
    if fine_nbits:               # one flat k-means cell per item and modality (:mod:`.fine`)
        fine, fine_sizes = [], []
        per_cell = fine_items_per_cell_setting(config) if fine_nbits == "auto" else None
        for m, _, _, _, f in mods:
            bits = auto_nbits(len(f), per_cell) if per_cell is not None else int(fine_nbits)
            cells, K = kmeans_cells(f, bits, motor_seed(config), tokenizer_params(config, m).normalize)
            n_kmeans = K
            if fine_own_min is not None:     # popular items leave their k-means cells for their own
                cells, K = own_cells(cells, K, counts, fine_own_min)
            fine.append(cells)
            fine_sizes.append(K)
            used = int(np.unique(cells).size)
            fine_stats[m] = {"K": K, "cells_used": used, "items_per_cell": round(len(cells) / max(1, used), 2)}
            if fine_own_min is not None:
                fine_stats[m]["own_cells"] = K - n_kmeans
    neighbours = None
    if neighbours_k:             # each unseen item's k content-nearest trained items (:mod:`.unseen`)
        neighbours = unseen_neighbours(content if content is not None else
                                       [centred_features(f, tokenizer_params(config, m).normalize)
                                        for m, _, _, _, f in mods], counts, neighbours_k)
    network = TokenCrossNetwork([t for _, _, t, _, _ in mods], [s["K"] for _, _, _, s, _ in mods], dim,
                                variant=variant, n_layers=n_layers, rank=rank,
                                seed=motor_seed(config), modality_names=names, cross_dim=cross_dim,
                                content=content, content_mode=content_mode,
                                token_dropout=dropout_setting(config, "motor_token_dropout"),
                                fine_tokens=fine, fine_sizes=fine_sizes,
                                unseen_weights=(None if counts is None or unseen_mode == "off"
                                                else unseen_weights(counts, unseen_mode)),
                                unseen_neighbours=neighbours,
                                fine_dropout=dropout_setting(config, "motor_fine_dropout"))
    mods = [mod[:4] for mod in mods]
    motor = MotorItemEmbedding(network).to(device=table.device, dtype=table.dtype)
    adapter.install(model, motor)

    notes = []
    if isinstance(adapter, JointTableAdapter):
        notes.append("joint user+item table: the user rows stay as a trainable Parameter "
                     f"({extra} params, counted in extra_params)")
    if type(model).__name__ in ("MMGCN", "MVGAE"):
        notes.append(f"{type(model).__name__}'s original ID table is not trained; the MOTOR "
                     "representation is, so it adds capacity the ID baseline never had")
    total = sum(p.numel() for p in motor.parameters())
    report = {
        "backbone": type(model).__name__,
        "adapter": adapter.describe(),
        "n_items": n_items,
        "dim": dim,
        "modalities": names,
        "tcn": variant,
        "tcn_layers": n_layers,
        "tcn_rank": rank,
        "tcn_dim": int(network.cross_dim),
        "content": content_mode,
        "token_dropout": network.token_dropout,
        "fine_dropout": network.fine_dropout,
        "fine_tokens": fine_stats,
        "unseen_norm": unseen_mode, "unseen_items": 0 if counts is None else int((counts == 0).sum()),
        "unseen_neighbours": neighbours_k,
        "item_repr_params_id": int(id_params),
        "item_repr_params_motor": int(total),
        "token_table_params": int(network.token_table_params()),
        "tcn_params": int(network.cross_params()),
        "extra_params": int(extra),
        "cache_dir": cache_dir,
        "tokenizer": {m: s for m, _, _, s in mods},
        "notes": notes,
    }
    try:
        model.motor_report = report
    except Exception:  # pragma: no cover - exotic models with __setattr__ guards
        pass
    return report

