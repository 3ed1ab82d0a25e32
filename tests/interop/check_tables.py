"""Reads every wxcube table with DuckDB, Polars and pyarrow through their Hive partitioning,
checks types and counts, and compares every column of every row with the API's answer.

Usage: check_tables.py SPEC.json
SPEC: {"root": local dir, "s3": optional {"uri": "s3://b/p", "endpoint": ..., "key": ..., "secret": ..., "region": ...},
       "reports": {report_id: {"rows": N, "partition": "month", "columns": [{"name", "type", "nullable"}]}},
       "expected": path of {report_id: [row, ...]}: the API's rows with the Hive keys (account, month)}
Exits non-zero with one line per failure.
"""
import datetime
import json
import sys

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

spec = json.load(open(sys.argv[1]))
failures = []
# Which reader read from where, so the caller can tell that nothing was skipped.
read = set()
# Which reader's rows equalled the API's, every column of every table.
compared = {}
expected = json.load(open(spec["expected"]))


def norm(v):
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    return v


def canon(rows):
    return sorted(json.dumps(norm(r), sort_keys=True, ensure_ascii=False) for r in rows)


def compare(reader, report, rows):
    """The rows a reader gave (dicts, Hive keys included) against the API's."""
    got, want = canon(rows), canon(expected[report])
    if got == want:
        compared.setdefault(reader, set()).add(report)
        return
    extra = sorted(set(got) - set(want))[:1]
    missing = sorted(set(want) - set(got))[:1]
    fail(f"{reader} {report}: {len(got)} rows vs {len(want)} from the API; first only read: {extra}; first only in the API: {missing}")


def fail(msg):
    failures.append(msg)


def duck_type(t):
    if t == "Date32":
        return "DATE"
    if t == "Int64":
        return "BIGINT"
    if t == "Int32":
        return "INTEGER"
    if t == "Float64":
        return "DOUBLE"
    if t in ("Utf8", "Dictionary<Utf8>"):
        return "VARCHAR"
    if t == "Boolean":
        return "BOOLEAN"
    if t.startswith("List<Struct<"):
        inner = t[len("List<Struct<"):-2]
        fields = []
        for f in inner.split(", "):
            name, ty = f.split(" ", 1)
            fields.append(f"{name} {duck_type(ty)}")
        return "STRUCT(" + ", ".join(fields) + ")[]"
    raise ValueError(t)


def polars_ok(t, dtype):
    simple = {"Date32": pl.Date, "Int64": pl.Int64, "Int32": pl.Int32, "Float64": pl.Float64,
              "Utf8": pl.String, "Boolean": pl.Boolean}
    if t in simple:
        return dtype == simple[t]
    if t == "Dictionary<Utf8>":
        return dtype in (pl.Categorical, pl.String) or isinstance(dtype, (pl.Categorical, pl.Enum))
    if t.startswith("List<Struct<"):
        return isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)
    return False


def arrow_ok(t, typ):
    simple = {"Date32": pa.date32(), "Int64": pa.int64(), "Int32": pa.int32(), "Float64": pa.float64(),
              "Utf8": pa.string(), "Boolean": pa.bool_()}
    if t in simple:
        return typ == simple[t]
    if t == "Dictionary<Utf8>":
        return pa.types.is_dictionary(typ) and typ.value_type == pa.string()
    if t.startswith("List<Struct<"):
        return pa.types.is_list(typ) and pa.types.is_struct(typ.value_type)
    return False


PART = {"day": "date", "month": "month", "year": "year"}

