"""Bad input everywhere a user can give it, through the command line.

Every case of the table runs ``mmrec-motor run ...`` (``cli.main``) and must exit with status 2, print
``error: ...`` on stderr naming the file / key / shape and what was expected, and write neither
``--result_file`` nor ``--topk_file``. A case that crashed with a traceback instead would propagate its
exception out of ``main`` and fail here. A few cases also run as ``python main.py`` in a subprocess,
where a traceback on stderr is visible as such. Then the inputs that must *not* stop a run: a corrupt
token cache (rebuilt, with a warning) and a checkpoint of another run (not resumed).
"""
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

import numpy as np
import pytest

from mmrec_motor import resources
from mmrec_motor.cli import main
from mmrec_motor.data.toy import ensure_toy
from tests.conftest import REPO, write_inter

# A valid little dataset: 3 users, 6 items (user 2 is cold-start and dropped from valid/test).
GOOD = [(0, 0, 1, 0, 0), (0, 1, 1, 0, 0), (0, 2, 1, 0, 1), (0, 3, 1, 0, 2),
        (1, 1, 1, 0, 0), (1, 4, 1, 0, 1), (1, 0, 1, 0, 2), (2, 2, 1, 0, 1), (2, 5, 1, 0, 2)]
SMALL = ["--topk=[5]", "--valid_metric=Recall@5"]     # 6 items: the default cut-off 50 is too many


def mine(rows=GOOD, header=None, features=None):
    """A builder of ``<data>/mine/``: ``mine.inter`` from ``rows`` and feature files from
    ``features`` ({file name: array, or bytes written as they are})."""
    def make(data: Path) -> None:
        write_inter(data / "mine", "mine", rows, **({"header": header} if header else {}))
        for name, content in (features or {}).items():
            if isinstance(content, bytes):
                (data / "mine" / name).write_bytes(content)
            else:
                np.save(data / "mine" / name, content)
    return make


def npy_bytes(array) -> bytes:
    import io
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


GOOD_V = np.ones((6, 8), np.float32)
TRUNCATED = npy_bytes(np.ones((6, 8), np.float32))[:90]


def low_memory(monkeypatch):
    """The device has 100 KB free: toy's evaluation (400 users x 300 items x 4 B = 480 KB) cannot fit."""
    monkeypatch.setattr(resources, "available_bytes", lambda device="cpu": 100_000)


class Case(NamedTuple):
    id: str
    argv: List[str]                  # after "run"; {data} / {tmp} are replaced by the folders
    expect: List[str]                # regular expressions that stderr must match
    make: Optional[Callable] = None  # builds <data>/mine (else the toy dataset is used)
    patch: Optional[Callable] = None  # monkeypatch setup


