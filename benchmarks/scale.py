"""Catalogue scale: item parameters, memory and time of ID vs MOTOR from 10k to 1M items.

    python benchmarks/scale.py --items 10000,100000,1000000 --models BPR,LightGCN,FREEDOM \
        --variants id,motor --out /tmp/scale --num_threads 1

Time and memory only: the interactions are synthetic and the features random (no accuracy). For
``n`` items the data has n / 10 users (at least 1,000) with 100 training rows each (10 a item on
average, items drawn uniformly), and the first ``--eval_users`` users (10,000) one valid and one
test row each. The features are ``--dim``-d float32 (384, the width of the shared text features),
written once per size as ``text_feat_<dim>.npy``. MOTOR's tokens go through the token cache
(``OUT/token_cache``): the tokenization seconds reported are those of the fit, made by the first
MOTOR cell of a size. Extra ``--key=value`` arguments go to every cell's config (e.g.
``--motor_quantizer=pq --motor_fine_nbits=None``, docs/benchmarks.md says which the table used).

Each (model, variant, n) cell runs in its own process (so peak memory is its own) through the
runtime's own pieces (``build_model``, ``Trainer``'s training step, ``TopKEvaluator``) and measures:

* item parameters (the ID table, or MOTOR's token tables + network) and all parameters;
* tokenization seconds (MOTOR; inside model building) and model-building seconds;
* seconds per training step: the mean of ``--steps`` batches after ``--warmup``; seconds per epoch
  = that x the epoch's batches (estimated, not run whole);
* evaluation seconds: full-sort ranking of every test user over all items (``eval_item_chunk``
  items at a time);
* peak resident memory (VmHWM) of the whole cell, and of the evaluation alone (the peak is reset
  before it through ``/proc/self/clear_refs``), both including the mapped feature pages read; "eval
  adds" is the evaluation's peak minus the resident memory just before it.

A cell that fails (out of memory, a refused size) is recorded with its error; finished cells are
skipped when the command runs again (resume). ``--cells-only`` skips the report, ``--report-only``
the cells. Writes
``OUT/cells/*.json``, ``OUT/scale.md`` and ``OUT/scale.png`` (log-log).

``--tokenize-only`` measures only the tokenizer (one cell per size, e.g. ``--dim 4096`` for the 16 GB
feature matrix of 1M items): seconds and peak memory of ``fit_tokenize`` on the memory-mapped file,
the peak resident set (with the file's pages read) and the peak anonymous memory (without them).
"""
import argparse
import itertools
import json
import logging
import os
import resource
import subprocess
import sys
import time
import traceback

import numpy as np

USERS_PER_ITEM = 0.1
ROWS_PER_USER = 100
ROWS_PER_ITEM = 10          # with --users: each user has 10 n / users rows


def dataset_name(n_items: int, users=None) -> str:
    return f"synth{n_items}" if users is None else f"synth{n_items}u{users}"


def synthetic_dataset(out: str, n_items: int, dim: int, eval_users: int, seed: int = 0, users=None) -> str:
    """``OUT/data/<name>/``: the .inter file and ``text_feat_<dim>.npy`` (written once); the dataset
    name. ``users``: that many users with 10 n / users rows each (the default: module docstring)."""
    name = dataset_name(n_items, users)
    folder = os.path.join(out, "data", name)
    inter = os.path.join(folder, f"{name}.inter")
    feat = os.path.join(folder, f"text_feat_{dim}.npy")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    if not os.path.exists(inter):
        n_users = max(1000, int(n_items * USERS_PER_ITEM)) if users is None else int(users)
        per_user = ROWS_PER_USER if users is None else max(2, round(ROWS_PER_ITEM * n_items / n_users))
        users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
        items = rng.integers(0, n_items, len(users))
        items[:n_items] = np.arange(n_items)            # every item has a row, so n_items is exact
        rng.shuffle(items[:n_items])
        labels = np.zeros(len(users), dtype=np.int8)
        first = np.arange(min(eval_users, n_users)) * per_user
        labels[first], labels[first + 1] = 1, 2           # one valid and one test row per evaluated user
        tmp = inter + ".tmp"
        with open(tmp, "w") as handle:
            handle.write("userID\titemID\tx_label\n")
            block = 1_000_000
            for s in range(0, len(users), block):
                rows = np.stack([users[s:s + block], items[s:s + block], labels[s:s + block]], axis=1)
                np.savetxt(handle, rows, fmt="%d", delimiter="\t")
        os.replace(tmp, inter)
    if not os.path.exists(feat):
        tmp = feat + ".tmp.npy"
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_items, dim))
        for s in range(0, n_items, 65536):
            array[s:s + 65536] = rng.standard_normal((min(65536, n_items - s), dim), dtype=np.float32)
        array.flush()
        del array
        os.replace(tmp, feat)
    return name


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (``VmHWM``, ``VmRSS``, ``RssAnon``) in bytes; 0 without it."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_bytes() -> int:
    """VmHWM of this process (peak resident memory since start or the last reset), in bytes."""
    return _status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class AnonymousPeak:
    """The largest RssAnon (memory not backed by a file: what the mapped feature pages are not) seen
    by a thread that reads /proc/self/status every ``every`` seconds while the block runs."""

    def __init__(self, every: float = 0.1):
        import threading
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_bytes("RssAnon"))
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_bytes("RssAnon"))


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def cell_overrides(args, name: str) -> dict:
    from mmrec_motor.config import parse_overrides
    return {"data_path": os.path.join(args.out, "data"), "text_feature_file": f"text_feat_{args.dim}.npy",
            "vision_feature_file": "", "motor_modalities": ["t"], "num_threads": args.num_threads,
            "use_gpu": args.use_gpu, "verbose": False,
            "graph_cache_dir": os.path.join(args.out, "graph_cache", name), "log_dir": None,
            "motor_cache_dir": os.path.join(args.out, "token_cache"),
            "checkpoint_dir": None, **parse_overrides(args.rest)}


