"""tokenize_dataset: the readable per-modality report behind ``mmrec-motor tokenize``."""
import warnings

import numpy as np

from mmrec_motor.motor import tokenize_dataset
from mmrec_motor.motor.dataset_report import load_item_texts

N = 120


def make_dataset(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "ds"
    folder.mkdir()
    v = rng.standard_normal((N, 16)).astype(np.float32)
    v[1] = v[0]  # items 0 and 1 share every image token
    np.save(folder / "image_feat.npy", v)
    np.save(folder / "text_feat.npy", rng.standard_normal((N, 8)).astype(np.float32))
    texts = folder / "texts.tsv"
    texts.write_text("itemID\ttext\n" + "".join(f"{i}\tthing number {i}\n" for i in range(N)))
    cfg = {"data_path": str(tmp_path), "dataset": "ds", "vision_feature_file": "image_feat.npy",
           "text_feature_file": "text_feat.npy", "seed": 1, "motor_num_subspaces": 4, "motor_nbits": 2, "motor_quantizer": "pq",
           "motor_cache_dir": str(tmp_path / "cache")}
    return cfg, texts


def test_report_lists_stats_neighbours_and_cache(tmp_path):
    cfg, texts = make_dataset(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = tokenize_dataset(cfg, neighbours=3, rng_seed=0, text_file=str(texts), n_examples=N)
        second = tokenize_dataset(cfg)
    assert f"{N} items" in first and "[v]" in first and "[t]" in first
    assert "utilisation per sub-space" in first and "token-tuple collisions" in first
    assert "reconstruction: MSE" in first and "(from cache)" not in first
    assert "line i is item i" in first
    # item 0's first neighbour is its duplicate image, item 1
    lines = first.splitlines()
    start = lines.index("  item 0: thing number 0")
    assert lines[start + 1].endswith("item 1: thing number 1")
    assert second.count("(from cache)") == 2


def test_text_file_keyed_by_id_when_row_count_differs(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("id\ttext\n5\tfive\n7\tseven\n")
    texts, note = load_item_texts(str(path), 10)
    assert texts == {5: "five", 7: "seven"} and "first column is taken as the item ID" in note
