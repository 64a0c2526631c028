"""MOTOR inside upstream MMRec: the patch series, ``mmrec-motor patch`` and ``motorize_mmrec``.

Without MMRec: the patch files parse and name the pinned commit, the tool refuses folders that are not
an MMRec checkout, and ``motorize_mmrec`` logs the parameter counts.
With ``MMREC_HOME`` set to an unpatched MMRec checkout (skipped otherwise), on a copy of it: ``patch
--check`` passes, applying twice is a no-op, ``--revert`` restores every file byte for byte, and the
patched MMRec trains FREEDOM and VBPR with ``--motor`` on lfm2k (2 epochs, CPU, one thread).
"""
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from mmrec_motor import upstream
from mmrec_motor.cli import main as cli_main
from tests.conftest import REPO, require_shared

PATCHES = REPO / "patches"
MMREC_HOME = os.environ.get("MMREC_HOME")


# --------------------------------------------------------------------------------------------------
# without MMRec


def test_series_lists_the_patch_files_in_order():
    paths = upstream.patch_files()
    assert [p.name for p in paths] == sorted(p.name for p in PATCHES.glob("*.patch"))
    assert [p.name[:4] for p in paths] == [f"{i:04d}" for i in range(1, len(paths) + 1)]
    assert len(paths) >= 2