def measure_cell(args) -> dict:
    """One (model, variant, n) cell, in this process (module docstring)."""
    import torch

    from mmrec_motor.config import Config
    from mmrec_motor.data.loader import load_data
    from mmrec_motor.experiments.plan import first_grid_values
    from mmrec_motor.quick_start import build_model, build_optimizer, count_parameters, evaluator, sampler_of
    from mmrec_motor.threads import apply_threads
    from mmrec_motor.trainer import Trainer, init_seed

    name = dataset_name(args.n_items, args.users)
    values = first_grid_values(args.model, name, cell_overrides(args, name))
    values["motor"] = args.variant == "motor"
    config = Config(args.model, name, values)
    apply_threads(config["num_threads"])
    began = time.perf_counter()
    data = load_data(config)
    load_seconds = time.perf_counter() - began
    init_seed(999)
    began = time.perf_counter()
    model, item = build_model(config, data)
    build_seconds = time.perf_counter() - began
    tokenizer = (item.get("motor") or {}).get("tokenizer") or {}
    trainer = Trainer(config, model, logging.getLogger("scale"), build_optimizer(config, model))
    sampler = sampler_of(config, data)
    model.pre_epoch_processing()
    batches = iter(sampler)
    steps = min(args.steps, len(sampler) - args.warmup)
    trainer._train_epoch(itertools.islice(batches, args.warmup), epoch=0)
    began = time.perf_counter()
    trainer._train_epoch(itertools.islice(batches, steps), epoch=0)
    step_seconds = (time.perf_counter() - began) / steps
    train_peak = _peak_bytes()
    test = evaluator(config, data, data.test)
    before_eval = _status_bytes("VmRSS")
    reset = _reset_peak()
    began = time.perf_counter()
    test.evaluate(model)
    eval_seconds = time.perf_counter() - began
    return {
        "model": args.model, "variant": args.variant, "n_items": data.n_items, "n_users": data.n_users,
        "fixed_users": args.users,
        "n_train": len(data.train), "eval_users": len(test.users), "dim": args.dim,
        "num_threads": torch.get_num_threads(), "device": str(config["device"]),
        "item_params": int(item["params"]), "params": count_parameters(model)["total"],
        "tokenize_seconds": {m: s.get("seconds") for m, s in tokenizer.items()} if tokenizer else None,
        "build_seconds": build_seconds, "load_seconds": load_seconds,
        "train_batch_size": config["train_batch_size"], "batches_per_epoch": len(sampler),
        "steps_timed": steps, "step_seconds": step_seconds, "epoch_seconds_est": step_seconds * len(sampler),
        "eval_seconds": eval_seconds, "eval_item_chunk": config["eval_item_chunk"],
        "eval_batch_size": config["eval_batch_size"],
        "peak_rss_bytes": max(train_peak, _peak_bytes()), "eval_peak_rss_bytes": _peak_bytes() if reset else None,
        "rss_before_eval_bytes": before_eval,
    }


