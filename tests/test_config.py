"""Config layering, --key=value parsing and errors."""
import pytest

from mmrec_motor.config import CONFIG_ROOT, Config, ConfigError, grid, load_yaml, parse_overrides


def test_parse_overrides_as_yaml():
    assert parse_overrides(["--epochs=5", "--learning_rate=1e-3", "--seed=[1,2,3]", "--use_gpu=False",
                            "--data_path=../shared/data", "--motor", "--knn_k", "7"]) == {
        "epochs": 5, "learning_rate": 0.001, "seed": [1, 2, 3], "use_gpu": False,
        "data_path": "../shared/data", "motor": True, "knn_k": 7}
    with pytest.raises(ConfigError, match="--key=value"):
        parse_overrides(["epochs=5"])


def test_precedence_overall_dataset_model_cli():
    config = Config("FREEDOM", "lfm2k")
    assert config["learning_rate"] == 0.001                 # overall.yaml
    assert config["vision_feature_file"] == "audio_feat.npy"  # dataset yaml beats overall
    assert config["knn_k"] == 10                            # model yaml
    assert config["reg_weight"] == [0.0, 1e-05, 1e-04, 1e-03]
    config = Config("FREEDOM", "lfm2k", {"knn_k": 5, "vision_feature_file": "vggish_feat.npy"})
    assert config["knn_k"] == 5 and config["vision_feature_file"] == "vggish_feat.npy"


def test_grid_seed_first_and_scalar_override_of_grid_key():
    config = Config("FREEDOM", "toy", {"seed": [1, 2], "grid": "full"})   # toy.yaml: grid: first
    assert config["hyper_parameters"] == ["seed", "dropout", "reg_weight"]
    combos = grid(config)
    assert len(combos) == 2 * 2 * 4
    assert combos[0] == (("seed", "dropout", "reg_weight"), (1, 0.8, 0.0))
    config = Config("FREEDOM", "toy", {"reg_weight": 0.001, "seed": 5, "grid": "full"})  # scalars: MMRec crashes
    assert [values for _, values in grid(config)] == [(5, 0.8, 0.001), (5, 0.9, 0.001)]


def test_missing_key_reads_none_like_mmrec():
    assert Config("BPR", "toy")["no_such_key"] is None


def test_unknown_model_lists_available():
    with pytest.raises(ConfigError, match="unknown model 'FREDOM'.*BPR.*FREEDOM"):
        Config("FREDOM", "toy")


def test_misspelled_key_warns_with_its_name():
    with pytest.warns(UserWarning, match="--lerning_rate is not defined"):
        Config("BPR", "toy", {"lerning_rate": 0.1})


@pytest.mark.parametrize("override, message", [
    ({"epochs": 0}, "'epochs' must be a positive integer"),
    ({"epochs": "ten"}, "'epochs' must be a positive integer"),
    ({"topk": [5, -1]}, "'topk' must be a list of positive integers"),
    ({"valid_metric": "Recall@30"}, "'valid_metric' is 'Recall@30'"),
    ({"metrics": ["Recall", "AUC"]}, "'metrics' must list"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        Config("BPR", "toy", override)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+"):
        load_yaml(bad)


def test_configs_ship_with_the_package():
    assert (CONFIG_ROOT / "overall.yaml").is_file()
    assert {"baby", "sports", "clothing", "lfm2k", "toy"} <= {p.stem for p in (CONFIG_ROOT / "dataset").glob("*.yaml")}


def test_dataset_yaml_overrides_motor_defaults_and_model_yaml_overrides_both():
    """MOTOR.yaml is a default layer: a text-only dataset's motor_modalities wins over it, and the
    backbone yaml (GRCN's motor_learning_rate) and the command line win over the dataset."""
    cfg = Config("FREEDOM", "sports20", {"motor": True})
    assert cfg["motor_modalities"] == ["t"]
    assert Config("FREEDOM", "toy", {"motor": True})["motor_modalities"] == ["v", "t"]
    assert Config("GRCN", "sports20", {"motor": True})["motor_learning_rate"] == 0.001
    assert Config("FREEDOM", "sports20", {"motor_modalities": ["v"]})["motor_modalities"] == ["v"]
