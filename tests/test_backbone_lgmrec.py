"""LGMRec backbone: toy runs (ID and --motor), parameter count by hand, evaluation reads the current
parameters, both modalities required, the contrastive term."""
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mmrec_motor.models.lgmrec import _info_nce
from mmrec_motor.quick_start import build_model, count_parameters
from tests.backbones import (build, check_id_table_run, check_scores_follow_parameters, motor_delta,
                             run_toy, toy_batch, toy_config, train_steps, train_toy)

MODEL = "LGMRec"
PINNED = {"n_ui_layers": 2, "n_mm_layers": 2, "n_hyper_layer": 1, "hyper_num": 4, "keep_rate": 0.5,
          "alpha": 0.3, "cl_weight": 1e-4, "reg_weight": 1e-6}
D_V, D_T = 64, 32   # toy feature widths

make_config = partial(toy_config, MODEL, PINNED)


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_id_table_run(result, PINNED, motor, id_table_params=300 * 64)


def test_needs_both_modalities(tmp_path, run_dirs, capsys):
    status, _ = run_toy(MODEL, PINNED, tmp_path, run_dirs, "--text_feature_file=absent.npy")
    assert status == 2
    err = capsys.readouterr().err
    assert "LGMRec needs both image and text features" in err and "text" in err


def test_parameter_count_by_hand(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    data, model, item = build(config)
    U, I, d, H = data.n_users, data.n_items, 64, 4
    # trainable: users + item IDs + per modality a projection D_m x d and hyperedge weights D_m x H;
    # frozen (counted in the total, as MMRec's from_pretrained(freeze=True)): the feature tables I x D_m
    trainable = U * d + I * d + sum(D * d + D * H for D in (D_V, D_T))
    frozen = I * (D_V + D_T)
    assert count_parameters(model) == {"total": trainable + frozen, "trainable": trainable}
    assert item["id_table_params"] == I * d

    mconfig = make_config(tmp_path, run_dirs, motor=True)
    mmodel, mitem = build_model(mconfig, data)
    delta = motor_delta(mitem)
    assert count_parameters(mmodel) == {"total": trainable + frozen + delta, "trainable": trainable + delta}


@pytest.mark.parametrize("motor", [False, True])
def test_evaluation_uses_current_parameters(tmp_path, run_dirs, motor):
    config = make_config(tmp_path, run_dirs, motor=motor)
    data, model, _ = build(config)
    train_steps(model, config, toy_batch(data))

    def scores(users):
        torch.manual_seed(0)          # the same Gumbel noise in every call
        return model.full_sort_predict((users,))

    def repeatable(before, users):
        # Exact on CPU; CUDA's sparse products sum in a varying order, so allow float32 rounding.
        torch.testing.assert_close(scores(users), before)

    # one hyperedge's column: adding the same to every column shifts an item's logits alike, which the
    # softmax over hyperedges ignores (only rounding would change the scores)
    check_scores_follow_parameters(model, data.n_items, [lambda: model.user_embedding.weight.add_(0.1),
                                                         lambda: model.v_hyper[:, 0].add_(0.5)],
                                   predict=scores, inspect=repeatable)


def test_info_nce_is_the_softmax_over_all_candidates():
    torch.manual_seed(0)
    anchor, candidates, targets = torch.randn(5, 8), torch.randn(12, 8), torch.tensor([0, 3, 3, 7, 11])
    a, c = F.normalize(anchor), F.normalize(candidates)
    pos = torch.exp((a * c[targets]).sum(1) / 0.2)
    total = torch.exp(a @ c.T / 0.2).sum(1)
    assert torch.allclose(_info_nce(anchor, candidates, targets, 0.2), -torch.log(pos / total).sum(), atol=1e-5)
