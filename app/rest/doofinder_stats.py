"""Doofinder's clicks statistics: ``GET /api/v2/stats/clicks``, as JSON or CSV.

With ``aggregate=false`` the answer holds one series per engine:
``{"results": [{"hashid", "results": [{"count", "timestamp"}], "total", "total_count"}],
"total": <engines>, "total_count": <all clicks>}``.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.domain.bounds import parse_doofinder_bound, period_between
from app.domain.events import Device, ProductType
from app.domain.periods import Granularity, parse_zone
from app.domain.stats import IndexRef, Metric, StatsFilter, StatsQuery
from app.errors import BadParams
from app.rest.dialect import caller, guarded
from app.rest.doofinder_errors import doofinder_error
from app.services.limits import Access
from app.services.runtime import Runtime
from app.services.stats import CountSeries, StatsReport, compute_stats

INDEX_PARAM = re.compile(r"^indices\[(\d{1,9})\]\[(name|hashid)\]$")
# name, name[] or name[<digits>]: the name itself is checked by the caller.
ARRAY_PARAM = re.compile(r"[a-z_]+(\[[0-9]*\])?")
MAX_INDICES = 100
# Doofinder documents the default as "ETC/UTC"; the tz database spells it Etc/UTC.
UTC_ALIASES = {"ETC/UTC": "Etc/UTC", "UTC": "Etc/UTC"}
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def clicks_query(params: QueryParams) -> tuple[StatsQuery, bool]:
    """The parameters as one stats question, and whether CSV was asked for."""
    problems: list[str] = []
    for required in ("from", "to"):
        if not params.get(required):
            problems.append(f"{required} is required")
    if problems:
        raise BadParams.of(problems)
    tz = params.get("tz") or "Etc/UTC"
    zone = parse_zone(UTC_ALIASES.get(tz.upper(), tz))
    period = period_between(
        parse_doofinder_bound("from", params["from"]),
        parse_doofinder_bound("to", params["to"]),
        zone,
    )
    output = _choice(params, "format", ("json", "csv"), "json")
    aggregate = BOOLEANS.get((params.get("aggregate") or "true").lower())
    if aggregate is None:
        raise BadParams("aggregate must be true or false")
    device = _choice(params, "device", ("desktop", "mobile"), None)
    query = StatsQuery(
        period=period,
        granularity=Granularity.DAY,
        engines=tuple(_all(params, "hashids", "hashid")),
        filter=StatsFilter(
            device=Device(device) if device else None,
            query=params.get("query") or None,
            document_id=params.get("dfid") or None,
            indices=_indices(params),
            product_types=tuple(_product_type(v) for v in _all(params, "product_type")),
            names=("query", "dfid"),
        ),
        metrics=frozenset({Metric.CLICKS}),
        per_engine=not aggregate,
    )
    return query, output == "csv"


def _all(params: QueryParams, *names: str) -> list[str]:
    """Every value of an array parameter, in the order sent: ``name[]=``, ``name=``, or PHP's
    numbered ``name[0]=`` (what ``http_build_query`` writes).

    Any other ``name[…]`` is a 400, never dropped: a filter left out (the engines asked) would
    answer for all of them.
    """
    values = []
    for key, value in params.multi_items():
        name = key.partition("[")[0]
        if name not in names:
            continue
        if not ARRAY_PARAM.fullmatch(key):
            raise BadParams(f"{key} is not a list item: use {name}[]=value (or {name}[0]=value)")
        values.append(value)
    return values


def _choice(params: QueryParams, name: str, allowed: tuple[str, ...], default: str | None) -> Any:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise BadParams(f"{name} must be one of {', '.join(allowed)}")
    return value


def _product_type(value: str) -> ProductType:
    try:
        return ProductType(value)
    except ValueError:
        allowed = ", ".join(p.value for p in ProductType)
        raise BadParams(f"product_type must be one of {allowed}") from None


def _indices(params: QueryParams) -> tuple[IndexRef, ...]:
    parts: dict[int, dict[str, str]] = {}
    for key, value in params.multi_items():
        if match := INDEX_PARAM.fullmatch(key):
            parts.setdefault(int(match[1]), {})[match[2]] = value
        elif key.startswith("indices"):
            # Never dropped: a filter left out would answer with unfiltered counts.
            raise BadParams(
                f"{key} is not an index filter: use indices[i][name] and indices[i][hashid]"
            )
    if len(parts) > MAX_INDICES:
        raise BadParams(f"at most {MAX_INDICES} indices per request")
    refs = []
    for position in sorted(parts):
        if not parts[position].get("name"):
            raise BadParams(f"indices[{position}][name] is required")
        refs.append(IndexRef(parts[position]["name"], parts[position].get("hashid") or None))
    return tuple(refs)


def _results(series: CountSeries) -> dict[str, Any]:
    return {
        "results": [{"count": p.count, "timestamp": p.timestamp} for p in series.points],
        "total": series.total,
        "total_count": series.total_count,
    }


def render_json(report: StatsReport, per_engine: bool) -> Response:
    if not per_engine:
        return JSONResponse(_results(report.series[Metric.CLICKS]))
    engines = [
        {"hashid": hashid, **_results(series[Metric.CLICKS])}
        for hashid, series in report.by_engine.items()
    ]
    return JSONResponse(
        {
            "results": engines,
            "total": len(engines),
            "total_count": sum(e["total_count"] for e in engines),
        }
    )


def render_csv(report: StatsReport, per_engine: bool) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    rows: list[tuple[str, CountSeries]] = (
        [(h, s[Metric.CLICKS]) for h, s in report.by_engine.items()]
        if per_engine
        else [("", report.series[Metric.CLICKS])]
    )
    writer.writerow(
        ["hashid", "date", "timestamp", "count"] if per_engine else ["date", "timestamp", "count"]
    )
    for hashid, series in rows:
        for point in series.points:
            row = [point.start.date().isoformat(), point.timestamp, point.count]
            writer.writerow([hashid, *row] if per_engine else row)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8")


def doofinder_stats_routes(runtime: Runtime) -> list[BaseRoute]:
    @guarded(doofinder_error)
    async def clicks(request: Request) -> Response:
        principal = await caller(runtime, request, Access.READ)
        query, as_csv = clicks_query(request.query_params)
        report = await compute_stats(runtime=runtime, principal=principal, query=query)
        render = render_csv if as_csv else render_json
        return render(report, query.per_engine)

    return [Route("/api/v2/stats/clicks", clicks, methods=["GET"])]
