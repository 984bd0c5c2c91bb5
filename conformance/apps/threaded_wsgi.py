"""The scripts' app (sleep_app.py) on a unix socket, one thread per request: the
upstream of conformance/apps/nginx.sh. It leaves when its parent (nginx) does."""
import os
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn, UnixStreamServer
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sleep_app import app  # noqa: E402


class Server(ThreadingMixIn, UnixStreamServer):
    daemon_threads = True
    # wsgiref's handler asks for these of a TCP server.
    server_name = "localhost"
    server_port = 0

    def get_app(self):
        return app

    def setup_environ(self):
        WSGIServer.setup_environ(self)


class Handler(WSGIRequestHandler):
    def setup(self):
        super().setup()
        # A unix socket's peer has no address; wsgiref's environ wants a host.
        self.client_address = ("127.0.0.1", 0)

    def address_string(self):
        return "unix"

    def log_message(self, *args):
        pass


def main():
    path = sys.argv[1]
    server = Server(path, Handler)
    server.base_environ = {}
    WSGIServer.setup_environ(server)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
