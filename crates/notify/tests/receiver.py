#!/usr/bin/env python3
"""A scripted webhook receiver for the countersign-notify tests.

It verifies every request with the Standard Webhooks reference library
(`standardwebhooks` on PyPI), answers as its script says, and appends one JSON
line per request to a log file, so the Rust tests check our signatures against
an implementation we did not write.

Usage: receiver.py --secret whsec_... --log PATH [--script JSON]

The script is a JSON list of answers, one per request in order; the last one
repeats. Each answer is an object:
  {"status": 500}                      answer 500
  {"status": 302, "location": "URL"}   answer 302 with a Location header
  {"status": 200, "delay": 3}          wait 3 seconds, then answer 200
The default script is [{"status": 200}].

The first stdout line is the port it listens on (127.0.0.1, port chosen by the
system). Each log line is {"id", "verified", "status_sent", "path",
"timestamp", "signature", "user_agent", "content_type", "body", "error"}; it is
written before the answer is sent, so a client that got the answer can read the
line.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--script", default='[{"status": 200}]')
    args = parser.parse_args()

    script = json.loads(args.script)
    if not isinstance(script, list) or not script:
        sys.exit("the script must be a non-empty JSON list")
    verifier = standardwebhooks.Webhook(args.secret)
    lock = threading.Lock()
    counter = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {k: v for (k, v) in self.headers.items()}
            error = None
            try:
                verifier.verify(body, headers)
                verified = True
            except Exception as e:  # any failure is a failed verification
                verified = False
                error = f"{type(e).__name__}: {e}"
            with lock:
                answer = script[min(counter["n"], len(script) - 1)]
                counter["n"] += 1
                entry = {
                    "id": self.headers.get("webhook-id"),
                    "verified": verified,
                    "status_sent": answer["status"],
                    "path": self.path,
                    "timestamp": self.headers.get("webhook-timestamp"),
                    "signature": self.headers.get("webhook-signature"),
                    "user_agent": self.headers.get("user-agent"),
                    "content_type": self.headers.get("content-type"),
                    "body": body.decode("utf-8", "replace"),
                    "error": error,
                }
                with open(args.log, "a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")
            delay = answer.get("delay", 0)
            if delay:
                time.sleep(delay)
            try:
                self.send_response(answer["status"])
                if "location" in answer:
                    self.send_header("Location", answer["location"])
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as the timeout test wants

        # Any other method is logged as unverified and refused, so a stray GET (a followed
        # redirect turned into GET, say) still shows up in the log.
        def do_GET(self) -> None:  # noqa: N802
            with lock:
                with open(args.log, "a", encoding="utf-8") as log:
                    log.write(json.dumps({"id": None, "verified": False, "status_sent": 405,
                                          "path": self.path, "error": "GET"}) + "\n")
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
