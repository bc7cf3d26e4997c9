"""Count rows and distinct event ids over every Delta table of a lake with Python's
own readers (deltalake + polars): an independent check of what wenming wrote.

usage: lake_counts.py LAKE_DIR   → prints "ROWS DISTINCT_IDS"
"""
import os
import sys

import polars as pl


def main():
    lake = sys.argv[1]
    frames = []
    for name in sorted(os.listdir(lake)):
        path = os.path.join(lake, name)
        if not os.path.isdir(os.path.join(path, "_delta_log")):
            continue
        frames.append(pl.read_delta(path, columns=["event_id"]))
    ids = pl.concat(frames)["event_id"]
    print(f"{len(ids)} {ids.n_unique()}")


if __name__ == "__main__":
    main()