def measure_tokenizer(args) -> dict:
    """``fit_tokenize`` alone on the memory-mapped features of one size (``--tokenize-only``)."""
    from mmrec_motor.config import Config
    from mmrec_motor.data.features import load_named
    from mmrec_motor.motor.hook import tokenizer_params
    from mmrec_motor.motor.tokenizer import fit_tokenize
    from mmrec_motor.threads import apply_threads

    name = dataset_name(args.n_items, args.users)
    config = Config("BPR", name, {**cell_overrides(args, name), "motor": True})
    apply_threads(config["num_threads"])
    ((path, features),) = load_named(config, {"t": "text_feature_file"}, args.n_items).values()
    params = tokenizer_params(config, "t")
    began = time.perf_counter()
    with AnonymousPeak() as anonymous:
        result = fit_tokenize(features, params, args.n_items, name=path)
    seconds = time.perf_counter() - began
    keep = ("quantizer", "num_subspaces", "nbits", "dim_in", "dim_quantized", "n_train", "recon_rel")
    return {"n_items": args.n_items, "dim": args.dim, "feature_bytes": int(features.nbytes),
            "seconds": seconds, "peak_rss_bytes": _peak_bytes(), "peak_anonymous_bytes": anonymous.peak,
            **{k: result.stats[k] for k in keep}}


def _cell_path(args, model, variant, n) -> str:
    size = n if args.users is None else f"{n}u{args.users}"
    stem = f"tokenize-{size}-d{args.dim}" if args.tokenize_only else f"{model}-{variant}-{size}"
    return os.path.join(args.out, "cells", stem + ".json")


def run_cells(args) -> None:
    os.makedirs(os.path.join(args.out, "cells"), exist_ok=True)
    with open(os.path.join(args.out, "commands.txt"), "a") as handle:      # what the report shows
        handle.write("python benchmarks/scale.py " + " ".join(sys.argv[1:]) + "\n")
    models = ["-"] if args.tokenize_only else args.models.split(",")
    variants = ["-"] if args.tokenize_only else args.variants.split(",")
    for n in [int(v) for v in args.items.split(",")]:
        synthetic_dataset(args.out, n, args.dim, args.eval_users, users=args.users)
        for model, variant in itertools.product(models, variants):
            path = _cell_path(args, model, variant, n)
            if os.path.exists(path):
                print(f"{os.path.basename(path)}: done before, skipped", flush=True)
                continue
            command = [sys.executable, os.path.abspath(__file__), "--cell", "--out", args.out,
                       "--n_items", str(n), "--model", model, "--variant", variant, "--dim", str(args.dim),
                       "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--num_threads", str(args.num_threads), "--eval_users", str(args.eval_users)]
            command += [] if args.users is None else ["--users", str(args.users)]
            command += (["--tokenize-only"] if args.tokenize_only else []) + \
                (["--use_gpu"] if args.use_gpu else []) + args.rest
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                error = {"model": model, "variant": variant, "n_items": n, "dim": args.dim,
                         "error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1],
                         "returncode": done.returncode}
                with open(path, "w") as handle:
                    json.dump(error, handle, indent=1)
            print(f"{os.path.basename(path)}: {'ok' if done.returncode == 0 else 'FAILED'} "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)


def _gib(n):
    return "-" if n is None else f"{n / 2 ** 30:.2f}"


