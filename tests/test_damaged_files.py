"""Every file a run reads or writes, damaged or unusual (issue #16): a named error (exit 2, one line
``error: ...`` naming the file) or a documented recovery (a warning, and the run goes on); never a
crash, a traceback or a misleading message.

Cases whose failure mode kills the process (a truncated LMDB file: SIGBUS) run in a subprocess.
Read-only folders are made with ``chmod`` and, where the tests run as root (which ignores the mode),
with ``chattr +i``; where neither is possible those tests are skipped, and the same logic is tested
with the writability probe patched.
"""
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrec_motor import resources
from mmrec_motor.cli import main
from mmrec_motor.config import Config, ConfigError
from mmrec_motor.data.checks import path_problem
from mmrec_motor.data.dataset import RecData, Split
from mmrec_motor.data.sampler import BPRSampler
from mmrec_motor.data.toy import ensure_toy
from mmrec_motor.evaluation import TopKEvaluator
from mmrec_motor.models import graphs
from mmrec_motor.motor import cache as cache_module
from mmrec_motor.motor.cache import TokenCache, lmdb_file_problem, user_cache_dir, writable_dir
from mmrec_motor.motor.tokenizer import TokenizerParams
from tests.conftest import REPO, write_inter


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("damaged") / "data"
    ensure_toy(str(data))
    return data


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_main(args, cwd, **env):
    return subprocess.run([sys.executable, str(REPO / "main.py")] + [str(a) for a in args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=_env(**env))


def last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


@pytest.fixture
def read_only():
    """``read_only(folder)`` makes a folder that no file can be created in, or skips the test."""
    frozen = []

    def can_write(folder: Path) -> bool:        # for real: writable_dir also reads the mode bits
        try:
            os.close(tempfile.mkstemp(dir=folder)[0])
            return True
        except OSError:
            return False

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o555)
        if can_write(folder) and shutil.which("chattr"):                       # root ignores the mode
            if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
                frozen.append(folder)
        if can_write(folder):
            pytest.skip("cannot make a read-only folder here (root without chattr +i)")
        return folder

    yield make
    for folder in frozen:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    for folder in frozen:
        os.chmod(folder, 0o755)


# --- the LMDB token cache ------------------------------------------------------------------------------

def _filled_cache(path: Path) -> None:
    rng = np.random.default_rng(0)
    with TokenCache(str(path)) as cache:
        for i in range(40):
            cache.put(f"k{i}".encode(), rng.integers(0, 16, size=(2000, 4)), {})


