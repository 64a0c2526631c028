"""motorize() and the adapters, on small stand-ins named like MMRec's backbones."""
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from mmrec_motor.motor import (AlreadyMotorizedError, EmbeddingAdapter, MotorItemEmbedding,
                               MotorNotApplicableError, item_id_param_count, motorize,
                               register_adapter)

U, I, D = 9, 60, 16


# ---- stand-ins (attribute layout as in mmrec-notes section 5) --------------------------------
class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.n_users, self.n_items = U, I
        self.user_embedding = nn.Embedding(U, D)


class FREEDOM(Base):
    def __init__(self):
        super().__init__()
        self.item_id_embedding = nn.Embedding(I, D)

    def items(self):
        return self.item_id_embedding.weight + 0.5 * self.item_id_embedding.weight


class BPR(Base):
    def __init__(self):
        super().__init__()
        self.item_embedding = nn.Embedding(I, D)

    def items(self):
        return self.item_embedding(torch.arange(I))


class VBPR(Base):
    def __init__(self):
        super().__init__()
        self.i_embedding = nn.Parameter(torch.randn(I, D))

    def items(self):
        return self.i_embedding


class LayerGCN(VBPR):
    def __init__(self):
        Base.__init__(self)
        self.item_embeddings = nn.Parameter(torch.randn(I, D))

    def items(self):
        return self.item_embeddings


class EGCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.id_embedding = nn.Parameter(torch.randn(U + I, D))


class GRCN(Base):
    def __init__(self):
        super().__init__()
        self.id_gcn = EGCN()

    def items(self):
        return self.id_gcn.id_embedding[U:]


class MMGCN(Base):
    def __init__(self):
        super().__init__()
        self.id_embedding = torch.rand(U + I, D, requires_grad=True)  # plain tensor, as in MMRec

    def items(self):
        return self.id_embedding[U:]


class LightGCN(Base):
    def __init__(self):
        super().__init__()
        self.embedding_dict = nn.ParameterDict({"user_emb": nn.Parameter(torch.randn(U, D)),
                                                "item_emb": nn.Parameter(torch.randn(I, D))})

    def items(self):
        return self.embedding_dict["item_emb"]


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding_dict = nn.ParameterDict({"user_emb": nn.Parameter(torch.randn(U, D)),
                                                "item_emb": nn.Parameter(torch.randn(I, D))})


class SELFCFED_LGN(Base):
    def __init__(self):
        super().__init__()
        self.online_encoder = Encoder()

    def items(self):
        return self.online_encoder.embedding_dict["item_emb"]