def report(args) -> None:
    from mmrec_motor.experiments.tables import markdown_table, save_png
    cells = []
    folder = os.path.join(args.out, "cells")
    for file in sorted(os.listdir(folder)):
        with open(os.path.join(folder, file)) as handle:
            cells.append(json.load(handle))
    train = sorted((c for c in cells if "model" in c),
                   key=lambda c: (c.get("fixed_users") or 0, c["model"], c["n_items"], c["variant"]))
    fixed = [c for c in train if c.get("fixed_users")]
    train = [c for c in train if not c.get("fixed_users")]
    rows, fixed_rows = [], []
    for c in train + fixed:
        target = fixed_rows if c.get("fixed_users") else rows
        if "error" in c:
            target.append([c["model"], c["variant"], f"{c['n_items']:,}", f"failed: {c['error']}"] + ["-"] * 8)
            continue
        tok = c.get("tokenize_seconds") or {}
        target.append([c["model"], c["variant"].upper() if c["variant"] == "id" else "MOTOR", f"{c['n_items']:,}",
                     f"{c['n_users']:,}", f"{c['item_params']:,}", f"{sum(tok.values()):.1f}" if tok else "-",
                     f"{c['step_seconds']:.4f}", f"{c['epoch_seconds_est']:.1f}",
                     f"{c['eval_seconds']:.1f} ({c['eval_users']:,} users)", _gib(c["peak_rss_bytes"]),
                     _gib(c.get("eval_peak_rss_bytes")),
                     _gib(c["eval_peak_rss_bytes"] - c["rss_before_eval_bytes"])
                     if c.get("eval_peak_rss_bytes") and c.get("rss_before_eval_bytes") else "-"])
    header = ["model", "item repr", "items", "users", "item params", "tokenize s", "s/step",
              "s/epoch (est.)", "eval s", "peak RSS GiB", "eval peak GiB", "eval adds GiB"]
    commands_file = os.path.join(args.out, "commands.txt")
    commands = open(commands_file).read().splitlines() if os.path.exists(commands_file) else []
    lines = ["# Catalogue scale", "", "```bash", *dict.fromkeys(commands), "```", "",
             markdown_table(header, rows), ""]
    if fixed_rows:
        lines += [f"## The same users at every size ({fixed[0]['fixed_users']:,}: the item side alone)", "",
                  markdown_table(header, fixed_rows), ""]
    tokenize = [c for c in cells if "model" not in c]
    if tokenize:
        lines += ["## Tokenizer alone (memory-mapped features)", "", markdown_table(
            ["items", "dim", "features GiB", "quantizer", "trained on", "seconds", "peak RSS GiB",
             "peak anonymous GiB", "recon_rel"],
            [[f"{c['n_items']:,}", c["dim"], _gib(c.get("feature_bytes")), c.get("quantizer", "-"),
              f"{c['n_train']:,}" if "n_train" in c else "-", f"{c['seconds']:.0f}" if "seconds" in c else "-",
              _gib(c.get("peak_rss_bytes")), _gib(c.get("peak_anonymous_bytes")),
              f"{c['recon_rel']:.3f}" if "recon_rel" in c else c.get("error", "")]
             for c in sorted(tokenize, key=lambda c: (c["dim"], c["n_items"]))]), ""]
    with open(os.path.join(args.out, "scale.md"), "w") as handle:
        handle.write("\n".join(lines))
    ok = [c for c in train if "error" not in c]

    def draw(axes):
        for ax, (key, label) in zip(axes[0], [("item_params", "item parameters"), ("step_seconds", "s / step"),
                                              ("peak_rss_bytes", "peak RSS (bytes)")]):
            for (model, variant), group in itertools.groupby(
                    sorted(ok, key=lambda c: (c["model"], c["variant"], c["n_items"])),
                    key=lambda c: (c["model"], c["variant"])):
                group = list(group)
                ax.plot([c["n_items"] for c in group], [max(c[key], 1e-9) for c in group],
                        marker="o", linestyle="-" if variant == "motor" else "--", label=f"{model} {variant}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("items")
            ax.set_title(label)
        axes[0][0].legend(fontsize=7)
    if ok:
        save_png(os.path.join(args.out, "scale.png"), 1, 3, 4.2, 3.4, draw)
    print(f"wrote {os.path.join(args.out, 'scale.md')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default="10000,100000,1000000")
    parser.add_argument("--models", default="BPR,LightGCN,FREEDOM")
    parser.add_argument("--variants", default="id,motor")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--steps", type=int, default=20, help="training batches timed per cell")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--eval_users", type=int, default=10000)
    parser.add_argument("--users", type=int, default=None,
                        help="a fixed number of users at every size (10 n / users rows each), to see the "
                             "item side alone; default n / 10 users (at least 1,000) with 100 rows each")
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--use_gpu", action="store_true")
    parser.add_argument("--tokenize-only", dest="tokenize_only", action="store_true")
    parser.add_argument("--cells-only", dest="cells_only", action="store_true")
    parser.add_argument("--report-only", dest="report_only", action="store_true",
                        help="rewrite scale.md / scale.png from the cells in OUT")
    # one cell (the parent starts these)
    parser.add_argument("--cell", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n_items", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args, args.rest = parser.parse_known_args()
    if args.cell:
        try:
            result = measure_tokenizer(args) if args.tokenize_only else measure_cell(args)
        except Exception:
            traceback.print_exc()
            raise SystemExit(1)
        with open(_cell_path(args, args.model, args.variant, args.n_items), "w") as handle:
            json.dump(result, handle, indent=1)
        return
    if not args.report_only:
        run_cells(args)
    if not args.cells_only:
        report(args)


if __name__ == "__main__":
    main()
