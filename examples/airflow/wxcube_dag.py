"""wxcube under Airflow: one mapped task per shard, sized from `wxcube plan --json`.

The plan task asks wxcube for the work units of WXCUBE_SHARDS shards (accounts, calls,
share of the daily budget per shard) and maps one `run_shard` task per shard that has
accounts. Each shard task runs `wxcube run PIPELINE --shard K/N`: the accounts whose FNV-1a
hash falls in shard K. Leases under {uri}/_wxcube/leases/ keep a retried task whose earlier
attempt still runs from fetching an account twice (it waits up to --lease-wait, then exits 3).

Exit codes: 0 done; 3 partial (quota, lease held elsewhere, retired report): the rest is
committed and tomorrow's run resumes, so the task succeeds with a warning; 2 bad pipeline
(no retry helps: fail fast); 1 runtime failure (retried).

Pool: every shard task runs in the pool WXCUBE_POOL. Create it with as many slots as shards
you let run at once (`airflow pools set wxcube 8 "wxcube shards"`): wxcube divides
limits.global_requests_per_second by N per shard, so N slots is what the pipeline's global
limit was sized for; fewer slots only make the day's run longer.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.sdk import dag, task
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.exceptions import AirflowFailException

WXCUBE = os.environ.get("WXCUBE_BIN", "wxcube")
PIPELINE = os.environ.get("WXCUBE_PIPELINE", "/opt/wxcube/pipelines/brands.yaml")
SHARDS = int(os.environ.get("WXCUBE_SHARDS", "8"))
POOL = os.environ.get("WXCUBE_POOL", "default_pool")
# Extra flags for every wxcube command, e.g. "--today 2026-01-10" to replay a day.
EXTRA = shlex.split(os.environ.get("WXCUBE_EXTRA", ""))

log = logging.getLogger(__name__)


def plan_command() -> list[str]:
    return [WXCUBE, "plan", PIPELINE, "--json", "--shards", str(SHARDS), *EXTRA]


def run_command(shard: str) -> list[str]:
    return [WXCUBE, "run", PIPELINE, "--shard", shard, "--json", "--progress", "never", "--log-format", "json", *EXTRA]


def work_units(plan_json: str) -> list[dict]:
    """The shards worth a task: those with at least one account."""
    units = json.loads(plan_json)["work_units"]
    return [u for u in units if u["accounts"]]


def check_exit(code: int, shard: str, stderr: str) -> None:
    if code == 0:
        return
    if code == 3:
        log.warning("wxcube shard %s partial (exit 3): %s", shard, stderr[-2000:])
        return
    if code == 2:
        raise AirflowFailException(f"wxcube shard {shard}: invalid pipeline or usage: {stderr[-2000:]}")
    raise RuntimeError(f"wxcube shard {shard} failed (exit {code}): {stderr[-2000:]}")


@dag(
    dag_id="wxcube_daily",
    # 02:30 UTC is 10:30 in China: WeChat has published yesterday's data by then.
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["wxcube"],
)
def wxcube_daily():
    @task
    def plan() -> list[dict]:
        out = subprocess.run(plan_command(), check=True, capture_output=True, text=True)
        return work_units(out.stdout)

    @task(pool=POOL, retries=3, retry_delay=timedelta(minutes=3), max_active_tis_per_dag=SHARDS)
    def run_shard(unit: dict) -> dict:
        p = subprocess.run(run_command(unit["shard"]), capture_output=True, text=True)
        check_exit(p.returncode, unit["shard"], p.stderr)
        report = json.loads(p.stdout)
        return {
            "shard": unit["shard"],
            "exit_code": report["exit_code"],
            "data_calls": report["data_calls"],
            "rows": report["rows"],
            "changes": len(report.get("changes", [])),
        }

    return run_shard.expand(unit=plan())


dag_object = wxcube_daily()

if __name__ == "__main__":
    dag_object.test()