class GCN(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features


class MVGAE(Base):
    def __init__(self):
        super().__init__()
        self.collaborative = torch.randn(I, D)
        self.c_gcn = GCN(self.collaborative)

    def items(self):
        assert self.c_gcn.features is not None
        return self.collaborative + 0 * self.c_gcn.features


class DualGNN(Base):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Linear(4, D)


class Mystery(Base):
    pass


class Custom(Base):
    def __init__(self):
        super().__init__()
        self.item_id_embedding = nn.Embedding(I, D)

    def items(self):
        return self.item_id_embedding.weight


class MyNet(Base):
    def __init__(self):
        super().__init__()
        self.items_table = nn.Embedding(I, D)

    def items(self):
        return self.items_table.weight


OLD_NAMES = {FREEDOM: "item_id_embedding.weight", BPR: "item_embedding.weight", VBPR: "i_embedding",
             LayerGCN: "item_embeddings", GRCN: "id_gcn.id_embedding",
             LightGCN: "embedding_dict.item_emb", SELFCFED_LGN: "online_encoder.embedding_dict.item_emb",
             MMGCN: None, MVGAE: None, Custom: "item_id_embedding.weight"}


# ---- data + config -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    (root / "toyds").mkdir()
    np.save(root / "toyds" / "image_feat.npy", rng.standard_normal((I, 32)).astype(np.float32))
    np.save(root / "toyds" / "text_feat.npy", rng.standard_normal((I, 24)).astype(np.float32))
    np.save(root / "toyds" / "bad_feat.npy", rng.standard_normal((I + 3, 24)).astype(np.float32))
    return root


@pytest.fixture
def config(data_root, tmp_path):
    return {"data_path": str(data_root), "dataset": "toyds", "vision_feature_file": "image_feat.npy",
            "text_feature_file": "text_feat.npy", "embedding_size": D, "seed": [999],
            "motor_num_subspaces": 4, "motor_nbits": 3, "motor_tcn_layers": 1, "motor_tcn_rank": 2,
            "motor_cache_dir": str(tmp_path / "tokens"),
            # the mechanisms tested here (cross towers, tcn_dim, PQ tokens) are the first design's
            "motor_tcn": "agnostic", "motor_quantizer": "pq", "motor_content": "none", "motor_fine_nbits": None}


class MMRecLikeConfig:
    """MMRec's Config: config[key] is None for a missing key."""

    def __init__(self, d):
        self.d = dict(d)

    def __getitem__(self, key):
        return self.d.get(key)


def quiet_motorize(model, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return motorize(model, config)


# ---- tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", list(OLD_NAMES))
def test_swap_removes_the_id_table_and_trains_tokens(cls, config):
    torch.manual_seed(0)
    model = cls()
    id_count = item_id_param_count(model)
    assert id_count == I * D
    report = quiet_motorize(model, config)
    names = dict(model.named_parameters())
    old = OLD_NAMES[cls]
    if old is not None:
        assert old not in names
    motor_params = [p for n, p in names.items() if "tcn" in n]
    assert motor_params and sum(p.numel() for p in motor_params) == report["item_repr_params_motor"]
    assert report["backbone"] == cls.__name__ and report["item_repr_params_id"] == id_count
    assert report["item_repr_params_motor"] == report["token_table_params"] + report["tcn_params"]
    assert set(report["tokenizer"]) == {"v", "t"} and model.motor_report is report
    assert type(model).__name__ == cls.__name__ and isinstance(model, cls)

    opt = torch.optim.Adam(model.parameters(), lr=0.05)  # built after motorize, as the runtime does
    opt_ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) in opt_ids for p in motor_params)
    items = model.items()
    assert items.shape == (I, D) and items.requires_grad
    before = items.detach().clone()
    loss = (items ** 2).sum()
    loss.backward()
    opt.step()
    assert not torch.allclose(model.items().detach(), before)


def test_joint_table_keeps_user_rows_trainable(config):
    for cls, get in ((GRCN, lambda m: m.id_gcn.id_embedding), (MMGCN, lambda m: m.id_embedding)):
        model = cls()
        users = get(model)[:U].detach().clone()
        report = quiet_motorize(model, config)
        full = get(model)
        assert full.shape == (U + I, D) and full.requires_grad
        torch.testing.assert_close(full[:U].detach(), users)
        assert any(n.endswith("motor_user_rows") for n, _ in model.named_parameters())
        assert report["extra_params"] == U * D and report["notes"]


def test_parameterdict_entry(config):
    model = LightGCN()
    user = model.embedding_dict["user_emb"]
    quiet_motorize(model, config)
    pd = model.embedding_dict
    assert "item_emb" in pd and pd["user_emb"] is user and pd["item_emb"].shape == (I, D)
    assert "embedding_dict.user_emb" in dict(model.named_parameters())


def test_mvgae_alias_reads_motor(config):
    model = MVGAE()
    quiet_motorize(model, config)
    assert model.c_gcn.features.shape == (I, D) and model.c_gcn.features.requires_grad
    assert "MVGAE" in " ".join(model.motor_report["notes"])


def test_embedding_swap_is_the_drop_in(config):
    model = FREEDOM()
    quiet_motorize(model, config)
    emb = model.item_id_embedding
    assert isinstance(emb, MotorItemEmbedding) and emb.num_embeddings == I and emb.embedding_dim == D
    model.items()
    model.items()
    assert emb.n_computations == 1  # four reads, one network run
    assert model.motor_report["adapter"] == "embedding:item_id_embedding"


def test_mmrec_style_config_and_cache_reuse(config):
    cfg = MMRecLikeConfig(config)
    r1 = quiet_motorize(FREEDOM(), cfg)
    r2 = quiet_motorize(FREEDOM(), cfg)
    assert not r1["tokenizer"]["v"]["from_cache"] and r2["tokenizer"]["v"]["from_cache"]
    assert r2["cache_dir"] == config["motor_cache_dir"]


