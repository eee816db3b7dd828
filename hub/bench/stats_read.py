"""How fast ``/v1/stats/consumption`` and ``/v1/stats/dashboard`` answer over a large history.

Starts an embedded PostgreSQL (or uses CARDHUB_DATABASE_URL), creates the views, fills the
statistics tables with the rows that N approved purchases leave there — spread over D days,
5,000 cards, 3 canteens, a supermarket and laundry, meal-period arrivals — then times each
query over real HTTP, median of several runs. Prints figures; asserts nothing.

    python -m hub.bench.stats_read [--events 1000000] [--days 60] [--runs 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from aiohttp.test_utils import TestClient, TestServer

from hub.config import Settings, whole_number
from hub.service.app import create_app
from hub.service.token_keys import load_token_key
from hub.service.token_office import TokenOffice
from hub.storage.store import Database, EmbeddedPostgres

TZ = ZoneInfo("Asia/Shanghai")
FIRST_DAY = date(2026, 9, 1)

FILL = """
INSERT INTO stats_sales (hour_start, local_day, local_hour, meal, merchant_id, device_id, category,
                         card_uid, count, amount_fen)
SELECT hour_start, (hour_start AT TIME ZONE 'Asia/Shanghai')::date, h, meal, merchant, device, category,
       card, count(*), sum(amount)
FROM (
  SELECT %(start)s::timestamptz + make_interval(days => (i %% %(days)s)::int, hours => h) AS hour_start, h,
         CASE WHEN h BETWEEN 6 AND 8 THEN 'breakfast' WHEN h BETWEEN 11 AND 12 THEN 'lunch'
              WHEN h BETWEEN 17 AND 18 THEN 'dinner' ELSE 'other' END AS meal,
         m.merchant, m.merchant || '-pos' || lpad((abs(hashtext('d' || i)) %% 12)::text, 2, '0') AS device,
         CASE WHEN c %% 10 = 0 THEN 'staff' ELSE 'student' END AS category,
         upper(lpad(to_hex(c), 10, '0')) AS card, 500 + (i * 37) %% 1500 AS amount
  FROM generate_series(0::bigint, %(events)s - 1) AS i,
       LATERAL (SELECT abs(hashtext('c' || i)) %% 5000 AS c,
                       (ARRAY[7, 7, 12, 12, 12, 18, 18, 9, 15, 20])[1 + abs(hashtext('h' || i)) %% 10] AS h) AS pick,
       LATERAL (SELECT (ARRAY['canteen-1','canteen-2','canteen-3','market','laundry'])
                       [1 + abs(hashtext('m' || i)) %% 5] AS merchant) AS m
) AS purchases
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ORDER BY 1  -- as the projection writes them: in time order
"""


async def _time(client: TestClient, path: str, token: str, runs: int) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        resp = await client.get(path, headers=headers)
        body = await resp.read()
        samples.append((time.perf_counter() - started) * 1000)
        assert resp.status == 200, body
    return statistics.median(samples), len(body)


async def _measure(database: Database, data_dir: Path, args: argparse.Namespace) -> None:
    app = create_app(Settings(data_dir=data_dir), database)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        started = time.perf_counter()
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute(FILL, {"start": datetime.combine(FIRST_DAY, dtime(0), tzinfo=TZ),
                                "days": args.days, "events": args.events})
            for merchant, name in (("canteen-1", "第一食堂"), ("canteen-2", "第二食堂"), ("canteen-3", "清真食堂"),
                                   ("market", "教育超市"), ("laundry", "洗衣房")):
                conn.execute("INSERT INTO merchants VALUES (%s, %s, 'dining')", (merchant, name))
            conn.execute(
                "INSERT INTO stats_hourly SELECT hour_start, local_day, local_hour, meal, merchant_id, device_id,"
                " category, sum(count), sum(amount_fen) FROM stats_sales GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1"
            )
            conn.execute("VACUUM ANALYZE stats_sales")
            conn.execute("VACUUM ANALYZE stats_hourly")
            rows = conn.execute("SELECT count(*) FROM stats_sales").fetchone()[0]
        print(f"filled stats_sales: {rows:,} rows for {args.events:,} purchases over {args.days} days"
              f" in {time.perf_counter() - started:.1f} s; {os.cpu_count()} cores")
        with TokenOffice(database) as office:
            token = office.issue(load_token_key(data_dir), "manager")
        day = FIRST_DAY + timedelta(days=args.days // 2)
        start = datetime.combine(day, dtime(0), tzinfo=TZ)
        one_day = f"from={start.isoformat()}&to={(start + timedelta(days=1)).isoformat()}".replace("+", "%2B")
        week = f"from={start.isoformat()}&to={(start + timedelta(days=7)).isoformat()}".replace("+", "%2B")
        print(f"{'query':58} {'median ms':>10} {'bytes':>7}")
        for label, path in [
            *[(f"consumption, one day, by={by}", f"/v1/stats/consumption?{one_day}&by={by}")
              for by in ("merchant", "device", "hour", "meal", "category", "day")],
            ("consumption, one day, by=meal&merchant=canteen-1",
             f"/v1/stats/consumption?{one_day}&by=meal&merchant=canteen-1"),
            ("consumption, one week, by=day", f"/v1/stats/consumption?{week}&by=day"),
            ("consumption, all time, by=merchant", "/v1/stats/consumption?by=merchant"),
            ("dashboard, one day", f"/v1/stats/dashboard?date={day.isoformat()}"),
        ]:
            median, size = await _time(client, path, token, args.runs)
            print(f"{label:58} {median:10.1f} {size:7d}")
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=whole_number(1, 100_000_000), default=1_000_000)
    parser.add_argument("--days", type=whole_number(1, 3650), default=60)
    parser.add_argument("--runs", type=whole_number(1, 1000), default=15)
    args = parser.parse_args()
    url = os.environ.get("CARDHUB_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="cardhub-stats-") as tmp:
        embedded = None if url else EmbeddedPostgres(Path(tmp) / "pg")
        server = Database.from_url(url) if url else embedded.start()  # type: ignore[union-attr]
        database = server.create_database("stats_read")
        try:
            asyncio.run(_measure(database, Path(tmp) / "hub", args))
        finally:
            server.drop_database("stats_read")
            if embedded is not None:
                embedded.stop()


if __name__ == "__main__":
    main()
