"""A loopback server that speaks the OpenAI chat-completions API, with scripted replies, for the LLM tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    """POST /v1/chat/completions on 127.0.0.1. Each request takes the next scripted reply, else `default`.

    A reply is a string (the answer's content), a callable(request json) -> string, or a tuple:
    ("status", code) | ("sleep", seconds, content) | ("raw", body bytes) | ("json", response dict).
    """

    def __init__(self, default="[]"):
        self.script: list = []
        self.default = default
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    reply = fake.script.pop(0) if fake.script else fake.default
                if callable(reply):
                    reply = reply(body)
                if isinstance(reply, tuple) and reply[0] == "sleep":
                    time.sleep(reply[1])
                    reply = reply[2]
                if isinstance(reply, tuple) and reply[0] == "status":
                    return self._send(reply[1], json.dumps({"error": {"message": "scripted", "type": "x"}}).encode())
                if isinstance(reply, tuple) and reply[0] == "raw":
                    return self._send(200, reply[1])
                data = reply[1] if isinstance(reply, tuple) else completion(body.get("model"), reply)
                return self._send(200, json.dumps(data).encode())

            def _send(self, code, payload):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def completion(model, content):
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model or "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}
