"""``tokenize_dataset``: tokenize a dataset's modalities (through the cache) and describe the tokens.

Used by ``mmrec-motor tokenize``. The report lists, per modality, the tokenizer settings, codebook
utilisation per sub-space, the token-tuple collision rate and the reconstruction error; with
``neighbours=N`` it shows, for a few random items, the N items that share the most tokens with them
(position-wise equal tokens over all modalities), with their text when a text file is given.

Text file format: one item per line, tab-separated, optional header line. When it has exactly
n_items data lines, line i is item i; otherwise its first column is taken as the item ID (the report
says so, since a file keyed by another ID -- e.g. lfm2k_text.tsv, keyed by the original Last.fm
artistID -- then shows texts of other items).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .hook import config_get, tokenize_modalities, tokenizer_params

N_EXAMPLES = 5
TEXT_WIDTH = 90


def load_item_texts(path: str, n_items: int) -> Tuple[Dict[int, str], str]:
    """({item: text}, note) from a tab-separated text file (see module docstring)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [ln.rstrip("\n\r") for ln in f if ln.strip()]
    if lines and not lines[0].split("\t", 1)[0].strip().lstrip("-").isdigit():
        lines = lines[1:]  # header
    rows = [ln.split("\t", 1) for ln in lines]
    if len(rows) == n_items:
        return {i: (r[1] if len(r) > 1 else r[0]) for i, r in enumerate(rows)}, \
            f"{path}: {len(rows)} lines = n_items, line i is item i"
    texts = {}
    for r in rows:
        if len(r) > 1 and r[0].strip().lstrip("-").isdigit():
            texts[int(r[0])] = r[1]
    return texts, (f"{path}: {len(rows)} lines for {n_items} items, so its first column is taken as the "
                   f"item ID ({sum(i in texts for i in range(n_items))} items matched); if that column "
                   f"is another ID (lfm2k_text.tsv uses the original artistID) the texts are not these items'")


def _short(text: Optional[str]) -> str:
    if text is None:
        return "(no text)"
    return text if len(text) <= TEXT_WIDTH else text[:TEXT_WIDTH - 3] + "..."


def tokenize_dataset(config, neighbours: int = 0, rng_seed: int = 0, text_file: Optional[str] = None,
                     n_examples: int = N_EXAMPLES) -> str:
    """Tokenize every configured modality of ``config``'s dataset and return a readable report.

    Args:
        config: dict-like with ``data_path``, ``dataset``, feature-file keys and ``motor_*`` keys.
        neighbours: N > 0 lists, for ``n_examples`` random items, the N items sharing most tokens.
        rng_seed: seed for picking the example items.
        text_file: optional item text file (see module docstring) to print next to item IDs.
    """
    mods, cache_dir = tokenize_modalities(config)
    n_items = int(mods[0][2].shape[0])
    for m, path, tok, _ in mods:
        if tok.shape[0] != n_items:
            raise ValueError(f"feature file {path} has {tok.shape[0]} rows, the first modality "
                             f"({mods[0][1]}) has {n_items}")
    out = [f"MOTOR tokens of dataset {config_get(config, 'dataset')!r}: {n_items} items, "
           f"cache {cache_dir or 'disabled'}"]
    for m, path, tok, s in mods:
        p = tokenizer_params(config, m)
        util = np.asarray(s["utilisation"])
        out.append(f"[{m}] {path}")
        out.append(f"    {s['quantizer']}: D {s['dim_in']} -> {s['dim_quantized']}, M={s['num_subspaces']} "
                   f"sub-spaces x K={s['K']} codewords (nbits {s['nbits']}"
                   f"{'' if s['nbits'] == p.nbits else f', reduced from {p.nbits}'}), normalize "
                   f"{s['normalize']}, seed {p.seed}")
        out.append(f"    utilisation per sub-space: min {util.min():.3f} mean {util.mean():.3f} max "
                   f"{util.max():.3f}  [{' '.join(f'{u:.2f}' for u in util)}]")
        out.append(f"    token-tuple collisions: {s['collision_rate']:.4f} of items "
                   f"({s['distinct_tuples']} distinct tuples)")
        out.append(f"    reconstruction: MSE {s['recon_mse']:.6g}, relative {s['recon_rel']:.4f}")
        out.append(f"    fit seconds {s['seconds']:.2f}" + (" (from cache)" if s.get("from_cache") else ""))
        for w in s.get("warnings", []):
            out.append(f"    note: {w}")
    if neighbours and neighbours > 0:
        tokens = np.concatenate([t for _, _, t, _ in mods], axis=1)
        L = tokens.shape[1]
        texts, note = ({}, None)
        if text_file:
            texts, note = load_item_texts(text_file, n_items)
        out.append(f"Items sharing most tokens (of L={L}; {'+'.join(m for m, _, _, _ in mods)}):")
        if note:
            out.append(f"    ({note})")
        rng = np.random.default_rng(rng_seed)
        for i in rng.choice(n_items, size=min(n_examples, n_items), replace=False):
            shared = (tokens == tokens[i]).sum(axis=1)
            shared[i] = -1
            order = np.lexsort((np.arange(n_items), -shared))[:neighbours]
            out.append(f"  item {i}: {_short(texts.get(int(i)))}")
            for j in order:
                out.append(f"      {shared[j]:>3}/{L}  item {j}: {_short(texts.get(int(j)))}")
    return "\n".join(out)
