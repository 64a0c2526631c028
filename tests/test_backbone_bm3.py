"""BM3 backbone: [2, B] batches, toy runs (ID and --motor), parameter count by hand (both modalities
and one), the batch-restricted loss equals the full-table one, evaluation reads the current
parameters."""
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mmrec_motor.data.loader import load_data
from mmrec_motor.data.sampler import BPRSampler
from mmrec_motor.quick_start import build_model, count_parameters
from tests.backbones import (build, check_id_table_run, check_scores_follow_parameters, motor_delta,
                             to_model, toy_batch, toy_config, train_steps, train_toy)

MODEL = "BM3"
PINNED = {"n_layers": 1, "reg_weight": 0.1, "dropout": 0.3}
D_V, D_T = 64, 32   # toy feature widths

make_config = partial(toy_config, MODEL, PINNED)


def test_batches_are_users_and_positives(tmp_path, run_dirs):
    config = make_config(tmp_path, run_dirs)
    assert config["use_neg_sampling"] is False
    data = load_data(config)
    sampler = BPRSampler(data.train, data.n_items, 64, seed=1, device=config["device"],
                         with_negatives=bool(config["use_neg_sampling"]))
    batch = next(iter(sampler))
    assert batch.shape == (2, 64)
    model, _ = build_model(config, data)
    loss = model.calculate_loss(batch)
    assert torch.isfinite(loss) and loss.dim() == 0
    # a [3, B] batch is accepted too: the third row is ignored
    torch.manual_seed(0)
    two = model.calculate_loss(batch)
    torch.manual_seed(0)
    three = model.calculate_loss(torch.cat([batch, batch[1:2]]))
    assert torch.equal(two, three)


@pytest.mark.parametrize("motor", [False, True])
def test_trains_two_epochs_on_toy(tmp_path, run_dirs, motor):
    result = train_toy(MODEL, PINNED, tmp_path, run_dirs, motor)
    check_id_table_run(result, PINNED, motor, id_table_params=300 * 64)


@pytest.mark.parametrize("text_file, dims", [("text_feat.npy", (D_V, D_T)), ("absent.npy", (D_V,))])
def test_parameter_count_by_hand(tmp_path, run_dirs, text_file, dims):
    config = make_config(tmp_path, run_dirs, text_feature_file=text_file)
    data, model, item = build(config)
    U, I, d = data.n_users, data.n_items, 64
    # users + item IDs + predictor (d x d + d) + per modality: trainable feature table I x D_m and
    # its projection (D_m x d + d)
    expected = U * d + I * d + (d * d + d) + sum(I * D + D * d + d for D in dims)
    assert count_parameters(model) == {"total": expected, "trainable": expected}
    assert item["id_table_params"] == I * d

    mconfig = make_config(tmp_path, run_dirs, motor=True, text_feature_file=text_file)
    mmodel, mitem = build_model(mconfig, data)
    assert count_parameters(mmodel)["total"] == expected + motor_delta(mitem)


def test_batch_loss_equals_full_table_loss(tmp_path, run_dirs):
    """Without dropout the loss on the batch's distinct rows equals the paper's full-table loss."""
    config = make_config(tmp_path, run_dirs, dropout=0.0)
    _, model, _ = build(config)
    users = to_model(model, torch.tensor([0, 1, 2, 1, 5]))
    items = to_model(model, torch.tensor([10, 11, 10, 12, 13]))
    user_out, item_out = model.forward()
    g = model.predictor

    def c(a, b):
        return 1 - F.cosine_similarity(a, b, dim=-1).mean()

    loss = c(g(user_out)[users], item_out[items]) + c(g(item_out)[items], user_out[users])
    reg = (user_out.norm() + item_out.norm()) / item_out.shape[0]
    modal = 0.0
    for table, proj in ((model.text_embedding, model.text_trs), (model.image_embedding, model.image_trs)):
        feats = proj(table.weight)
        modal = modal + c(g(feats)[items], item_out[items]) + c(g(feats)[items], feats[items])
    expected = loss + 0.1 * reg + 2.0 * modal
    assert torch.allclose(model.calculate_loss(torch.stack([users, items])), expected, atol=1e-5)


@pytest.mark.parametrize("motor", [False, True])
def test_evaluation_uses_current_parameters(tmp_path, run_dirs, motor):
    config = make_config(tmp_path, run_dirs, motor=motor)
    data, model, _ = build(config)
    train_steps(model, config, toy_batch(data, negatives=False))
    check_scores_follow_parameters(model, data.n_items, [lambda: model.user_embedding.weight.add_(0.1),
                                                         lambda: model.predictor.bias.add_(0.1)])