def test_default_cache_dir_is_in_the_dataset_folder(config, tmp_path, data_root):
    cfg = dict(config, motor_cache_dir=None, data_path=str(tmp_path / "d"), dataset="toyds")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "toyds").symlink_to(data_root / "toyds", target_is_directory=True)
    report = quiet_motorize(FREEDOM(), cfg)
    assert report["cache_dir"] == str(tmp_path / "d" / "toyds" / "motor_cache")


def test_id_only_backbone_reads_the_feature_files(config):
    model = BPR()
    report = quiet_motorize(model, config)
    assert report["modalities"] == ["v", "t"]
    assert model.item_embedding(torch.tensor([0, 3])).shape == (2, D)


def test_missing_modality_is_skipped_with_warning(config):
    cfg = dict(config, text_feature_file="nope.npy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = motorize(FREEDOM(), cfg)
    assert any(re.search(r"modality 't' skipped: feature file .*nope.npy not found", str(w.message))
               for w in caught)
    assert report["modalities"] == ["v"]


def test_no_features_at_all_is_an_error(config):
    cfg = dict(config, vision_feature_file=None, text_feature_file="nope.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"found none for motor_modalities=\['v', 't'\]"):
            motorize(FREEDOM(), cfg)


def test_feature_rows_must_match_n_items(config):
    cfg = dict(config, text_feature_file="bad_feat.npy")
    with pytest.raises(ValueError, match=r"bad_feat.npy: shape \(63, 24\) has 63 rows, expected n_items = 60"):
        motorize(FREEDOM(), cfg)


def test_refused_backbone(config):
    with pytest.raises(MotorNotApplicableError,
                       match=r"DualGNN has no item ID embedding table: .*per-modality MLPs.*does not apply"):
        motorize(DualGNN(), config)
    assert item_id_param_count(DualGNN()) == 0


def test_unknown_backbone_without_table(config):
    with pytest.raises(ValueError, match=r"does not know backbone 'Mystery'.*item_id_embedding"):
        motorize(Mystery(), config)


def test_unknown_backbone_with_item_id_embedding_uses_default(config):
    report = quiet_motorize(Custom(), config)
    assert report["adapter"] == "embedding:item_id_embedding"


def test_register_adapter(config):
    register_adapter("MyNet", EmbeddingAdapter("items_table"))
    model = MyNet()
    assert item_id_param_count(model) == I * D
    quiet_motorize(model, config)
    assert isinstance(model.items_table, MotorItemEmbedding)


def test_motorize_twice_is_refused(config):
    for cls in (FREEDOM, VBPR, LightGCN, GRCN):
        model = cls()
        quiet_motorize(model, config)
        with pytest.raises(AlreadyMotorizedError):
            motorize(model, config)


@pytest.mark.parametrize("key, value, match", [
    ("motor_tcn", "transformer", r"unknown TCN variant 'transformer' \(motor_tcn\)"),
    ("motor_quantizer", "lsh", r"unknown quantizer 'lsh'"),
    ("motor_nbits", 20, r"nbits=20 is out of range"),
])
def test_bad_motor_settings(config, key, value, match):
    with pytest.raises(ValueError, match=match):
        motorize(FREEDOM(), dict(config, **{key: value}))


def test_per_modality_settings_and_variants(config):
    cfg = dict(config, motor_num_subspaces={"v": 4, "t": 2}, motor_tcn="specific")
    report = quiet_motorize(FREEDOM(), cfg)
    assert report["tokenizer"]["v"]["num_subspaces"] == 4 and report["tokenizer"]["t"]["num_subspaces"] == 2
    assert report["tcn"] == "specific"


@pytest.mark.parametrize("setting, expected", [("missing", 16), (None, D), (0, D), (4, 4), (64, D)])
def test_motor_tcn_dim_reaches_the_network(config, setting, expected):
    """missing -> the default 16 (= D here: no projection); explicit null or 0 -> d; >= d -> d."""
    cfg = dict(config) if setting == "missing" else dict(config, motor_tcn_dim=setting)
    model = FREEDOM()
    report = quiet_motorize(model, cfg)
    net = model.item_id_embedding.tcn
    assert report["tcn_dim"] == net.cross_dim == min(expected, D)
    n_sub = [report["tokenizer"][m]["num_subspaces"] for m in ("v", "t")]
    ks = [report["tokenizer"][m]["K"] for m in ("v", "t")]
    assert report["item_repr_params_motor"] == net.expected_num_parameters(
        n_sub, ks, D, "agnostic", 1, 2, report["tcn_dim"])


def test_motor_tcn_dim_with_an_mmrec_config(config):
    """MMRec's Config answers None for a missing key (and has no MOTOR.yaml): the default applies."""
    report = quiet_motorize(FREEDOM(), MMRecLikeConfig(dict(config, embedding_size=D)))
    assert report["tcn_dim"] == min(16, D)
    with pytest.raises(ValueError, match=r"motor_tcn_dim must be a non-negative int"):
        motorize(FREEDOM(), dict(config, motor_tcn_dim="wide"))
    with pytest.raises(ValueError, match=r"motor_tcn_dim\) must be >= 0"):
        motorize(FREEDOM(), dict(config, motor_tcn_dim=-2))


@pytest.mark.parametrize("cls", [FREEDOM, VBPR, GRCN, LightGCN, MVGAE])
def test_state_dict_and_deepcopy_of_a_motorized_model(cls, config):
    import copy
    a, b = cls(), cls()
    quiet_motorize(a, config)
    quiet_motorize(b, config)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.1)
    items = a.items()  # leaves a cached table with a graph behind
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.items(), items)
    c = copy.deepcopy(a)
    torch.testing.assert_close(c.items(), items)
    assert type(c).__name__ == cls.__name__


