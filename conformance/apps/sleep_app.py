"""The scripts' app for any WSGI server: GET /?ms=N sleeps N ms, then answers 200 with the request id.

The same app `quiesce serve --app sleep` runs (impl/apps.ts), so a script's
clients see the same responses from either server.
"""
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    ms = int(query.get("ms", ["0"])[0])
    if ms > 0:
        time.sleep(ms / 1000)
    body = environ.get("HTTP_X_REQUEST_ID", "ok").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