@pytest.mark.parametrize("name", sorted(p.name for p in PATCHES.glob("*.patch")))
def test_patch_file_is_a_format_patch(name):
    text = (PATCHES / name).read_text(encoding="utf-8")
    lines = text.splitlines()
    assert re.fullmatch(r"From [0-9a-f]{40} Mon Sep 17 00:00:00 2001", lines[0]), lines[0]
    subject = next((line for line in lines if line.startswith("Subject: ")), None)
    assert subject is not None and re.match(r"Subject: \[PATCH \d+/\d+\] \S", subject)
    assert "\ndiff --git a/src/" in text
    # only changes to MMRec's files, never a whole file (GPL-3.0: a few context lines, nothing more)
    assert "new file mode" not in text and "deleted file mode" not in text
    changed = [line for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert 0 < len(changed) < 80


def test_readme_and_series_name_the_pinned_commit():
    assert re.fullmatch(r"[0-9a-f]{40}", upstream.PINNED_COMMIT)
    assert upstream.PINNED_COMMIT in (PATCHES / "README.md").read_text(encoding="utf-8")
    assert upstream.PINNED_COMMIT in (PATCHES / "series").read_text(encoding="utf-8")
    for path in upstream.patch_files():
        assert path.name in (PATCHES / "README.md").read_text(encoding="utf-8")


def test_the_motorize_call_sits_before_the_trainer_is_built():
    text = next(PATCHES.glob("0002-*.patch")).read_text(encoding="utf-8")
    hunk = text[text.index("+++ b/src/utils/quick_start.py"):]
    assert "from mmrec_motor.upstream import motorize_mmrec" in hunk
    assert "motorize_mmrec(model, config, train_data, logger)" in hunk
    assert "model = get_model(config['model'])(config, train_data).to(config['device'])" in hunk


def test_motor_defaults_are_motor_yaml_and_match_hook_defaults():
    from mmrec_motor.motor import DEFAULTS

    values = upstream.motor_defaults()
    assert set(values) == set(DEFAULTS)
    assert values["motor_tcn"] == DEFAULTS["motor_tcn"] and values["motor_tcn_dim"] == 16
    # a backbone's own motor_* keys (this package's yaml of it) come on top, for MMRec's model yamls have none
    assert upstream.motor_defaults("FREEDOM")["motor_fine_items_per_cell"] == 2
    assert upstream.motor_defaults("LightGCN") == values
    assert upstream.motor_defaults("GRCN")["motor_learning_rate"] == 0.001
    assert upstream.motor_defaults("NoSuchModel") == values


@pytest.mark.parametrize("make", ["missing", "no_src", "src_itself"])
def test_patch_refuses_a_folder_that_is_not_mmrec(tmp_path, capsys, make):
    target = tmp_path / "mmrec"
    if make == "no_src":
        target.mkdir()
    elif make == "src_itself":
        (target / "utils").mkdir(parents=True)
        (target / "main.py").write_text("")
        (target / "utils" / "quick_start.py").write_text("")
    assert cli_main(["patch", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(target) in err
    assert ("not a folder" in err) if make == "missing" else ("src/main.py" in err)


class BPR(nn.Module):
    """Shaped like MMRec's BPR: n_items and an nn.Embedding item_embedding."""

    def __init__(self, n_users=5, n_items=40, dim=8):
        super().__init__()
        self.n_items = n_items
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)


def test_motorize_mmrec_logs_parameter_counts(tmp_path, caplog):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "tiny"
    folder.mkdir(parents=True)
    np.save(folder / "image_feat.npy", rng.normal(size=(40, 16)).astype(np.float32))
    np.save(folder / "text_feat.npy", rng.normal(size=(40, 8)).astype(np.float32))
    config = dict(upstream.motor_defaults(), data_path=str(tmp_path / "data") + "/", dataset="tiny",
                  vision_feature_file="image_feat.npy", text_feature_file="text_feat.npy", seed=999,
                  motor_num_subspaces=2, motor_nbits=2, motor_cache_dir=False)
    model = BPR()
    before = sum(p.numel() for p in model.parameters())
    logger = logging.getLogger("test_upstream")
    with caplog.at_level(logging.INFO, logger="test_upstream"):
        report = upstream.motorize_mmrec(model, config, None, logger)
    assert type(model.item_embedding).__name__ == "MotorItemEmbedding"
    assert report["total_params_id"] == before
    assert report["total_params_motor"] == sum(p.numel() for p in model.parameters())
    text = caplog.text
    assert "MOTOR: BPR's item representation replaced (embedding:item_embedding" in text
    assert (f"item representation parameters: ID table 320 -> MOTOR "
            f"{report['item_repr_params_motor']:,}") in text
    assert f"total trainable parameters: {before:,} with the ID table -> " in text
    # MOTOR.yaml's defaults reach upstream: residual quantization
    assert "MOTOR tokenizer v: image_feat.npy, rq 2 tokens x 4 codewords" in text


def test_motorize_mmrec_warns_that_motor_optimizer_keys_are_ignored(tmp_path, caplog):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "tiny"
    folder.mkdir(parents=True)
    np.save(folder / "image_feat.npy", rng.normal(size=(40, 16)).astype(np.float32))
    config = dict(upstream.motor_defaults(), data_path=str(tmp_path / "data") + "/", dataset="tiny",
                  vision_feature_file="image_feat.npy", text_feature_file=None, seed=999,
                  motor_modalities=["v"], motor_num_subspaces=2, motor_nbits=2, motor_cache_dir=False,
                  motor_learning_rate=0.01)
    logger = logging.getLogger("test_upstream")
    with caplog.at_level(logging.INFO, logger="test_upstream"):
        upstream.motorize_mmrec(BPR(), config, None, logger)
    assert ("MOTOR: motor_learning_rate is ignored in upstream MMRec (its trainer builds one parameter "
            "group from learning_rate and weight_decay)") in caplog.text
    assert "motor_weight_decay is ignored" not in caplog.text


def test_wheel_ships_the_patches(built_wheel):
    import zipfile

    names = zipfile.ZipFile(built_wheel).namelist()
    assert "mmrec_motor/upstream.py" in names
    for path in [PATCHES / "series", PATCHES / "README.md"] + upstream.patch_files():
        assert f"mmrec_motor/patches/{path.name}" in names


# --------------------------------------------------------------------------------------------------
# with an MMRec checkout (MMREC_HOME)

needs_mmrec = pytest.mark.skipif(not MMREC_HOME, reason="set MMREC_HOME to an (unpatched) MMRec checkout")
IGNORE = shutil.ignore_patterns("__pycache__", "log", "saved", "motor_cache")


def _snapshot(root: Path) -> dict:
    """Every file under root (but .git and caches) -> its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".git" or "__pycache__" in rel.parts or not path.is_file():
            continue
        out[str(rel)] = path.read_bytes()
    return out


def _patch(path: Path, *flags: str):
    done = subprocess.run([sys.executable, "-m", "mmrec_motor", "patch", str(path), *flags],
                          capture_output=True, text=True, timeout=120, cwd=str(REPO),
                          env=_env())
    return done.returncode, done.stdout + done.stderr


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = "1"
    return env


@pytest.fixture
def mmrec_copy(tmp_path):
    home = Path(MMREC_HOME).expanduser()
    assert (home / "src" / "main.py").is_file(), f"MMREC_HOME={home} is not an MMRec checkout"
    copy = tmp_path / "MMRec"
    shutil.copytree(home, copy, symlinks=True, ignore=IGNORE)
    return copy


@needs_mmrec
def test_check_apply_twice_and_revert_byte_for_byte(mmrec_copy):
    pristine = _snapshot(mmrec_copy)
    rc, out = _patch(mmrec_copy, "--check")
    assert rc == 0, out
    if "already applied" in out:
        pytest.fail(f"MMREC_HOME={MMREC_HOME} is already patched; point it to an unpatched checkout")
    assert "status: applies cleanly" in out
    if (mmrec_copy / ".git").exists():
        assert re.search(r"^commit: [0-9a-f]{40}$", out, re.M), out

    rc, out = _patch(mmrec_copy)
    assert rc == 0, out
    assert "applied: 0001-" in out and f"next: cd {mmrec_copy / 'src'} && python main.py" in out
    patched = _snapshot(mmrec_copy)
    assert patched != pristine
    assert b"motorize_mmrec" in patched[os.path.join("src", "utils", "quick_start.py")]
    assert set(patched) == set(pristine)                       # no file added or removed

    rc, out = _patch(mmrec_copy)                               # second apply: a no-op
    assert rc == 0 and "already applied" in out and "nothing to do" in out, out
    assert _snapshot(mmrec_copy) == patched
    rc, out = _patch(mmrec_copy, "--check")
    assert rc == 0 and "status: already applied" in out, out

    rc, out = _patch(mmrec_copy, "--revert")
    assert rc == 0 and "reverted: 0001-" in out, out
    assert _snapshot(mmrec_copy) == pristine                   # byte for byte
    rc, out = _patch(mmrec_copy, "--revert")
    assert rc == 0 and "nothing to revert" in out, out


@needs_mmrec
def test_check_names_the_conflicting_patch_and_changes_nothing(mmrec_copy):
    main = mmrec_copy / "src" / "main.py"
    main.write_text(main.read_text().replace("args, _ = parser.parse_known_args()",
                                             "args, _ = parser.parse_known_args()  # a local edit"))
    before = _snapshot(mmrec_copy)
    rc, out = _patch(mmrec_copy, "--check")
    assert rc == 1 and "status: does not apply" in out, out
    assert "0002-" in out and "src/main.py" in out and "patch does not apply" in out
    rc, out = _patch(mmrec_copy)
    assert rc == 1 and "cannot apply, nothing was changed" in out, out
    assert _snapshot(mmrec_copy) == before


def _lfm2k_into(copy: Path) -> None:
    """lfm2k in the copy's data/ and a dataset yaml with baby.yaml's fields and lfm2k's files."""
    shared = require_shared("lfm2k")
    target = copy / "data" / "lfm2k"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("lfm2k.inter", "audio_feat.npy", "text_feat.npy"):
        shutil.copyfile(shared / name, target / name)
    baby = (copy / "src" / "configs" / "dataset" / "baby.yaml").read_text()
    text = re.sub(r"(?m)^inter_file_name:.*$", "inter_file_name: 'lfm2k.inter'", baby)
    text = re.sub(r"(?m)^vision_feature_file:.*$", "vision_feature_file: 'audio_feat.npy'", text)
    text = re.sub(r"(?m)^text_feature_file:.*$", "text_feature_file: 'text_feat.npy'", text)
    assert "lfm2k.inter" in text and "audio_feat.npy" in text and "USER_ID_FIELD: userID" in text
    (copy / "src" / "configs" / "dataset" / "lfm2k.yaml").write_text(text)


@needs_mmrec
@pytest.mark.parametrize("model,grid,motor_params", [
    # lfm2k, 2 modalities: RQ 16 x 256 x 64 token tables (524,288) + fine cells x 64 each: 2^8 at
    # MOTOR.yaml's 4 items a cell (VBPR), 2^9 at FREEDOM's 2 (this package's FREEDOM.yaml, which
    # motor_defaults brings to MMRec's configurator)
    ("FREEDOM", ["--dropout=0.8", "--reg_weight=0.0"], "589,824"),
    ("VBPR", ["--reg_weight=0.001"], "557,056")])
def test_patched_mmrec_trains_with_motor(mmrec_copy, model, grid, motor_params):
    rc, out = _patch(mmrec_copy)
    assert rc == 0, out
    _lfm2k_into(mmrec_copy)
    cmd = [sys.executable, "main.py", "-m", model, "-d", "lfm2k", "--motor", "--epochs=2",
           "--use_gpu=False", "--num_threads=1", *grid]
    done = subprocess.run(cmd, cwd=str(mmrec_copy / "src"), capture_output=True, text=True,
                          timeout=900, env=_env())
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert re.search(rf"MOTOR: {model}'s item representation replaced \(", log), log[-3000:]
    # lfm2k: 1,425 items x 64 dims = 91,200 ID parameters
    assert f"MOTOR: item representation parameters: ID table 91,200 -> MOTOR {motor_params}" in log, log[-3000:]
    assert re.search(r"MOTOR: total trainable parameters: [\d,]+ with the ID table -> [\d,]+ with MOTOR", log)
    assert "epoch 1 evaluating" in log                           # both epochs ran
    best = log[log.index("█████████████ BEST ████████████████"):]
    assert re.search(r"Test: recall@5: \d\.\d{4}\s+recall@10: \d\.\d{4}\s+recall@20: \d\.\d{4}", best)
    assert (mmrec_copy / "data" / "lfm2k" / "motor_cache").is_dir()   # tokens cached in MMRec's data