def test_lmdb_file_problem_reads_the_meta_pages_without_mapping(tmp_path):
    folder = tmp_path / "cache"
    assert lmdb_file_problem(str(folder)) is None                      # absent: LMDB creates it
    _filled_cache(folder)
    data = folder / "data.mdb"
    whole = data.read_bytes()
    assert lmdb_file_problem(str(folder)) is None
    data.write_bytes(whole[: len(whole) // 3])
    assert re.match(r"data\.mdb is \d+ bytes but its meta page names \d+ pages of 4096 bytes .*truncated",
                    lmdb_file_problem(str(folder)))
    data.write_bytes(b"x" * len(whole))
    assert "not an LMDB file" in lmdb_file_problem(str(folder))
    data.write_bytes(whole[:100])
    assert "shorter than one LMDB meta page" in lmdb_file_problem(str(folder))
    data.write_bytes(whole[:4096] + b"\0" * 4096 + whole[8192:])
    assert "meta page 1 of data.mdb is damaged" in lmdb_file_problem(str(folder))
    data.write_bytes(b"")
    assert lmdb_file_problem(str(folder)) is None                      # empty: LMDB initialises it


def test_truncated_token_cache_is_moved_aside_not_a_bus_error(tmp_path, toy_data):
    """Before: a truncated data.mdb killed every later --motor run with SIGBUS (rc 135 / -7)."""
    cache = tmp_path / "tokens"
    args = ["-m", "BPR", "-d", "toy", "--motor", "--epochs=1", f"--data_path={toy_data}", "--num_threads=1",
            f"--motor_cache_dir={cache}", f"--log_dir={tmp_path / 'log'}", "--use_gpu=False",
            f"--checkpoint_dir={tmp_path / 'saved'}", f"--result_file={tmp_path / 'r.json'}"]
    assert main(["run"] + args) == 0                                   # fills the cache
    data = cache / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    done = run_main(args, tmp_path)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.returncode != -signal.SIGBUS
    assert re.search(r"warning: token cache '.*tokens' cannot be opened \(data\.mdb is \d+ bytes but its meta "
                     r"page names .*truncated\); moved it to '.*tokens\.corrupt-\d+' and rebuilding", done.stderr)
    report = json.loads((tmp_path / "r.json").read_text())["item_representation"]["motor"]["tokenizer"]
    assert not report["v"]["from_cache"]                              # rebuilt
    assert main(["run"] + args) == 0                                   # and read again
    report = json.loads((tmp_path / "r.json").read_text())["item_representation"]["motor"]["tokenizer"]
    assert report["v"]["from_cache"]


def test_damaged_lmdb_page_is_moved_aside_when_read(tmp_path):
    """Garbage over inner pages (size and meta pages intact): LMDB reports MDB_CORRUPTED on a read;
    before, that propagated as a traceback."""
    folder = tmp_path / "cache"
    _filled_cache(folder)
    data = folder / "data.mdb"
    raw = bytearray(data.read_bytes())
    raw[3 * 4096: 8 * 4096] = b"\xab" * (5 * 4096)
    data.write_bytes(bytes(raw))
    code = ("import warnings, numpy as np\n"
            "from mmrec_motor.motor.cache import TokenCache\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            f"    cache = TokenCache({str(folder)!r})\n"
            "    values = [cache.get(f'k{i}'.encode()) for i in range(40)]\n"
            "    cache.put(b'new', np.zeros((3, 4), np.int64), {})\n"
            "print('WARN', [str(w.message) for w in seen])\n"
            "print('BACK', cache.get(b'new')[0].shape)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "a damaged page: CorruptedError" in done.stdout and "BACK (3, 4)" in done.stdout
    assert any(p.name.startswith("cache.corrupt-") for p in tmp_path.iterdir())


# --- read-only data folders: caches go to the user cache directory ----------------------------------------

def test_read_only_data_folder_puts_both_caches_in_the_user_cache_dir(tmp_path, toy_data, read_only,
                                                                     monkeypatch):
    """Before: a traceback from models/graphs.py (the graph cache is written beside the data)."""
    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    read_only(data / "toy")
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    args = ["-m", "FREEDOM", "-d", "toy", "--motor", "--epochs=1", f"--data_path={data}", "--use_gpu=False",
            f"--log_dir={tmp_path / 'log'}", f"--checkpoint_dir={tmp_path / 'saved'}", "--num_threads=1"]
    done = run_main(args, tmp_path, XDG_CACHE_HOME=xdg)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    graph_dir = user_cache_dir("graph_cache", str(data / "toy" / "graph_cache"))
    token_dir = user_cache_dir("token_cache", str(data / "toy" / "motor_cache"))
    assert f"warning: graph cache {data / 'toy' / 'graph_cache'} cannot be written" in done.stderr
    assert f"using {graph_dir} instead (set graph_cache_dir" in done.stderr
    assert f"warning: MOTOR token cache {data / 'toy' / 'motor_cache'} cannot be written" in done.stderr
    assert graph_dir.startswith(str(xdg / "mmrec-motor" / "graph_cache" / "toy-"))
    assert list(Path(graph_dir).glob("*.pt")) and (Path(token_dir) / "data.mdb").is_file()
    assert not (data / "toy" / "graph_cache").exists()


def test_unwritable_graph_cache_falls_back_and_is_read_back(tmp_path, monkeypatch):
    """The same logic without a real read-only folder: the probe says 'Read-only file system'."""
    blocked = str(tmp_path / "data" / "toy" / "graph_cache")
    real = cache_module.writable_dir

    def probe(path):
        return "Read-only file system" if str(path).startswith(str(tmp_path / "data")) else real(path)

    monkeypatch.setattr(cache_module, "writable_dir", probe)
    monkeypatch.setattr(graphs, "writable_dir", probe)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    builds = []

    def build():
        builds.append(1)
        return torch.eye(3).to_sparse()

    with pytest.warns(UserWarning, match=r"graph cache .*graph_cache cannot be written \(Read-only file "
                                         r"system\); using .*xdg/mmrec-motor/graph_cache/toy-\w+ instead"):
        first = graphs.cached_graph(blocked, ["knn", 3], build, "cpu")
    second = graphs.cached_graph(blocked, ["knn", 3], build, "cpu")
    assert len(builds) == 1 and torch.equal(first.to_dense(), second.to_dense())
    assert not os.path.exists(blocked)


def test_unwritable_everywhere_runs_without_a_graph_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "writable_dir", lambda path: "Permission denied")
    monkeypatch.setattr(graphs, "writable_dir", lambda path: "Permission denied")
    with pytest.warns(UserWarning, match=r"cannot be written \(Permission denied\), nor .* running without it"):
        graph = graphs.cached_graph(str(tmp_path / "g"), ["x"], lambda: torch.eye(2).to_sparse(), "cpu")
    assert graph.shape == (2, 2)


# --- IDs that imply tables larger than memory -------------------------------------------------------------

@pytest.mark.parametrize("column", ["userID", "itemID"])
def test_a_stray_huge_id_is_named_before_anything_is_allocated(tmp_path, run_dirs, capsys, column):
    """Before: advice to lower eval_batch_size (itemID), or tens of GB allocated, then an OOM traceback."""
    rows = [(u, i, 1, 0, 0) for u in range(4) for i in range(6)] + [(u, 6 + u, 1, 0, 1) for u in range(4)] + \
        [(u, 10 + u, 1, 0, 2) for u in range(4)]
    huge = 10 ** 9
    rows[7] = (huge, 1, 1, 0, 0) if column == "userID" else (1, huge, 1, 0, 0)
    write_inter(tmp_path / "data" / "mine", "mine", rows)
    args = ["run", "-m", "BPR", "-d", "mine", f"--data_path={tmp_path / 'data'}", "--topk=[5]",
            "--valid_metric=Recall@5"] + [f"--{k}={v}" for k, v in run_dirs.items()]
    assert main(args) == 2
    err = last_error(capsys)
    kind = "n_users" if column == "userID" else "n_items"
    assert re.search(rf"mine\.inter: line 9 has {column} 1000000000, so {kind} = max {column} \+ 1 = "
                     rf"1000000001 \(the file has \d+ distinct {column}s\) and the ID tables .* would allocate "
                     r"\d+\.\d GiB \(\d+ bytes\), but .* is available on cpu; IDs must be 0-based and dense", err)


def test_dense_ids_are_left_to_the_later_memory_guards(monkeypatch, tmp_path):
    """Dense IDs on a small machine are not called 'stray': the evaluation guard names its own key."""
    from mmrec_motor.data.checks import check_id_space

    monkeypatch.setattr(resources, "available_bytes", lambda device="cpu": 10)
    check_id_space("x.inter", "itemID", np.arange(1000), 1000, 64, 10, "cpu", ValueError)   # no error


# --- feature paths that exist but are not readable files ----------------------------------------------------

def _features(tmp_path, toy_data, kind):
    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    target = data / "toy" / "image_feat.npy"
    target.unlink()
    if kind == "directory":
        target.mkdir()
        expect = r"image_feat\.npy \(vision_feature_file\) is a directory"
    else:
        target.symlink_to(data / "toy" / "gone.npy")
        expect = r"image_feat\.npy \(vision_feature_file\) is a symbolic link to '.*gone\.npy', which does not exist"
    return data, expect


@pytest.mark.parametrize("kind", ["directory", "dangling link"])
@pytest.mark.parametrize("model, extra", [("FREEDOM", []), ("BPR", ["--motor"])])
def test_feature_path_that_is_not_a_readable_file_is_an_error(tmp_path, toy_data, run_dirs, capsys, kind,
                                                              model, extra):
    """Before: silently 'no image feature' (FREEDOM ran on text only; MOTOR skipped the modality)."""
    data, expect = _features(tmp_path, toy_data, kind)
    args = ["run", "-m", model, "-d", "toy", f"--data_path={data}", "--epochs=1"] + extra + \
        [f"--{k}={v}" for k, v in run_dirs.items()]
    assert main(args) == 2
    err = last_error(capsys)
    assert re.search(expect, err) and "expected a .npy array of shape (n_items" in err


def test_path_problem_names_what_is_wrong(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "nothing")
    os.mkfifo(tmp_path / "fifo")
    assert path_problem(str(tmp_path / "file")) is None and path_problem(str(tmp_path / "absent")) is None
    assert path_problem(str(tmp_path / "dir")) == "is a directory"
    assert "dangling link" in path_problem(str(tmp_path / "link"))
    assert "not a regular file" in path_problem(str(tmp_path / "fifo"))


def test_interaction_file_that_is_a_directory_is_named_as_such(tmp_path, run_dirs, capsys):
    """Before: 'interaction file not found' for a path that exists."""
    (tmp_path / "data" / "mine" / "mine.inter").mkdir(parents=True)
    assert main(["run", "-m", "BPR", "-d", "mine", f"--data_path={tmp_path / 'data'}"]
                + [f"--{k}={v}" for k, v in run_dirs.items()]) == 2
    assert re.search(r"interaction file .*mine/mine\.inter is a directory; expected a tab-separated \.inter "
                     r"file", last_error(capsys))


# --- checkpoints ---------------------------------------------------------------------------------------------

def _tensor_bytes_offset(path: Path, min_size: int = 4096):
    """(offset, size) in the checkpoint file of the largest tensor record (torch stores them uncompressed)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size >= min_size
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_corrupt_bytes_inside_a_checkpoint_tensor_name_the_file(tmp_path, toy_data, capsys):
    """Before: the run resumed, then failed with 'loss is nan ... lower learning_rate'."""
    saved, out = tmp_path / "saved", tmp_path / "r.json"
    args = ["run", "-m", "BPR", "-d", "toy", f"--data_path={toy_data}", f"--checkpoint_dir={saved}",
            f"--result_file={out}", f"--log_dir={tmp_path / 'log'}", "--num_threads=1", "--use_gpu=False",
            "--reg_weight=1e-4", "--stopping_step=100"]
    assert main(args + ["--epochs=2"]) == 0
    (last,) = saved.glob("*.pth.last")
    offset, size = _tensor_bytes_offset(last)
    raw = bytearray(last.read_bytes())
    raw[offset + size // 2: offset + size // 2 + 64] = b"\xff" * 64          # NaN floats inside a tensor
    last.write_bytes(bytes(raw))
    torch.load(last, weights_only=False)                                      # torch itself does not notice
    out.unlink()
    assert main(args + ["--epochs=4", "--resume=True"]) == 2
    err = last_error(capsys)
    assert err.startswith(f"error: cannot resume from {last}: its contents do not match the checksum written "
                          f"with it")
    assert "the file is damaged; delete it to start this run over, or run without --resume" in err
    assert not out.exists()


def test_checkpoints_carry_a_checksum_and_old_ones_still_load(tmp_path):
    from mmrec_motor.fileio import checksum_problem, digest, save_torch

    path = tmp_path / "c.pth"
    save_torch({"epoch": 1, "w": torch.arange(4.0), "rng": np.random.get_state()}, str(path))
    state = torch.load(path, weights_only=False)
    assert state["checksum"].startswith("sha256:") and checksum_problem(state) is None
    state["w"][0] = 7.0
    assert "do not match the checksum" in checksum_problem(state)
    assert checksum_problem({"epoch": 1, "w": torch.zeros(2)}) is None        # written before checksums
    assert digest({"a": torch.zeros(2, dtype=torch.bfloat16)}) != digest({"a": torch.zeros(2)})


# --- repeated rows ---------------------------------------------------------------------------------------------

def test_repeated_rows_are_reported_with_their_count_and_kept_as_mmrec(tmp_path):
    rows = [(0, 0, 1, 0, 0), (0, 1, 1, 0, 0), (0, 1, 1, 0, 0), (1, 2, 1, 0, 0), (1, 3, 1, 0, 0),
            (0, 2, 1, 0, 1), (1, 0, 1, 0, 1),
            (0, 3, 1, 0, 2), (0, 3, 1, 0, 2), (0, 3, 1, 0, 2), (1, 1, 1, 0, 2), (1, 2, 1, 0, 2)]
    write_inter(tmp_path / "mine", "mine", rows)
    config = Config("BPR", "mine", {"data_path": str(tmp_path), "use_gpu": False})
    from mmrec_motor.data.dataset import load_dataset

    with pytest.warns(UserWarning) as seen:
        data = load_dataset(config)
    messages = [str(w.message) for w in seen]
    assert any(re.search(r"mine\.inter: 2 repeated \(userID, itemID\) row\(s\) in test \(x_label=2\), e\.g\. "
                         r"user 0, item 3; kept, as MMRec: each row counts in the user's number of test items",
                         m) for m in messages), messages
    assert any("1 repeated (userID, itemID) row(s) in train (x_label=0)" in m for m in messages)
    assert any("1 test row(s) repeat a training (userID, itemID) pair, e.g. user 1, item 2" in m for m in messages)
    assert len(data.test) == 5 and len(data.train) == 5                  # kept
    evaluator = TopKEvaluator(data, data.test, ["recall"], [2], 10)
    assert evaluator.pos_len.tolist() == [3, 2]                           # rows, as MMRec's eval_len_list


def test_repeated_training_rows_do_not_fake_a_user_with_every_item():
    """Before: counting rows, user 0 (items 0, 0, 1 of 3 training items) had 'every training item'."""
    train = Split(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 2]))
    sampler = BPRSampler(train, 3, batch_size=4, seed=0)
    users, positives, negatives = next(iter(sampler))
    assert (negatives[users == 0] == 2).all()


# --- other files a run reads or writes ---------------------------------------------------------------------------

@pytest.mark.parametrize("content, expect", [
    (b"\xff\xfe not utf-8: \xff", r"toy_bad\.yaml: not UTF-8 text \(byte 0: invalid start byte\); expected a yaml"),
    (None, r"toy_bad\.yaml: cannot be read \(Is a directory\); expected a yaml file"),
])
def test_unreadable_yaml_names_the_file(tmp_path, monkeypatch, capsys, content, expect):
    from mmrec_motor import config as config_module

    root = tmp_path / "configs"
    shutil.copytree(config_module.CONFIG_ROOT, root)
    bad = root / "dataset" / "toy_bad.yaml"
    if content is None:
        bad.mkdir()
    else:
        bad.write_bytes(content)
    monkeypatch.setattr(config_module, "CONFIG_ROOT", root)
    with pytest.raises(ConfigError, match=expect):
        Config("BPR", "toy_bad")
    assert main(["run", "-m", "BPR", "-d", "toy_bad"]) == 2
    assert re.search(expect, last_error(capsys))


@pytest.mark.parametrize("key", ["log_dir", "checkpoint_dir", "result_file", "topk_file", "user_metrics_file"])
def test_output_in_a_read_only_folder_is_refused_before_training(tmp_path, toy_data, run_dirs, capsys,
                                                                 read_only, key):
    """Before: a PermissionError traceback when the log opened or the first checkpoint was saved, or
    (as root, where the mode bits pass) at the very end, after all the training."""
    frozen = read_only(tmp_path / "frozen")
    values = {**run_dirs, "data_path": toy_data, "epochs": 1, key: frozen / "sub" / "x"}
    assert main(["run", "-m", "BPR", "-d", "toy"] + [f"--{k}={v}" for k, v in values.items()]) == 2
    err = last_error(capsys)
    assert re.search(rf"error: config key {key!r} is '{re.escape(str(frozen / 'sub' / 'x'))}', but "
                     rf"{re.escape(str(frozen))} (cannot be written|is not a writable directory)", err), err
    assert not list((tmp_path / "saved").glob("*.pth"))                   # nothing trained


def test_outputs_in_missing_folders_are_created_and_stale_temporaries_removed(tmp_path, toy_data, run_dirs):
    result, top = tmp_path / "new" / "deeper" / "r.json", tmp_path / "other" / "top.tsv"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "new" / "deeper" / f"r.json.tmp{dead.pid}"
    values = {**run_dirs, "data_path": toy_data, "epochs": 1, "result_file": result, "topk_file": top}
    assert main(["run", "-m", "BPR", "-d", "toy"] + [f"--{k}={v}" for k, v in values.items()]) == 0
    stale.write_text('{"partial": ')
    assert main(["run", "-m", "BPR", "-d", "toy"] + [f"--{k}={v}" for k, v in values.items()]) == 0
    assert json.loads(result.read_text())["model"] == "BPR" and top.read_text().startswith("userID\t")
    assert not stale.exists()
    assert sorted(p.name for p in result.parent.iterdir()) == ["r.json"]


def test_toy_in_a_read_only_data_path_is_a_named_error(tmp_path, run_dirs, capsys, read_only):
    """Before: a PermissionError traceback from data/toy.py."""
    frozen = read_only(tmp_path / "frozen")
    values = {**run_dirs, "data_path": frozen, "epochs": 1}
    assert main(["run", "-m", "BPR", "-d", "toy"] + [f"--{k}={v}" for k, v in values.items()]) == 2
    assert re.search(rf"error: cannot generate the toy dataset in {re.escape(str(frozen))}: .*; pass "
                     r"--data_path=<a writable folder>", last_error(capsys))


def test_a_full_disk_while_saving_a_checkpoint_names_the_file(tmp_path, toy_data, run_dirs, capsys, monkeypatch):
    """Before: an OSError traceback with no file name (torch.save's write does not give one)."""
    import errno

    from mmrec_motor import trainer

    def full(obj, handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainer.torch, "save", full)
    values = {**run_dirs, "data_path": toy_data, "epochs": 1}
    assert main(["run", "-m", "BPR", "-d", "toy"] + [f"--{k}={v}" for k, v in values.items()]) == 2
    err = last_error(capsys)
    assert re.search(r"error: cannot read or write a file: \[Errno 28\] No space left on device: '.*saved/"
                     r"BPR-toy-id-\w+\.pth'", err), err
    assert not list(Path(run_dirs["checkpoint_dir"]).glob("*.tmp*"))


def test_a_folder_without_write_bits_counts_as_read_only_also_for_root(tmp_path, monkeypatch):
    """A data folder marked r-x (a shared, read-only copy) gets no cache even where the process could
    write it (root ignores the mode): the cache goes to the user's cache folder instead."""
    data = tmp_path / "data" / "toy"
    data.mkdir(parents=True)
    os.chmod(data, 0o555)
    try:
        problem = writable_dir(str(data / "graph_cache"))
        assert problem is not None and "no write permission bit" in problem and str(data) in problem
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        with pytest.warns(UserWarning, match="no write permission bit"):
            graph = graphs.cached_graph(str(data / "graph_cache"), ["x"], lambda: torch.eye(2).to_sparse(),
                                        "cpu")
        assert graph.shape == (2, 2) and not (data / "graph_cache").exists()
        assert list((tmp_path / "xdg" / "mmrec-motor" / "graph_cache").glob("toy-*/*.pt"))
    finally:
        os.chmod(data, 0o755)
    assert writable_dir(str(data / "graph_cache")) is None