CASES = [
    # --- data: the interaction file ---
    Case("missing data folder", ["-m", "BPR", "-d", "baby", "--data_path={tmp}/nowhere"],
         [r"dataset folder not found: .*nowhere/baby", r"--data_path="]),
    Case("missing .inter", ["-m", "BPR", "-d", "mine", "--inter_file_name=other.inter"],
         [r"interaction file not found: .*mine/other\.inter", r"\['mine\.inter'\]"], make=mine()),
    Case("inter_file_name points nowhere", ["-m", "BPR", "-d", "toy", "--inter_file_name=toy2.inter"],
         [r"interaction file not found: .*toy2\.inter; .*\['toy\.inter'\]"]),
    Case("missing column", ["-m", "BPR", "-d", "mine"],
         [r"mine\.inter: missing column\(s\) \['x_label'\]", r"expected userID, itemID, x_label"],
         make=mine([r[:4] for r in GOOD], header="userID\titemID\trating\ttimestamp")),
    Case("wrong separator", ["-m", "BPR", "-d", "mine"],
         [r"missing column\(s\)", r"separator '\\t'"],
         make=mine([(",".join(map(str, r)),) for r in GOOD], header="userID,itemID,rating,timestamp,x_label")),
    Case("non-integer IDs", ["-m", "BPR", "-d", "mine"],
         [r"mine\.inter: column userID must hold integers, found (object|str) \(value 'u0' at line 2\)"],
         make=mine([("u0",) + r[1:] for r in GOOD[:1]] + GOOD[1:])),
    Case("fractional IDs", ["-m", "BPR", "-d", "mine"],
         [r"column itemID must hold integers, found float64 \(value '1\.5' at line 2\)"],
         make=mine([(0, 1.5, 1, 0, 0)] + GOOD[1:])),
    Case("negative IDs", ["-m", "BPR", "-d", "mine"],
         [r"mine\.inter: negative userID -3 at line 3; IDs must be 0-based"],
         make=mine(GOOD[:1] + [(-3,) + GOOD[1][1:]] + GOOD[2:])),
    Case("x_label out of range", ["-m", "BPR", "-d", "mine"],
         [r"column x_label has values \[7\]; expected only 0 \(train\), 1 \(valid\) and 2 \(test\)"],
         make=mine(GOOD[:-1] + [(2, 5, 1, 0, 7)])),
    Case("empty split", ["-m", "BPR", "-d", "mine"],
         [r"mine\.inter: the test split \(x_label=2\) is empty"],
         make=mine([r for r in GOOD if r[4] != 2])),
    Case("no rows", ["-m", "BPR", "-d", "mine"], [r"mine\.inter: no interactions"], make=mine([])),
    # --- data: feature files (read by FREEDOM's base class) ---
    Case("feature rows != n_items", ["-m", "FREEDOM", "-d", "mine"] + SMALL,
         [r"image_feat\.npy \(vision_feature_file\): has 5 rows but the dataset has n_items=6"],
         make=mine(features={"image_feat.npy": np.ones((5, 8), np.float32)})),
    Case("1-D feature array", ["-m", "FREEDOM", "-d", "mine"] + SMALL,
         [r"image_feat\.npy \(vision_feature_file\): expected a 2-D array \(n_items=6, dim\), got shape \(6,\)"],
         make=mine(features={"image_feat.npy": np.ones(6, np.float32)})),
    Case("NaN features", ["-m", "FREEDOM", "-d", "mine"] + SMALL,
         [r"text_feat\.npy \(text_feature_file\): 1 row\(s\) contain NaN or inf, first item IDs \[2\]"],
         make=mine(features={"image_feat.npy": GOOD_V,
                             "text_feat.npy": np.where(np.arange(6)[:, None] == 2, np.nan, 1.0)})),
    Case("empty .npy", ["-m", "FREEDOM", "-d", "mine"] + SMALL,
         [r"image_feat\.npy \(vision_feature_file\): the file is empty \(0 bytes\)"],
         make=mine(features={"image_feat.npy": b""})),
    Case("truncated .npy", ["-m", "FREEDOM", "-d", "mine"] + SMALL,
         [r"image_feat\.npy \(vision_feature_file\): not a readable \.npy array \(truncated"],
         make=mine(features={"image_feat.npy": TRUNCATED})),
    Case("non-numeric dtype", ["-m", "FREEDOM", "-d", "mine"] + SMALL,
         [r"image_feat\.npy \(vision_feature_file\): expected a real numeric dtype, got <U1"],
         make=mine(features={"image_feat.npy": np.array([["a", "b"]] * 6)})),
    Case("object dtype", ["-m", "FREEDOM", "-d", "mine"] + SMALL,
         [r"image_feat\.npy \(vision_feature_file\): not a readable \.npy array \(object arrays"],
         make=mine(features={"image_feat.npy": npy_bytes(np.array([[1, "a"]] * 6, dtype=object))})),
    Case("truncated .npy read by MOTOR only", ["-m", "BPR", "-d", "mine", "--motor"] + SMALL,
         [r"feature file .*text_feat\.npy \(text_feature_file\): not a readable \.npy array"],
         make=mine(features={"image_feat.npy": GOOD_V, "text_feat.npy": TRUNCATED})),
    Case("--motor without feature files", ["-m", "BPR", "-d", "mine", "--motor"] + SMALL,
         [r"MOTOR needs item features and found none for motor_modalities=\['v', 't'\]",
          r"image_feat\.npy \(missing\)"], make=mine()),
    # --- config values ---
    Case("--epochs=abc", ["-m", "BPR", "--epochs=abc"],
         [r"config key 'epochs' must be a positive integer, got 'abc'"]),
    Case("--topk=[0]", ["-m", "BPR", "--topk=[0]"],
         [r"config key 'topk' must be a list of positive integers, got \[0\]"]),
    Case("--topk above n_items", ["-m", "BPR", "--topk=[20,500]"],
         [r"config key 'topk': 500 exceeds the number of items \(300\)"]),
    Case("--valid_metric=Recall@7", ["-m", "BPR", "--valid_metric=Recall@7"],
         [r"config key 'valid_metric' is 'Recall@7'; expected one of the computed metrics: .*recall@20"]),
    Case("--learner=adamx", ["-m", "BPR", "--learner=adamx"],
         [r"config key 'learner' is 'adamx'; expected one of adam, sgd"]),
    Case("--learning_rate_scheduler=[0.9]", ["-m", "BPR", "--learning_rate_scheduler=[0.9]"],
         [r"config key 'learning_rate_scheduler' must be \[factor, step\].*got \[0\.9\]"]),
    Case("--train_batch_size=0", ["-m", "BPR", "--train_batch_size=0"],
         [r"config key 'train_batch_size' must be a positive integer, got 0"]),
    Case("--learning_rate=abc", ["-m", "BPR", "--learning_rate=abc"],
         [r"config key 'learning_rate' must be a number > 0, got 'abc'"]),
    Case("--seed=abc", ["-m", "BPR", "--seed=abc"], [r"config key 'seed' must be an integer .*got 'abc'"]),
    Case("unparsable value", ["-m", "BPR", "--seed=[1,2"],
         [r"cannot parse the command-line value '\[1,2' as YAML: expected ',' or '\]'"]),
    Case("--reg_weight=abc (a model key)", ["-m", "BPR", "--reg_weight=abc"],
         [r"config key 'reg_weight' expects a number \(the yaml default is \[2\.0, .*\]\), "
          r"or a list .*got 'abc'"]),
    Case("--knn_k=2.5 (an integer model key)", ["-m", "FREEDOM", "--knn_k=2.5"],
         [r"config key 'knn_k' expects an integer \(the yaml default is 10\); got 2\.5"]),
    Case("--knn_k= (no value)", ["-m", "FREEDOM", "--knn_k="],
         [r"config key 'knn_k' was given no value \(null\); expected an integer \(the yaml default is 10\)"]),
    Case("--knn_k=[5,10] (a list, not a grid key)", ["-m", "FREEDOM", "--knn_k=[5,10]"],
         [r"config key 'knn_k' was given a list \[5, 10\] but is not a grid key \(hyper_parameters\)"]),
    Case("grid key dropped from hyper_parameters", ["-m", "FREEDOM", "--hyper_parameters=[reg_weight]"],
         [r"config key 'dropout' is the list \[0\.8, 0\.9\] but is no longer a grid key"]),
    Case("--use_gpu=maybe", ["-m", "BPR", "--use_gpu=maybe"], [r"config key 'use_gpu' expects True or False"]),
    Case("--clip_grad_norm=5", ["-m", "BPR", "--clip_grad_norm=5"],
         [r"config key 'clip_grad_norm' must be null or a mapping like \{max_norm: 5\.0\}"]),
    Case("--nan_loss=maybe", ["-m", "BPR", "--nan_loss=maybe"],
         [r"config key 'nan_loss' is 'maybe'; expected raise \(a TrainingError naming the epoch and batch\) "
          r"or stop"]),
    Case("--num_threads=abc", ["-m", "BPR", "--num_threads=abc"],
         [r"config key 'num_threads' must be null or a positive integer, got 'abc'"]),
    Case("--checkpoint_every=-1", ["-m", "BPR", "--checkpoint_every=-1"],
         [r"config key 'checkpoint_every' must be an integer >= 0"]),
    Case("--topk_file under a regular file", ["-m", "BPR", "--topk_file={tmp}/a_file/top.tsv"],
         [r"config key 'topk_file' is '.*a_file/top\.tsv', but .*a_file is not a writable directory"],
         make=lambda data: (data.parent / "a_file").write_text("x")),
    Case("unknown model", ["-m", "FREDOM"], [r"unknown model 'FREDOM'; available: .*BPR.*FREEDOM"]),
    Case("unknown dataset", ["-m", "BPR", "-d", "nope"],
         [r"unknown dataset 'nope': no configs/dataset/nope\.yaml and no folder .*nope; available: .*toy"]),
    # --- MOTOR ---
    Case("--motor on DualGNN", ["-m", "DualGNN", "--motor"],
         [r"DualGNN has no item ID embedding table: .*run DualGNN without --motor"]),
    Case("--motor_tcn=foo", ["-m", "BPR", "--motor", "--motor_tcn=foo"],
         [r"unknown TCN variant 'foo' \(motor_tcn\): expected one of agnostic"]),
    Case("--motor_quantizer=foo", ["-m", "BPR", "--motor", "--motor_quantizer=foo"],
         [r"unknown quantizer 'foo' \(motor_quantizer\): expected one of pq"]),
    Case("--motor_nbits=40", ["-m", "BPR", "--motor", "--motor_nbits=40"],
         [r"nbits=40 is out of range: expected 1 <= nbits <= 16 .*config key motor_nbits"]),
    Case("--motor_nbits=abc", ["-m", "BPR", "--motor", "--motor_nbits=abc"],
         [r"config key 'motor_nbits' expects an integer \(the yaml default is 8\); got 'abc'"]),
    Case("per-modality dict without t", ["-m", "BPR", "--motor", "--motor_num_subspaces={v: 4}"],
         [r"motor_num_subspaces: no value for modality 't' in \{'v': 4\}"]),
    Case("--motor_modalities=[x]", ["-m", "BPR", "--motor", "--motor_modalities=[x]"],
         [r"MOTOR needs item features and found none for motor_modalities=\['x'\]: x: config key "
          r"'x_feature_file' is not set"]),
    # --- resources and failures in the middle of a run ---
    Case("not enough memory for evaluation", ["-m", "BPR"],
         [r"the evaluation score matrix \(400 users x 300 items, float32\) needs 468\.8 KiB .* only 97\.7 KiB",
          r"lower eval_batch_size \(now 4096\) to at most 83"], patch=low_memory),
    Case("NaN loss in the second grid combination",
         ["-m", "BPR", "--epochs=2", "--reg_weight=1e-4", "--learning_rate=[0.01,.inf]",
          "--hyper_parameters=[learning_rate]"],
         [r"combination seed=999, learning_rate=inf: loss is (nan|inf) at epoch 0, batch \d+; "
          r"lower learning_rate or set clip_grad_norm"]),
    Case("NaN loss before any evaluation under nan_loss: stop",
         ["-m", "BPR", "--epochs=2", "--reg_weight=1e-4", "--learning_rate=.inf", "--nan_loss=stop"],
         [r"loss is not finite at epoch 0, batch \d+, before any evaluation: no model to keep under "
          r"nan_loss: stop"]),
]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    """One generated toy dataset for the whole module (runs write their caches elsewhere)."""
    data = tmp_path_factory.mktemp("shared") / "data"
    ensure_toy(str(data))
    return data


