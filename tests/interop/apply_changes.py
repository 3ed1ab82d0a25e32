"""A warehouse loader that applies only what `wxcube changes` lists (tests/it/fleet.rs).

load DB BIN URI SINCE TABLES: asks `BIN changes URI --since SINCE --json` and, per listed
partition (latest record per file), replaces that partition's rows in DuckDB table
<table> (keyed by account and partition); a pending record is applied the same way (the
file as it is now, or no rows if there is none).
check DB BIN URI - TABLES: the loaded tables hold exactly the rows of reading every file.
"""
import json
import os
import subprocess
import sys

import duckdb


def load(con, binary, uri, since, tables):
    out = subprocess.run([binary, "changes", uri, "--since", since, "--json"], check=True, capture_output=True, text=True).stdout
    listing = json.loads(out)
    latest = {}
    for c in listing["changes"]:
        latest[c["path"]] = c
    applied = 0
    for path, c in latest.items():
        t = c["table"]
        if t not in tables:
            continue
        f = os.path.join(uri, path)
        if os.path.exists(f):
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {t} AS SELECT *, ''::VARCHAR AS _account, ''::VARCHAR AS _partition FROM read_parquet(?) LIMIT 0",
                [f],
            )
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [t]).fetchone()[0]
        if not exists:
            continue
        con.execute(f"DELETE FROM {t} WHERE _account = ? AND _partition = ?", [c["account"], c["partition"]])
        if os.path.exists(f):
            con.execute(f"INSERT INTO {t} SELECT *, ?, ? FROM read_parquet(?)", [c["account"], c["partition"], f])
        applied += 1
    print(f"applied {applied} partitions of {len(listing['changes'])} changes; next --since {listing['next_since']}")


def check(con, uri, tables):
    for t in tables:
        glob = os.path.join(uri, t, "**", "*.parquet")
        have_files = bool(con.execute("SELECT count(*) FROM glob(?)", [glob]).fetchone()[0])
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [t]).fetchone()[0]
        if not have_files:
            assert not exists or con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0, t
            print(f"{t}: no files")
            continue
        assert exists, f"{t}: files but nothing loaded"
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {t}").fetchall() if not r[0].startswith("_")]
        sel = ", ".join(f'"{c}"' for c in cols)
        loaded = f"SELECT {sel}, _account AS account FROM {t}"
        files = f"SELECT {sel}, account FROM read_parquet('{glob}', hive_partitioning = true)"
        n_loaded = con.execute(f"SELECT count(*) FROM ({loaded})").fetchone()[0]
        n_files = con.execute(f"SELECT count(*) FROM ({files})").fetchone()[0]
        extra = con.execute(f"SELECT count(*) FROM ({loaded} EXCEPT ALL {files})").fetchone()[0]
        missing = con.execute(f"SELECT count(*) FROM ({files} EXCEPT ALL {loaded})").fetchone()[0]
        assert n_loaded == n_files and extra == 0 and missing == 0, (t, n_loaded, n_files, extra, missing)
        assert n_files > 0, t
        print(f"{t}: {n_files} rows")
    print("same rows")


def main():
    mode, db, binary, uri, since, tables = sys.argv[1:7]
    tables = tables.split(",")
    con = duckdb.connect(db)
    if mode == "load":
        load(con, binary, uri, since, tables)
    else:
        check(con, uri, tables)
    con.close()


if __name__ == "__main__":
    main()
