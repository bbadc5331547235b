#!/usr/bin/env sh
# The legacy REST doors with curl. Usage: SEARCHSTATS_API_KEY=<key> sh rest_examples.sh [URL]
set -eu
URL="${1:-${SEARCHSTATS_URL:-http://127.0.0.1:8000}}"
KEY="${SEARCHSTATS_API_KEY:?set SEARCHSTATS_API_KEY to the key searchstats serve printed}"
TODAY="$(date -u +%Y%m%d)"
JSON='Content-Type: application/json'

# Sent anonymously by curl, these two are recorded as a robot's (a browser's would not be): the
# dashboard and stats leave them out unless includeBots is set (docs/privacy.md#robots).
echo '# DSpace (anonymous): a search and an item view -> 201, empty body'
curl -sS -o /dev/null -w '%{http_code}\n' -X POST "$URL/api/statistics/searchevents" -H "$JSON" \
  -d '{"query":"open access","page":{"size":10,"totalElements":42,"totalPages":5,"number":0},"sort":{"by":"score","order":"desc"}}'
curl -sS -o /dev/null -w '%{http_code}\n' -X POST "$URL/api/statistics/viewevents" -H "$JSON" \
  -d '{"targetId":"43f9bb3e-f90d-458f-9858-7e4589481d18","targetType":"item"}'

echo '# Doofinder: a visit -> {"status":"registered"}'
curl -sS -X POST "$URL/api/v2/stats/visit" -H "$JSON" -H "Authorization: Token $KEY" -d '{"store":"main"}'
echo

echo '# Workplace Search: a click on a result -> 200, empty body'
curl -sS -o /dev/null -w '%{http_code}\n' -X POST "$URL/api/ws/v1/analytics/event" -H "$JSON" \
  -H "Authorization: Bearer $KEY" \
  -d '{"type":"click","query_id":"q-1","page":1,"content_source_id":"repository","document_id":"doc-7","rank":0,"event":"web"}'

echo '# Doofinder: the day'"'"'s clicks series, the click above counted'
curl -sS "$URL/api/v2/stats/clicks?from=$TODAY&to=$TODAY" -H "Authorization: Token $KEY"
echo
