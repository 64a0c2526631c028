"""Write lfm2k's item texts keyed by our item IDs (for ``mmrec-motor tokenize --neighbours --text_file``).

    python benchmarks/lfm2k_item_text.py --og_inter lfm2k_og_ids.inter --names lfm2k_song_extended_mapping.tsv \
        --out /tmp/lfm2k_item_text.tsv [--inter ../shared/data/lfm2k/lfm2k.inter] \
        [--text ../shared/data/lfm2k/lfm2k_text.tsv]

``lfm2k_text.tsv`` is keyed by the original Last.fm artistID, not by lfm2k's item IDs 0..1424. The
data's public source (giuspillo/extending_sota_data_mm_feat, commit e38d2c8,
``2_data_processing/hetrec2011-lastfm-2k/processed_data/lfm2k_og_ids.inter``) ships the same
interactions with the original IDs, row for row. Aligning the two files row by row gives
itemID -> artistID; this script checks that the alignment is exact (same rows, same split labels, one
artist per item and one item per artist) and writes ``item<TAB>name: tags`` for every item.
``--names`` (``lfm2k_song_extended_mapping.tsv`` of the same repository: artistID, name_artist, ...)
adds the artist's name; without it the text is the tags alone.
"""
import argparse
import os
import sys

import pandas as pd


def read_tsv(path: str, columns) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: no such file")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SystemExit(f"{path}: expected columns {', '.join(columns)}; missing {', '.join(missing)} "
                         f"(has {', '.join(frame.columns)})")
    return frame


def item_to_artist(inter: pd.DataFrame, og: pd.DataFrame, inter_path: str, og_path: str) -> pd.Series:
    """Series item ID (int) -> artistID (str) from two row-aligned interaction files; SystemExit when
    they are not the same interactions under two ID schemes."""
    if len(inter) != len(og):
        raise SystemExit(f"{og_path} has {len(og)} rows, {inter_path} has {len(inter)}: not the same interactions")
    differ = (inter["x_label"].values != og["x_label"].values).nonzero()[0]
    if len(differ):
        raise SystemExit(f"{og_path} and {inter_path} differ in x_label from data row {differ[0] + 1}: "
                         f"not row-aligned")
    pairs = {}
    for column, what in (("userID", "user"), ("itemID", "item")):
        pairs[what] = pd.DataFrame({"ours": inter[column].values, "og": og[column].values}).drop_duplicates()
        clash = pairs[what]["ours"].duplicated(keep=False) | pairs[what]["og"].duplicated(keep=False)
        if clash.any():
            first = pairs[what].loc[clash].iloc[0]
            raise SystemExit(f"{og_path} vs {inter_path}: {what} IDs do not map one to one (e.g. our {what} "
                             f"{first['ours']} <-> original {first['og']} and others): not row-aligned")
    items = pairs["item"]
    return items.set_index(items["ours"].astype(int))["og"].sort_index()


def item_texts(mapping: pd.Series, tags: pd.DataFrame, names: pd.DataFrame = None) -> pd.DataFrame:
    """[item, text] with text 'name: tags' (or the tags, or the name, or '' where none is known)."""
    tag_of = dict(zip(tags["artistID"], tags["text"]))
    name_of = {} if names is None else dict(zip(names["artistID"], names["name_artist"]))
    texts = []
    for artist in mapping.values:
        parts = [name_of.get(artist, ""), tag_of.get(artist, "")]
        texts.append(": ".join(p for p in parts if p))
    return pd.DataFrame({"item": mapping.index, "text": texts})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--og_inter", required=True, help="lfm2k_og_ids.inter (original user and artist IDs)")
    parser.add_argument("--inter", default="../shared/data/lfm2k/lfm2k.inter")
    parser.add_argument("--text", default="../shared/data/lfm2k/lfm2k_text.tsv")
    parser.add_argument("--names", default=None, help="lfm2k_song_extended_mapping.tsv (artist names)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    columns = ["userID", "itemID", "x_label"]
    inter, og = read_tsv(args.inter, columns), read_tsv(args.og_inter, columns)
    mapping = item_to_artist(inter, og, args.inter, args.og_inter)
    if list(mapping.index) != list(range(len(mapping))):
        raise SystemExit(f"{args.inter}: item IDs are not 0..{len(mapping) - 1}")
    names = read_tsv(args.names, ["artistID", "name_artist"]) if args.names else None
    table = item_texts(mapping, read_tsv(args.text, ["artistID", "text"]), names)
    table.to_csv(args.out, sep="\t", index=False)
    empty = int((table["text"] == "").sum())
    print(f"{len(table)} items written to {args.out}; {empty} without a name or tags", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
