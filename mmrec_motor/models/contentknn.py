"""Content-kNN: rank items by their features' cosine to the user's mean training item.

For modality m with features X_m (n_items x D_m): centre each column over the items, then
L2-normalise each row: x_i = (X_m[i] - mean) / ||X_m[i] - mean||. A user is the mean of their
training items' rows, p_u = (1 / |I_u|) sum_{i in I_u} x_i (D_m), and

    score(u, i) = cos(p_u, x_i) = p_u . x_i / ||p_u||.

``content_modality``: ``v`` or ``t`` (one modality), or ``all`` (default): every modality whose file
exists, each block normalised as above and the blocks concatenated, so the score is the mean of the
per-modality dot products (before the user norm). Not trained (``req_training: False``); the runtime
evaluates it once. It needs no interaction of an item to rank it, so it is the floor for items held
out of training (the inductive cold-start protocol). No item ID table: ``--motor`` is refused.
"""
import numpy as np
import torch
import torch.nn as nn

from mmrec_motor.models.common import GeneralRecommender

MODALITIES = ("all", "v", "t")


def normalised_content(features: np.ndarray) -> np.ndarray:
    """Rows of (X - column mean), scaled to unit L2 norm (a zero row stays zero). (n, D) -> (n, D)."""
    centred = features - features.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.maximum(norms, 1e-12)


class ContentKNN(GeneralRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        modality = str(config["content_modality"] or "all")
        if modality not in MODALITIES:
            raise ValueError(f"config key 'content_modality' is {modality!r}; expected one of "
                             f"{', '.join(MODALITIES)}")
        blocks = {"v": self.v_feat, "t": self.t_feat}
        chosen = [k for k in ("v", "t") if blocks[k] is not None and modality in ("all", k)]
        if not chosen:
            key = "vision_feature_file" if modality == "v" else "text_feature_file"
            raise ValueError(f"ContentKNN with content_modality={modality!r}: no feature file for it "
                             f"({key}={config[key]!r} in {config['data_path']}/{config['dataset']})")
        items = np.concatenate([normalised_content(blocks[k].cpu().numpy()) for k in chosen], axis=1)
        items /= np.sqrt(len(chosen))
        train = dataset.train_matrix()                            # (n_users, n_items) binary CSR
        counts = np.asarray(train.sum(axis=1)).ravel()
        profiles = (train @ items) / np.maximum(counts, 1.0)[:, None]        # p_u: (n_users, D)
        profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
        self.modalities = chosen
        self.v_feat = self.t_feat = None                          # only the normalised copy is kept
        self.register_buffer("item_content", torch.from_numpy(np.ascontiguousarray(items, np.float32))
                             .to(self.device))
        self.register_buffer("user_profiles", torch.from_numpy(np.ascontiguousarray(profiles, np.float32))
                             .to(self.device))
        self.dummy = nn.Parameter(torch.zeros(1))   # an optimizer needs one parameter; never trained

    def calculate_loss(self, interaction: torch.Tensor) -> torch.Tensor:
        return self.dummy.sum() * 0.0

    def full_sort_predict(self, interaction) -> torch.Tensor:
        return self.user_profiles[interaction[0]] @ self.item_content.T