def test_motor_yaml_documents_every_default():
    import pathlib
    import yaml
    from mmrec_motor.motor import DEFAULTS
    path = pathlib.Path(__file__).resolve().parent.parent / "configs" / "model" / "MOTOR.yaml"
    text = path.read_text()
    assert yaml.safe_load(text) == DEFAULTS
    for key in DEFAULTS:  # each key has a comment right above it
        before = text.split(f"\n{key}:", 1)[0].rstrip().splitlines()
        assert before[-1].startswith("#") or before[-1].startswith("motor_"), key


@pytest.mark.parametrize("items_per_cell, expected_bits", [("missing", 4), (4, 4), (2, 5), (1, 6)])
def test_fine_items_per_cell_sets_the_auto_cell_count(config, items_per_cell, expected_bits):
    """motor_fine_nbits: auto gives 2^round(log2(I / items_per_cell)) cells a modality (I = 60 items:
    15 -> 16 cells at the default 4, 30 -> 32 at 2, 60 -> 64 capped at I -> 32 at 1)."""
    cfg = dict(config, motor_fine_nbits="auto")
    if items_per_cell != "missing":
        cfg["motor_fine_items_per_cell"] = items_per_cell
    report = quiet_motorize(FREEDOM(), cfg)
    expected_bits = min(expected_bits, 5)                 # at most 2^floor(log2 60) = 32 cells
    assert {m: s["K"] for m, s in report["fine_tokens"].items()} == {"v": 2 ** expected_bits, "t": 2 ** expected_bits}
    with pytest.raises(ValueError, match=r"motor_fine_items_per_cell must be >= 1, got 0.5"):
        motorize(FREEDOM(), dict(cfg, motor_fine_items_per_cell=0.5))
    for bad in ("many", True, [2]):
        with pytest.raises(ValueError, match=r"motor_fine_items_per_cell must be a number >= 1 \(items a fine cell\)"):
            motorize(FREEDOM(), dict(cfg, motor_fine_items_per_cell=bad))


class TrainCounts:
    """Training data with ``inter_matrix``: item i has i % 7 training users (items 6, 13, ... have 6)."""

    def inter_matrix(self, form="csr"):
        import scipy.sparse as sp
        rows = [u for i in range(I) for u in range(i % 7)]
        cols = [i for i in range(I) for _ in range(i % 7)]
        return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(U, I))