for report, r in spec["reports"].items():
    root = f"{spec['root']}/{report}"
    glob = f"{root}/**/*.parquet"
    part = PART[r["partition"]]
    want_rows = r["rows"]
    # DuckDB (local files; its S3 extension cannot be installed offline here).
    try:
        con = duckdb.connect()
        rel = con.sql(f"select * from read_parquet('{glob}', hive_partitioning=true, hive_types={{'account': VARCHAR, '{part}': VARCHAR}})")
        types = dict(zip(rel.columns, [str(t).replace('"', '') for t in rel.types]))
        for c in r["columns"]:
            want = duck_type(c["type"])
            if types.get(c["name"]) != want:
                fail(f"duckdb {report}.{c['name']}: {types.get(c['name'])} != {want}")
        for k in ("account", part):
            if types.get(k) != "VARCHAR":
                fail(f"duckdb {report}: hive column {k} is {types.get(k)}")
        n = con.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0]
        if n != want_rows:
            fail(f"duckdb {report}: {n} rows != {want_rows}")
        read.add("duckdb:disk")
        compare("duckdb:disk", report, [dict(zip(rel.columns, t)) for t in rel.fetchall()])
        labels = [c["name"] for c in r["columns"] if c["type"] == "Dictionary<Utf8>"]
        for lab in labels:
            bad = con.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true) where {lab} is null or {lab} = ''").fetchall()[0][0]
            if bad:
                fail(f"duckdb {report}.{lab}: {bad} empty labels")
    except Exception as e:  # noqa: BLE001
        fail(f"duckdb {report}: {e}")

    def check_polars(source, where, **kw):
        try:
            lf = pl.scan_parquet(source, hive_partitioning=True, hive_schema={"account": pl.String, part: pl.String}, **kw)
            schema = lf.collect_schema()
            for c in r["columns"]:
                if not polars_ok(c["type"], schema.get(c["name"])):
                    fail(f"polars {source} {report}.{c['name']}: {schema.get(c['name'])} for {c['type']}")
            for k in ("account", part):
                if schema.get(k) != pl.String:
                    fail(f"polars {source} {report}: hive column {k} is {schema.get(k)}")
            n = lf.select(pl.len()).collect().item()
            if n != want_rows:
                fail(f"polars {source} {report}: {n} rows != {want_rows}")
            read.add(f"polars:{where}")
            compare(f"polars:{where}", report, lf.collect().to_dicts())
        except Exception as e:  # noqa: BLE001
            fail(f"polars {source} {report}: {e}")

    def check_arrow(source, where, filesystem=None):
        try:
            part_schema = pa.schema([("account", pa.string()), (part, pa.string())])
            d = ds.dataset(source, format="parquet", partitioning=ds.partitioning(part_schema, flavor="hive"), filesystem=filesystem)
            for c in r["columns"]:
                f = d.schema.field(c["name"])
                if not arrow_ok(c["type"], f.type):
                    fail(f"pyarrow {source} {report}.{c['name']}: {f.type} for {c['type']}")
            n = d.count_rows()
            if n != want_rows:
                fail(f"pyarrow {source} {report}: {n} rows != {want_rows}")
            accounts = set(d.to_table(columns=["account"]).column("account").to_pylist())
            if not accounts:
                fail(f"pyarrow {source} {report}: no account values")
            read.add(f"pyarrow:{where}")
            compare(f"pyarrow:{where}", report, d.to_table().to_pylist())
        except Exception as e:  # noqa: BLE001
            fail(f"pyarrow {source} {report}: {e}")

    check_polars(glob, "disk")
    check_arrow(root, "disk")
    s3 = spec.get("s3")
    if s3:
        uri = f"{s3['uri']}/{report}"
        opts = {"aws_endpoint_url": s3["endpoint"], "aws_allow_http": "true", "aws_access_key_id": s3["key"],
                "aws_secret_access_key": s3["secret"], "aws_region": s3["region"]}
        check_polars(f"{uri}/**/*.parquet", "s3", storage_options=opts)
        fs = pafs.S3FileSystem(endpoint_override=s3["endpoint"].split("://", 1)[1], scheme="http",
                               access_key=s3["key"], secret_key=s3["secret"], region=s3["region"])
        check_arrow(uri[len("s3://"):], "s3", filesystem=fs)

for f in failures:
    print(f)
print("read: " + " ".join(sorted(read)))
print("compared: " + " ".join(sorted(k for k, v in compared.items() if v == set(spec["reports"]))))
print(f"checked {len(spec['reports'])} tables: {len(failures)} failures", file=sys.stderr)
sys.exit(1 if failures else 0)
