"""The OpenAPI 3 description of the REST dialects, served at ``GET /openapi.json``.

Written from the vendors' documents (DESIGN's ``specs/``: Doofinder's own OpenAPI, DSpace's REST
contract, Elastic's reference), with the bounds the service enforces taken from the domain rules
themselves, so the description cannot drift from them. The suite fuzzes the doors against it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from app.domain.events import BOUNDED_TEXT, DSO_TYPES, MAX_INT, MAX_JSON_ITEMS, MAX_TEXT
from app.domain.events import ProductType as Product
from app.rest.doofinder import MAX_SESSION_ID, MAX_USER_ID

BOUND = dict(BOUNDED_TEXT)
HASHID = {"type": "string", "pattern": "^[a-f0-9]{32}$"}
UUID = {"type": "string", "format": "uuid"}


def text(attribute: str, *, required: bool = False) -> dict[str, Any]:
    return {"type": "string", "maxLength": BOUND[attribute]} | (
        {"minLength": 1} if required else {}
    )


def integer(minimum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": MAX_INT}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def errors(schema: str, *statuses: int) -> dict[str, Any]:
    described = {
        400: "bad_params: a missing or invalid parameter, a malformed body",
        401: "not_authenticated: no, unknown, malformed or expired credential",
        403: "access_denied: an engine of another account",
        404: "not_found: an unknown engine",
        408: "timeout: the body arrived too slowly, or the question ran past its deadline",
        413: "payload_too_large: a body over the cap",
        429: "too_many_requests: over the rate limit; retry after Retry-After seconds",
        503: "unavailable: storage down; retry after Retry-After seconds",
    }
    content = {"application/json": {"schema": ref(schema)}}
    return {
        str(status): {"description": described[status], "content": content}
        | ({"headers": HEADERS[status]} if status in HEADERS else {})
        for status in statuses
    }


RETRY_AFTER = {"schema": {"type": "integer", "minimum": 1}, "description": "seconds"}
CHALLENGES = {"schema": {"type": "string"}, "description": "the schemes taken: Bearer, Token"}
HEADERS = {
    401: {"WWW-Authenticate": CHALLENGES},
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}
WRITE_ERRORS = (400, 401, 403, 404, 408, 413, 429, 503)

SPRING_ERROR = {
    "type": "object",
    "required": ["timestamp", "status", "error", "message", "path"],
    "properties": {
        "timestamp": {"type": "string"},
        "status": {"type": "integer"},
        "error": {"type": "string"},
        "message": {"type": "string"},
        "path": {"type": "string"},
    },
}
STATS_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
ELASTIC_ERRORS = {
    "type": "object",
    "required": ["errors"],
    "properties": {"errors": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
}

APPLIED_FILTER = {
    "type": "object",
    "required": ["filter", "operator", "value"],
    "properties": {
        part: {"type": "string", "maxLength": MAX_TEXT}
        for part in ("filter", "operator", "value", "label")
    },
}
SORT = {
    "type": "object",
    "required": ["by", "order"],
    "properties": {
        "by": {"type": "string", "maxLength": 255},
        "order": {"type": "string", "enum": ["asc", "desc"]},
    },
}
PAGE = {
    "type": "object",
    "properties": {name: integer(0) for name in ("size", "totalElements", "totalPages", "number")},
}
VIEW_FIELDS = {
    "targetId": UUID,
    "targetType": text("target_type", required=True),
    "referrer": text("referrer"),
}
SEARCH_FIELDS = {
    "query": text("query", required=True),
    "dsoType": {"type": "string", "enum": sorted(DSO_TYPES)},
    "scope": UUID,
    "configuration": text("configuration"),
    "appliedFilters": {"type": "array", "items": ref("AppliedFilter"), "maxItems": MAX_JSON_ITEMS},
    "sort": ref("Sort"),
    "page": ref("Page"),
    "clickedObject": UUID,
}
TYPE = {"type": "string"}

SCHEMAS: dict[str, Any] = {
    "SpringError": SPRING_ERROR,
    "StatsError": STATS_ERROR,
    "ElasticErrors": ELASTIC_ERRORS,
    "AppliedFilter": APPLIED_FILTER,
    "Sort": SORT,
    "Page": PAGE,
    "CollectView": {
        "type": "object",
        "required": ["type", "targetId", "targetType"],
        "properties": {"type": TYPE | {"enum": ["view"]}, **VIEW_FIELDS},
    },
    "CollectSearch": {
        "type": "object",
        "required": ["type", "query"],
        "properties": {"type": TYPE | {"enum": ["search"]}, **SEARCH_FIELDS},
    },
    "Collect": {
        "oneOf": [ref("CollectView"), ref("CollectSearch")],
        "discriminator": {"propertyName": "type"},
    },
    "ViewEvent": {
        "type": "object",
        "required": ["targetId", "targetType"],
        "properties": VIEW_FIELDS,
    },
    "SearchEvent": {
        "type": "object",
        "required": ["query", "page", "sort"],
        "properties": SEARCH_FIELDS,
    },
    "VisitRegisterRequest": {
        "type": "object",
        "required": ["store"],
        "properties": {
            "hashid": HASHID,
            "store": text("store", required=True),
            "session_id": {"type": "string", "maxLength": MAX_SESSION_ID, "nullable": True},
            "user_id": {"type": "string", "maxLength": MAX_USER_ID},
            "url": text("url"),
            "page_type": text("page_type"),
            "dfid": text("dfid"),
            "ip": {"type": "string", "deprecated": True, "description": "ignored, never kept"},
            "user_agent": {"type": "string", "deprecated": True, "description": "ignored"},
        },
    },
    "RegisterResult": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["registered"]}},
    },
    "Counts": {
        "type": "object",
        "required": ["results", "total", "total_count"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["count", "timestamp"],
                    "properties": {
                        "count": {"type": "integer", "minimum": 0},
                        "timestamp": {"type": "integer"},
                    },
                },
            },
            "total": {"type": "integer", "minimum": 0},
            "total_count": {"type": "integer", "minimum": 0},
        },
    },
    "StatsTimeResult": {
        "description": "aggregate=true (default): one series; false: one per engine",
        "oneOf": [
            ref("Counts"),
            {
                "type": "object",
                "required": ["results", "total", "total_count"],
                "properties": {
                    "results": {
                        "type": "array",
                        "items": {
                            "allOf": [
                                ref("Counts"),
                                {
                                    "type": "object",
                                    "required": ["hashid"],
                                    "properties": {"hashid": HASHID},
                                },
                            ]
                        },
                    },
                    "total": {"type": "integer"},
                    "total_count": {"type": "integer"},
                },
            },
        ],
    },
    "AnalyticsEvent": {
        "type": "object",
        "required": ["type", "query_id", "document_id", "content_source_id", "page", "rank"],
        "properties": {
            "type": {"type": "string", "enum": ["click", "feedback"]},
            "query_id": text("query_id", required=True),
            "document_id": text("document_id", required=True),
            "content_source_id": text("content_source_id", required=True),
            "page": integer(1),
            "rank": integer(0),
            "event": text("label", required=True) | {"description": "click events (required)"},
            "score": {"type": "integer", "enum": [1, -1], "description": "feedback (required)"},
        },
    },
}


def query_parameter(name: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, **extra}


BOUND_DATE = "^20[0-9]{2}(0[1-9]|1[012])(0[1-9]|[12][0-9]|3[01])$|^[0-9]{10}$|^[0-9]{13}$"
HASHIDS = {"type": "array", "items": HASHID, "maxItems": 100}
CLICKS_PARAMETERS = [
    query_parameter("from", {"type": "string", "pattern": BOUND_DATE}, required=True),
    query_parameter("to", {"type": "string", "pattern": BOUND_DATE}, required=True),
    query_parameter("hashids[]", HASHIDS, style="form", explode=True),
    query_parameter("hashid[]", HASHIDS, style="form", explode=True, deprecated=True),
    query_parameter(
        "tz", {"type": "string", "default": "Etc/UTC", "maxLength": 64}, example="Europe/Madrid"
    ),
    query_parameter("device", {"type": "string", "enum": ["desktop", "mobile"]}),
    query_parameter("format", {"type": "string", "enum": ["json", "csv"], "default": "json"}),
    query_parameter("aggregate", {"type": "boolean", "default": True}),
    query_parameter("query", {"type": "string", "maxLength": MAX_TEXT}),
    query_parameter("dfid", {"type": "string", "maxLength": MAX_TEXT}),
    query_parameter(
        "product_type",
        {"type": "array", "items": {"type": "string", "enum": [p.value for p in Product]}},
        style="form",
        explode=True,
    ),
]
TOKEN_SECURITY: list[dict[str, list[str]]] = [{"api_token": []}, {"jwt_token": []}]

PATHS: dict[str, Any] = {
    "/api/statistics": {
        "get": {
            "tags": ["DSpace"],
            "summary": "The HAL links to the statistics endpoints",
            "security": [],
            "responses": {
                "200": {
                    "description": "links",
                    "content": {"application/hal+json": {"schema": {"type": "object"}}},
                },
                **errors("SpringError", 429),
            },
        }
    },
    **{
        f"/api/statistics/{name}": {
            "post": {
                "tags": ["DSpace"],
                "summary": summary,
                "description": "Anonymous: the event goes to the configured anonymous engine.",
                "security": [],
                "requestBody": body(schema),
                "responses": {
                    "201": {"description": "recorded (empty body)"},
                    **errors("SpringError", 400, 404, 408, 413, 429, 503),
                },
            }
        }
        for name, schema, summary in (
            ("collect", "Collect", "Record a page view or a search (DSpace's original endpoint)"),
            ("viewevents", "ViewEvent", "Record a page view (DSpace 7+)"),
            ("searchevents", "SearchEvent", "Record a search (DSpace 7+)"),
        )
    },
    "/api/v2/stats/visit": {
        "post": {
            "tags": ["Doofinder"],
            "summary": "Visit stats",
            "operationId": "registerVisit",
            "security": TOKEN_SECURITY,
            "requestBody": body("VisitRegisterRequest"),
            "responses": {
                "200": {
                    "description": "registered",
                    "content": {"application/json": {"schema": ref("RegisterResult")}},
                },
                **errors("StatsError", *WRITE_ERRORS),
            },
        }
    },
    "/api/v2/stats/clicks": {
        "get": {
            "tags": ["Doofinder"],
            "summary": "Clicks",
            "operationId": "clicksByDate",
            "description": (
                "Counts clicks in a time period grouped by day. Indices filter as "
                "indices[i][name]=…&indices[i][hashid]=…, as Doofinder documents."
            ),
            "security": TOKEN_SECURITY,
            "parameters": CLICKS_PARAMETERS,
            "responses": {
                "200": {
                    "description": "Stats retrieved (format=csv: CSV)",
                    "content": {
                        "application/json": {"schema": ref("StatsTimeResult")},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **errors("StatsError", 400, 401, 403, 404, 408, 429, 503),
            },
        }
    },
    "/api/ws/v1/analytics/event": {
        "post": {
            "tags": ["Workplace Search"],
            "summary": "Record a click or feedback on a search result",
            "security": [{"bearer": []}],
            "requestBody": body("AnalyticsEvent"),
            "responses": {
                "200": {"description": "recorded (empty body)"},
                **errors("ElasticErrors", *WRITE_ERRORS),
            },
        }
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "searchstats REST dialects",
        "version": "1.0",
        "description": (
            "DSpace statistics, Doofinder Stats API v2 and Elastic Workplace Search analytics "
            "events, as searchstats serves them. GraphQL is at /graphql."
        ),
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "api_token": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Token <api key>",
            },
            "jwt_token": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Bearer <JWT signed with the API key (HS256)>",
            },
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key or a JWT"},
        },
    },
}


def openapi_routes() -> list[BaseRoute]:
    async def openapi(_request: Request) -> JSONResponse:
        return JSONResponse(OPENAPI)

    return [Route("/openapi.json", openapi, methods=["GET"])]
