"""MOTOR: ID-free item representations from product-quantized multimodal tokens.

This sub-package imports nothing from the rest of ``mmrec_motor``, so it serves this project's
backbones and upstream MMRec's model objects alike.

Modules, one job each:

* :mod:`.tokenizer`         features -> token IDs (faiss PQ / OPQ / RQ) + statistics, on the next three:
* :mod:`.tokenizer_params`  the settings, and the PCA width and codebook size they give a dataset
* :mod:`.preprocess`        feature checks, normalisation, PCA (randomized SVD)
* :mod:`.codes`             faiss' packed codes <-> token matrices, token statistics
* :mod:`.cache`             LMDB cache of token matrices (checksummed, self-healing)
* :mod:`.tcn`               the Token Cross Network (agnostic / specific / mean / fm), on the next three:
* :mod:`.token_embedding`   the token tables and their sparse reads (pooled mean, flat token rows)
* :mod:`.cross`             the low-rank DCN-v2 cross layers and towers
* :mod:`.fm`                the ``fm`` variant's pairwise term
* :mod:`.content`           token tables started at / anchored on the items' content
* :mod:`.fine`              fine content tokens (one k-means cell per item and modality)
* :mod:`.unseen`            items without a training interaction: their content neighbours, their length
* :mod:`.item_embedding`    ``MotorItemEmbedding``: the ``nn.Embedding`` drop-in, cached once per step
* :mod:`.adapters`          where each backbone keeps its item ID table and how it is swapped
* :mod:`.settings`          the ``motor_*`` keys: defaults, and how each is read from a config
* :mod:`.hook`              ``motorize(model, config)``: all of the above, after model init
* :mod:`.dataset_report`    ``tokenize_dataset(config)``: the ``mmrec-motor tokenize`` report
"""
from .adapters import (Adapter, AlreadyMotorizedError, AttributeAdapter, EmbeddingAdapter,
                       JointTableAdapter, MotorNotApplicableError, ParameterDictAdapter,
                       RefusedAdapter, get_adapter, item_id_param_count, register_adapter)
from .cache import TokenCache, cached_tokenize
from .dataset_report import tokenize_dataset
from .hook import motorize, optimizer_param_groups
from .settings import DEFAULTS, config_get
from .item_embedding import MotorItemEmbedding
from .tcn import TokenCrossNetwork, TokenEmbedding
from .tokenizer import TokenizerParams, TokenizerResult, fit_tokenize

__all__ = [
    "motorize", "MotorItemEmbedding", "fit_tokenize", "TokenizerParams", "TokenizerResult",
    "TokenCache", "cached_tokenize", "TokenCrossNetwork", "TokenEmbedding", "register_adapter",
    "get_adapter", "item_id_param_count", "tokenize_dataset", "Adapter", "EmbeddingAdapter",
    "AttributeAdapter", "JointTableAdapter", "ParameterDictAdapter", "RefusedAdapter",
    "MotorNotApplicableError", "AlreadyMotorizedError", "DEFAULTS", "config_get",
    "optimizer_param_groups",
]
