"""MOTOR inside upstream MMRec: the patch series and the hook it calls.

Two jobs:

* ``mmrec-motor patch PATH [--check | --revert]`` (:func:`patch_command`): applies the small
  ``git format-patch`` series in ``patches/`` (shipped in the wheel as ``mmrec_motor.patches``) to an
  MMRec checkout with ``git apply``, reports whether it applies / is applied / which hunk conflicts,
  or takes it out again. Idempotent: a second apply is a no-op with a message.
* :func:`motorize_mmrec` and :func:`motor_defaults`, which the patched MMRec calls:
  ``src/utils/configurator.py`` loads :func:`motor_defaults` under MMRec's own yamls when ``--motor``
  is given, and ``src/utils/quick_start.py`` calls :func:`motorize_mmrec` right after the model is
  built and moved to its device, before the trainer builds the optimizer.

The series (``patches/series`` lists the order), against MMRec commit :data:`PINNED_COMMIT`:

1. ``0001``: runs on current numpy/scipy and on CPU (``np.float``, ``dok_matrix._update``, lazy
   torchvision/PIL/matplotlib imports, ``.cuda()`` -> the configured device);
2. ``0002``: ``--motor`` and ``--key=value`` on MMRec's command line, MOTOR's config defaults, the
   :func:`motorize_mmrec` call;
3. ``0003``: the best hyper-parameter combination is chosen on validation, not test (MMRec #64).

``git apply`` runs inside PATH with git's repository discovery stopped at PATH, so PATH may be a git
checkout, a plain copy or an unpacked archive, even one nested inside another git work tree.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

#: the MMRec commit the patch series was made against (github.com/enoche/MMRec)
PINNED_COMMIT = "e775373b3ab1354a92165b0885ce4ab3dc4d7497"
REQUIRED_FILES = ("src/main.py", "src/utils/quick_start.py")
NEXT_COMMAND = "cd {src} && python main.py -m FREEDOM -d baby --motor"


class PatchError(ValueError):
    """A problem the user can fix (not an MMRec checkout, git missing, a conflicting hunk)."""


# --------------------------------------------------------------------------------------------------
# the patch files


def patch_files(root: Optional[Path] = None) -> List[Path]:
    """The patches in the order ``series`` lists them (blank lines and ``#`` comments skipped)."""
    from mmrec_motor.config import package_data_dir

    root = Path(root) if root is not None else package_data_dir("patches", "series", "MMRec patches")
    names = [line.split("#", 1)[0].strip() for line in (root / "series").read_text().splitlines()]
    paths = [root / name for name in names if name]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{root / 'series'} lists patches that are missing: {', '.join(missing)}")
    return paths


# --------------------------------------------------------------------------------------------------
# what the patched MMRec calls


def motor_defaults(model: Optional[str] = None) -> Dict[str, Any]:
    """MOTOR's ``motor_*`` defaults (``configs/model/MOTOR.yaml`` of this package), for MMRec's Config,
    then the ``motor_*`` keys that this package's yaml of ``model`` sets (e.g. FREEDOM's
    ``motor_fine_items_per_cell: 2``); MMRec's own model yamls have none.

    The patched configurator loads them first, so MMRec's own yamls (overall, dataset, an optional
    ``configs/model/MOTOR.yaml``, the model's) and then the command line override them.
    """
    from mmrec_motor.config import CONFIG_ROOT, load_yaml

    values = load_yaml(CONFIG_ROOT / "model" / "MOTOR.yaml")
    values.pop("hyper_parameters", None)
    backbone = CONFIG_ROOT / "model" / f"{model}.yaml"
    if model and model != "MOTOR" and backbone.is_file():
        values.update({k: v for k, v in load_yaml(backbone).items() if str(k).startswith("motor_")})
    return values


def _trainable(model) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _format_tokenizer(name: str, stats: Dict[str, Any]) -> str:
    util = stats.get("utilisation") or []
    parts = [f"{name}: {os.path.basename(str(stats.get('file', '')))}"]
    if "num_subspaces" in stats and "K" in stats:
        parts.append(f"{stats.get('quantizer', 'pq')} {stats['num_subspaces']} tokens x {stats['K']} codewords")
    if util:
        parts.append(f"codebook use {100.0 * sum(util) / len(util):.1f}%")
    if "collision_rate" in stats:
        parts.append(f"items sharing a token tuple {100.0 * stats['collision_rate']:.2f}%")
    parts.append("from cache" if stats.get("from_cache") else f"fitted in {stats.get('seconds', 0.0):.1f}s")
    return ", ".join(parts)


def motorize_mmrec(model, config, train_data=None, logger=None) -> Dict[str, Any]:
    """Replace an MMRec model's item ID table by MOTOR and log the parameter counts.

    Called by the patched ``quick_start`` after ``get_model(...)(config, train_data).to(device)`` and
    before ``get_trainer()(config, model, mg)`` builds the optimizer. ``config`` is MMRec's Config
    (``data_path``, ``dataset``, ``vision_feature_file``, ``text_feature_file``, ``seed`` and the
    ``motor_*`` keys); ``train_data`` (the TrainDataLoader) is only used for n_items when the model
    lacks it. Returns :func:`mmrec_motor.motor.motorize`'s report, with ``total_params_id`` and
    ``total_params_motor`` (trainable parameters of the whole model before and after) added.
    """
    import logging

    from mmrec_motor.motor.hook import config_get, motorize

    logger = logger if logger is not None else logging.getLogger()
    # faiss logs each optional CPU extension it fails to load at INFO, which MMRec's root logger shows
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    for key in ("motor_learning_rate", "motor_weight_decay"):
        if config_get(config, key) is not None:
            logger.warning(f"MOTOR: {key} is ignored in upstream MMRec (its trainer builds one "
                           f"parameter group from learning_rate and weight_decay)")
    before = _trainable(model)
    report = motorize(model, config, train_data)
    after = _trainable(model)
    report["total_params_id"], report["total_params_motor"] = before, after
    lines = [
        f"MOTOR: {report['backbone']}'s item representation replaced ({report['adapter']} -> token "
        f"tables + {report['tcn']} Token Cross Network, {report['n_items']} items x {report['dim']} dims, "
        f"modalities {','.join(report['modalities'])})",
        f"MOTOR: item representation parameters: ID table {report['item_repr_params_id']:,} -> MOTOR "
        f"{report['item_repr_params_motor']:,} (token tables {report['token_table_params']:,} + TCN "
        f"{report['tcn_params']:,})" + (f", plus {report['extra_params']:,} user rows made trainable"
                                        if report["extra_params"] else ""),
        f"MOTOR: total trainable parameters: {before:,} with the ID table -> {after:,} with MOTOR",
    ]
    lines += [f"MOTOR tokenizer {_format_tokenizer(m, s)}" for m, s in report["tokenizer"].items()]
    lines += [f"MOTOR note: {note}" for note in report["notes"]]
    for line in lines:
        logger.info(line)
    return report


# --------------------------------------------------------------------------------------------------
# applying the series


def _git(args: List[str], cwd: Path, ceiling: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if ceiling:
        # stop git's repository discovery at PATH: an MMRec copy nested in another work tree must not
        # be patched relative to that tree's top (git apply would skip paths outside the cwd)
        env["GIT_CEILING_DIRECTORIES"] = str(Path(cwd).resolve().parent)
    try:
        return subprocess.run(["git"] + args, cwd=str(cwd), env=env, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise PatchError("git is not installed: `mmrec-motor patch` applies the series with "
                         "`git apply` (or apply the files in mmrec_motor/patches with `patch -p1`)") from exc


def checkout_info(path) -> Dict[str, Any]:
    """Checks that ``path`` is an MMRec checkout; ``{'path', 'commit', 'is_git', 'pinned'}``.

    ``commit`` is None when ``path`` is not the top of a git work tree (a plain copy or an archive).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise PatchError(f"{root} is not a folder: expected the top of an MMRec checkout "
                         f"(git clone https://github.com/enoche/MMRec)")
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    if missing:
        raise PatchError(f"{root} is not an MMRec checkout: {', '.join(missing)} not found (give the "
                         f"folder that holds src/, not src/ itself)")
    commit = None
    top = _git(["rev-parse", "--show-toplevel"], root)
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == root.resolve():
        head = _git(["rev-parse", "HEAD"], root)
        if head.returncode == 0:
            commit = head.stdout.strip()
    return {"path": root, "commit": commit, "is_git": commit is not None,
            "pinned": commit == PINNED_COMMIT if commit else None}


def _apply(root: Path, patches: List[Path], reverse: bool = False, check: bool = False
           ) -> subprocess.CompletedProcess:
    args = ["apply", "--whitespace=nowarn"] + (["-R"] if reverse else []) + (["--check"] if check else [])
    ordered = list(reversed(patches)) if reverse else list(patches)
    return _git(args + [str(p.resolve()) for p in ordered], root)


def _message(done: subprocess.CompletedProcess) -> str:
    return (done.stderr or done.stdout or "").strip() or f"git apply exited with status {done.returncode}"


def series_state(root, patches: Optional[List[Path]] = None) -> Dict[str, Any]:
    """How far the series is applied in ``root``.

    Returns ``{'applied': k, 'total': n, 'rest_applies': bool, 'failing': name or None, 'message': str}``:
    the first k patches are in place (k = n: fully applied, k = 0: pristine), and whether patches
    k+1..n apply on top; when they do not, ``failing`` is the first one that does not and ``message``
    names it with git apply's complaint (the file and line of the hunk that conflicts).
    """
    root = Path(root)
    patches = list(patches) if patches is not None else patch_files()
    n = len(patches)
    applied = 0
    for k in range(n, 0, -1):
        if _apply(root, patches[:k], reverse=True, check=True).returncode == 0:
            applied = k
            break
    rest = patches[applied:]
    if not rest:
        return {"applied": n, "total": n, "rest_applies": True, "message": "", "failing": None}
    done = _apply(root, rest, check=True)
    if done.returncode == 0:
        return {"applied": applied, "total": n, "rest_applies": True, "message": "", "failing": None}
    failing, message = rest[-1], _message(done)
    for j in range(1, len(rest)):  # the first patch that does not apply on top of the ones before it
        first = _apply(root, rest[:j], check=True)
        if first.returncode != 0:
            failing, message = rest[j - 1], _message(first)
            break
    return {"applied": applied, "total": n, "rest_applies": False, "failing": failing.name,
            "message": f"{failing.name} does not apply; git apply says:\n{message}"}


def _names(patches: List[Path]) -> str:
    return ", ".join(p.name for p in patches)


def patch_command(argv: List[str], out=None) -> int:
    """``mmrec-motor patch PATH [--check | --revert]``; returns the exit status (0 ok, 1 conflict)."""
    out = out if out is not None else sys.stdout
    parser = argparse.ArgumentParser(
        prog="mmrec-motor patch",
        description="Apply mmrec-motor's patch series to an MMRec checkout (MOTOR via --motor, "
                    "current numpy/scipy, CPU runs, model selection on validation).")
    parser.add_argument("path", help="the MMRec checkout (the folder holding src/)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="only report whether the series applies, is applied, or which hunk conflicts")
    mode.add_argument("--revert", action="store_true", help="take the series out again (git apply -R)")
    args = parser.parse_args(argv)

    def say(text: str = "") -> None:
        print(text, file=out)

    info = checkout_info(args.path)
    root = info["path"]
    patches = patch_files()
    say(f"MMRec checkout: {root.resolve()}")
    if info["is_git"]:
        say(f"commit: {info['commit']}")
        if not info["pinned"]:
            say(f"warning: the patches were made against {PINNED_COMMIT}; this checkout is at "
                f"{info['commit']}. They may still apply (git apply reports any conflict).")
    else:
        say(f"commit: unknown (not a git checkout); the patches were made against {PINNED_COMMIT}")
    say(f"patches: {_names(patches)}")
    state = series_state(root, patches)
    applied, total = state["applied"], state["total"]
    src = root / "src"
    next_cmd = NEXT_COMMAND.format(src=src)

    if args.check:
        if applied == total:
            say(f"status: already applied (all {total} patches)")
            return 0
        if state["rest_applies"]:
            say(f"status: applies cleanly ({_names(patches[applied:])})"
                + (f"; {_names(patches[:applied])} already applied" if applied else ""))
            return 0
        say("status: does not apply" + (f" ({_names(patches[:applied])} already applied)" if applied else ""))
        say(state["message"])
        return 1

    if args.revert:
        if applied == 0:
            if state["rest_applies"]:
                say("nothing to revert: the series is not applied")
                return 0
            say("cannot revert: the series is not applied as shipped (files changed since?)")
            say(state["message"])
            return 1
        if applied < total and not state["rest_applies"]:
            say(f"note: only {_names(patches[:applied])} of the series are in place")
        done = _apply(root, patches[:applied], reverse=True)
        if done.returncode != 0:
            say(f"git apply -R failed:\n{_message(done)}")
            return 1
        say(f"reverted: {_names(patches[:applied])}")
        return 0

    if applied == total:
        say(f"already applied (all {total} patches): nothing to do")
        say(f"next: {next_cmd}")
        return 0
    if not state["rest_applies"]:
        say("cannot apply, nothing was changed" + (f" ({_names(patches[:applied])} already applied)"
                                                   if applied else "") + ":")
        say(state["message"])
        return 1
    rest = patches[applied:]
    done = _apply(root, rest)
    if done.returncode != 0:  # pragma: no cover - --check passed just before
        say(f"git apply failed:\n{_message(done)}")
        return 1
    say(f"applied: {_names(rest)}" + (f" ({_names(patches[:applied])} were already applied)" if applied else ""))
    say("MOTOR needs this package importable by the python that runs MMRec (pip install mmrec-motor), "
        "and MMRec's data in its data/ folder (data/<dataset>/<dataset>.inter, image_feat.npy, text_feat.npy)")
    say(f"next: {next_cmd}")
    return 0
