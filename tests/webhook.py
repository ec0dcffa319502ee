"""A webhook receiver for alert tests (a real HTTP server in the test process)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A real HTTP webhook receiver on a free port of ``host``, recording every JSON body it gets."""

    def __init__(self, host: str = "127.0.0.1"):
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"

    def of(self, kind):
        return [b for b in self.got if b["type"] == kind]

    def close(self):
        self.server.shutdown()
