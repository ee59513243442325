"""A fake OAuth 2.0 authorization server over real loopback HTTP, strict the way X is.

It runs on a thread (``ThreadingHTTPServer`` on 127.0.0.1, a free port) and implements what the
login and the provider use: ``GET /authorize`` answers with the redirect a browser would follow
(code and state, or ``error=access_denied``), ``POST /token`` exchanges a code (checking the PKCE
S256 challenge, the redirect URI and single use) and refreshes with **rotation**: each refresh
token works once and its access token then stops working too, as X does.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class AuthServer:
    expires_in: int = 7200
    deny: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh -> its access token
    access_tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> AuthServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                if parts.path != "/authorize":
                    self.send_error(404)
                    return
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if server.deny:
                    target = q["redirect_uri"] + "?" + urlencode({"error": "access_denied", "state": q["state"]})
                else:
                    code = f"code-{next(server._ids)}"
                    server.codes[code] = q
                    target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                if self.path != "/token":
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = server.token(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _issue(self) -> dict[str, object]:
        n = next(self._ids)
        access, refresh = f"access-{n}", f"refresh-{n}"
        self.access_tokens.add(access)
        self.refresh_tokens[refresh] = access
        return {"token_type": "bearer", "access_token": access, "refresh_token": refresh,
                "expires_in": self.expires_in, "scope": "tweet.read users.read offline.access"}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        with self._lock:
            self.token_requests.append(form)
            if form.get("grant_type") == "authorization_code":
                request = self.codes.pop(form.get("code", ""), None)
                if request is None or request["redirect_uri"] != form.get("redirect_uri") \
                        or request["client_id"] != form.get("client_id"):
                    return 400, {"error": "invalid_grant"}
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != request["code_challenge"]:
                    return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                return 200, self._issue()
            if form.get("grant_type") == "refresh_token":
                access = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
                if access is None:  # spent (rotated) or revoked
                    return 400, {"error": "invalid_grant", "error_description": "Value passed for the token was invalid."}
                self.access_tokens.discard(access)
                return 200, self._issue()
            return 400, {"error": "unsupported_grant_type"}

    def revoke_all(self) -> None:
        with self._lock:
            self.refresh_tokens.clear()
            self.access_tokens.clear()