def test_fine_own_cells_give_popular_items_rows_of_their_own(config):
    """motor_fine_own_min_interactions 6: the 8 items with 6 training users (6, 13, ..., 55) get fine
    cells 32..39 after the 2^5 k-means cells; the table is 40 rows a modality, 8 x D more parameters."""
    cfg = dict(config, motor_fine_nbits=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = motorize(FREEDOM(), cfg, dataset=TrainCounts())
        model = FREEDOM()
        report = motorize(model, dict(cfg, motor_fine_own_min_interactions=6), dataset=TrainCounts())
    popular = [i for i in range(I) if i % 7 == 6]
    assert len(popular) == 8
    for m, stats in report["fine_tokens"].items():
        assert stats["K"] == 40 and stats["own_cells"] == 8 and "own_cells" not in plain["fine_tokens"][m]
    fine_ids = next(b for n, b in model.named_buffers() if n.endswith("fine_ids"))     # (I, modalities)
    assert fine_ids.shape == (I, 2)
    others = [i for i in range(I) if i not in popular]
    for column in fine_ids.T:
        assert column[popular].tolist() == list(range(32, 40)) and int(column[others].max()) < 32
    assert report["item_repr_params_motor"] - plain["item_repr_params_motor"] == 2 * 8 * D
    with pytest.raises(ValueError, match="need the training interactions"):
        motorize(FREEDOM(), dict(cfg, motor_fine_own_min_interactions=6))
    for bad in (-1, 2.5, "many", True):
        with pytest.raises(ValueError, match=r"motor_fine_own_min_interactions must be null \(off\) or an integer"):
            motorize(FREEDOM(), dict(cfg, motor_fine_own_min_interactions=bad), dataset=TrainCounts())


def test_run_identity_keeps_runs_from_before_motor_fine_own_min_interactions():
    from mmrec_motor.keys import run_identity
    base = {"model": "LATTICE", "motor": True}
    assert run_identity({**base, "motor_fine_own_min_interactions": None}) == run_identity(base)
    assert run_identity({**base, "motor_fine_own_min_interactions": 11}) != run_identity(base)
    off = {**base, "motor": False}
    assert run_identity({**off, "motor_fine_own_min_interactions": 11}) == run_identity(off)


def test_run_identity_keeps_runs_from_before_motor_fine_items_per_cell():
    """The key is left out of a run's identity when MOTOR is off or it is at 4 (the cell density of
    every run made before it existed); FREEDOM's 2 gives its MOTOR runs an identity of their own."""
    from mmrec_motor.keys import run_identity
    base = {"model": "FREEDOM", "learning_rate": 0.001, "motor": True}
    assert run_identity({**base, "motor_fine_items_per_cell": 4}) == run_identity(base)
    assert run_identity({**base, "motor_fine_items_per_cell": 2}) != run_identity(base)
    off = {**base, "motor": False}
    assert run_identity({**off, "motor_fine_items_per_cell": 2}) == run_identity(off)


def test_run_identity_and_key_check_of_motor_fine_dropout(config):
    """motor_fine_dropout: left out of a run's identity at 0 (every run made before it existed) and
    when MOTOR is off; a value that is no number names the key; 1.0 is refused by the network."""
    from mmrec_motor.keys import run_identity
    base = {"model": "BM3", "learning_rate": 0.001, "motor": True}
    assert run_identity({**base, "motor_fine_dropout": 0.0}) == run_identity(base)
    assert run_identity({**base, "motor_fine_dropout": 0.5}) != run_identity(base)
    off = {**base, "motor": False}
    assert run_identity({**off, "motor_fine_dropout": 0.5}) == run_identity(off)
    cfg = dict(config, motor_fine_nbits=2)
    for bad in ("half", True, [0.5]):
        with pytest.raises(ValueError, match=r"motor_fine_dropout must be a probability in \[0, 1\)"):
            quiet_motorize(FREEDOM(), dict(cfg, motor_fine_dropout=bad))
    with pytest.raises(ValueError, match=r"fine_dropout \(motor_fine_dropout\) must lie in \[0, 1\)"):
        quiet_motorize(FREEDOM(), dict(cfg, motor_fine_dropout=1.0))
    model = FREEDOM()
    report = quiet_motorize(model, dict(cfg, motor_fine_dropout=0.3))
    assert report["fine_dropout"] == 0.3 and model.item_id_embedding.tcn.fine_dropout == 0.3