def outputs(tmp_path):
    return tmp_path / "out" / "result.json", tmp_path / "out" / "top.tsv"


def build_argv(case: Case, tmp_path: Path, toy_data: Path, run_dirs) -> List[str]:
    data = tmp_path / "data"
    if case.make:
        data.mkdir(parents=True, exist_ok=True)
        case.make(data)
    elif not any("-d" == a for a in case.argv):
        case = case._replace(argv=case.argv + ["-d", "toy"])
    result, top = outputs(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in case.argv]
    defaults = {"data_path": data if case.make else toy_data, "epochs": 1, "result_file": result,
                "topk_file": top, "num_threads": 1, **run_dirs}
    given = {a.split("=", 1)[0][2:] for a in argv if a.startswith("--")}
    return argv + [f"--{k}={v}" for k, v in defaults.items() if k not in given]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_a_clear_message_and_no_output(case, tmp_path, toy_data, run_dirs, capsys,
                                                             monkeypatch):
    if case.patch:
        case.patch(monkeypatch)
    argv = build_argv(case, tmp_path, toy_data, run_dirs)
    assert main(["run"] + argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    for pattern in case.expect:
        assert re.search(pattern, last), f"{pattern!r} not in {last!r}"
    result, top = outputs(tmp_path)
    assert not result.exists() and not top.exists()
    assert not list(result.parent.glob("*.tmp*")) if result.parent.exists() else True


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id", ["unknown model", "--epochs=abc", "missing data folder", "truncated .npy"])
def test_main_py_prints_one_error_line_and_no_traceback(case_id, tmp_path, toy_data, run_dirs):
    case = next(c for c in CASES if c.id == case_id)
    argv = build_argv(case, tmp_path, toy_data, run_dirs)
    done = subprocess.run([sys.executable, str(REPO / "main.py")] + argv, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(case.expect[0], done.stderr.strip().splitlines()[-1])
    assert not any(p.exists() for p in outputs(tmp_path))


def test_corrupt_token_cache_is_rebuilt_with_a_warning(tmp_path, toy_data, run_dirs):
    """Garbage written over the LMDB file of the token cache: the run warns, rebuilds it and succeeds."""
    result, _ = outputs(tmp_path)
    argv = ["-m", "BPR", "-d", "toy", "--motor", "--epochs=1", f"--data_path={toy_data}", "--num_threads=1",
            f"--result_file={result}"] + [f"--{k}={v}" for k, v in run_dirs.items()]
    assert main(["run"] + argv) == 0                               # fills the cache
    lmdb_file = Path(run_dirs["motor_cache_dir"]) / "data.mdb"
    size = lmdb_file.stat().st_size
    lmdb_file.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    result.unlink()
    done = subprocess.run([sys.executable, str(REPO / "main.py")] + argv, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"warning: token cache .*tokens' cannot be opened .*moved it to .*"
                                   r"rebuilding", done.stderr), done.stderr
    report = json.loads(result.read_text())["item_representation"]["motor"]["tokenizer"]
    assert not report["v"]["from_cache"] and not report["t"]["from_cache"]      # rebuilt, not read
    assert main(["run"] + argv) == 0                                           # and trusted again
    report = json.loads(result.read_text())["item_representation"]["motor"]["tokenizer"]
    assert report["v"]["from_cache"] and report["t"]["from_cache"]
