"""The scripts' app for any WSGI server: GET /?ms=N sleeps N ms, then answers 200 with the request id.

The same app `quiesce serve --app sleep` runs (impl/apps.ts), so a script's
clients see the same responses from either server.
"""
import os
import time
from urllib.parse import parse_qs

# An app whose import does work (a script's appLoadMs): gunicorn imports it in the new worker
# (load_wsgi), after the worker's signal handlers are in, so a signal then meets a booting worker.
time.sleep(int(os.environ.get("QUIESCE_APP_LOAD_MS", "0")) / 1000)


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    ms = int(query.get("ms", ["0"])[0])
    if ms > 0:
        time.sleep(ms / 1000)
    body = environ.get("HTTP_X_REQUEST_ID", "ok").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
