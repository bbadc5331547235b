"""The legacy REST doors from Python: what existing DSpace, Doofinder and Workplace clients send.

    SEARCHSTATS_API_KEY=<key> python frontend_examples/rest_client.py [--url http://127.0.0.1:8000]

Each call is the vendor's own path, body and status code; see frontend_examples/rest_examples.sh
for the same calls with curl.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

import httpx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("SEARCHSTATS_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--key", default=os.environ.get("SEARCHSTATS_API_KEY"))
    args = parser.parse_args()
    if not args.key:
        parser.error("pass --key or set SEARCHSTATS_API_KEY")
    token = {"Authorization": f"Token {args.key}"}
    with httpx.Client(base_url=args.url, trust_env=False, timeout=10) as http:
        # DSpace (anonymous): a search and an item view, as the DSpace 7 Angular UI sends them.
        search = {
            "query": "open access",
            "page": {"size": 10, "totalElements": 42, "totalPages": 5, "number": 0},
            "sort": {"by": "score", "order": "desc"},
        }
        response = http.post("/api/statistics/searchevents", json=search)
        print("DSpace searchevents:", response.status_code)  # 201, empty body
        view = {"targetId": "43f9bb3e-f90d-458f-9858-7e4589481d18", "targetType": "item"}
        response = http.post("/api/statistics/viewevents", json=view)
        print("DSpace viewevents:", response.status_code)  # 201, empty body

        # Doofinder: a visit, then today's clicks series as Doofinder returns it.
        response = http.post("/api/v2/stats/visit", json={"store": "main"}, headers=token)
        print("Doofinder visit:", response.status_code, response.json())  # {"status":"registered"}
        today = datetime.now(UTC).strftime("%Y%m%d")
        response = http.get(
            "/api/v2/stats/clicks", params={"from": today, "to": today}, headers=token
        )
        print("Doofinder clicks:", response.status_code, response.json())

        # Workplace Search: a click on a result (Bearer with the API key works too).
        click = {
            "type": "click",
            "query_id": "q-1",
            "page": 1,
            "content_source_id": "repository",
            "document_id": "doc-7",
            "rank": 0,
            "event": "web",
        }
        bearer = {"Authorization": f"Bearer {args.key}"}
        response = http.post("/api/ws/v1/analytics/event", json=click, headers=bearer)
        print("Workplace click:", response.status_code)  # 200, empty body


if __name__ == "__main__":
    main()
