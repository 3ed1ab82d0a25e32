//! DuckDB, Polars and pyarrow read every table (needs the venv `make test` creates; the
//! path comes in WXCUBE_TEST_PYTHON).
