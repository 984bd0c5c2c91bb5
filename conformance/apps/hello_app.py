# The WSGI twin of `quiesce serve --app hello`: 200, 14 bytes, with their length.
# Used wherever gunicorn runs beside our server (calibration, profiles).
def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '14')])
    return [b'Hello, world!\n']
