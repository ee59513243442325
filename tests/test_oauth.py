"""OAuth 2.0 with PKCE against a fake authorization server over real loopback HTTP.

The login's two ways home (the loopback redirect; the redirected URL pasted, as over SSH), the
token exchange with PKCE, refresh before expiry with rotation, a crash between the refresh and the
store (in a child process killed at that point), and a revoked grant.
"""

from __future__ import annotations

import asyncio
import queue
import re
import subprocess
import sys
import textwrap
import threading

import httpx
import pytest

from oauth_server import AuthServer
from replydesk import secrets
from replydesk.providers import http, oauth
from replydesk.providers.base import AuthError
from support import FIXED_NOW, REPO, Clock

ACCOUNT = "shop-x"


@pytest.fixture
def server():
    srv = AuthServer().start()
    yield srv
    srv.stop()


def app_for(server: AuthServer) -> oauth.OAuthApp:
    return oauth.OAuthApp("x", server.base_url + "/authorize", server.base_url + "/token", "client-1",
                          ("tweet.read", "users.read", "offline.access"))


class Browser:
    """The user's browser: opens the URL login printed; follows the redirect home (same machine) or
    stops at it and hands the address to the user, who pastes it (another machine, over SSH)."""

    def __init__(self, follow: bool) -> None:
        self.follow = follow
        self.pasted: queue.Queue[str] = queue.Queue()
        self.printed: list[str] = []

    def say(self, text: str) -> None:
        self.printed.append(text)
        match = re.search(r"https?://\S+/authorize\?\S+", text)
        if match:
            threading.Thread(target=self._visit, args=(match.group(0),), daemon=True).start()

    def _visit(self, url: str) -> None:
        with httpx.Client(follow_redirects=self.follow, timeout=10) as client:
            answer = client.get(url)
        if not self.follow:
            self.pasted.put("  " + answer.headers["location"] + "  \n")

    def read_line(self) -> str:
        try:
            return self.pasted.get(timeout=30)
        except queue.Empty:
            return ""  # the user typed nothing more: end of input


def run_login(server: AuthServer, *, follow: bool, clock: Clock) -> tuple[oauth.TokenSet, Browser]:
    browser = Browser(follow)
    tokens = asyncio.run(oauth.login(app_for(server), oauth.TokenStore(ACCOUNT), say=browser.say,
                                     open_browser=False, paste=not follow, read_line=browser.read_line,
                                     clock=clock, timeout=30))
    return tokens, browser


def test_login_through_the_loopback_redirect_stores_the_tokens_in_the_keyring(server, file_keyring, clock):
    tokens, browser = run_login(server, follow=True, clock=clock)
    stored = oauth.TokenStore(ACCOUNT).load()
    assert stored == tokens and stored.access_token in server.access_tokens
    assert stored.expires_at == FIXED_NOW + 7200 and stored.refresh_token
    exchange = server.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code" and len(exchange["code_verifier"]) >= 43
    assert exchange["redirect_uri"].startswith("http://127.0.0.1:")  # a free loopback port
    assert "code_challenge_method=S256" in browser.printed[0] and "access-" not in "".join(browser.printed)


def test_login_with_the_redirected_url_pasted_over_ssh(server, file_keyring, clock):
    tokens, _ = run_login(server, follow=False, clock=clock)
    assert oauth.TokenStore(ACCOUNT).load() == tokens and tokens.access_token in server.access_tokens


def test_a_refused_authorization_says_so(server, file_keyring, clock):
    server.deny = True
    with pytest.raises(oauth.OAuthError, match="authorization refused .access_denied"):
        run_login(server, follow=False, clock=clock)
    assert oauth.TokenStore(ACCOUNT).load() is None


def test_a_pasted_url_from_another_login_is_not_taken():
    with pytest.raises(oauth.OAuthError, match="state mismatch"):
        oauth.code_from_redirect("http://127.0.0.1:8765/callback?code=abc&state=other", "mine", "x")
    assert oauth.code_from_redirect("http://127.0.0.1:8765/callback?code=abc&state=mine", "mine", "x") == "abc"


def test_pkce_challenge_is_the_s256_of_the_verifier():
    import base64
    import hashlib

    verifier, challenge = oauth.pkce_pair()
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9_~.-]+", verifier)
    assert challenge == base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def session_for(server: AuthServer, clock: Clock) -> tuple[oauth.OAuthSession, httpx.AsyncClient]:
    client = http.make_client()
    return oauth.OAuthSession(app_for(server), oauth.TokenStore(ACCOUNT), lambda: client, clock), client


async def _token_at(server: AuthServer, clock: Clock) -> str:
    session, client = session_for(server, clock)
    try:
        return await session.access_token()
    finally:
        await client.aclose()


def test_refresh_before_expiry_rotates_and_stores_the_new_refresh_token(server, file_keyring, clock):
    first, _ = run_login(server, follow=True, clock=clock)
    clock.advance(7200 - 600)  # not yet inside the margin: the token in hand is used
    assert asyncio.run(_token_at(server, clock)) == first.access_token
    clock.advance(400)  # five minutes before expiry: refreshed first
    token = asyncio.run(_token_at(server, clock))
    stored = oauth.TokenStore(ACCOUNT).load()
    assert token != first.access_token and token == stored.access_token and token in server.access_tokens
    assert stored.refresh_token != first.refresh_token and first.refresh_token not in server.refresh_tokens
    assert secrets.fetch(ACCOUNT + oauth.NEXT_SUFFIX) is None  # the rotation completed


CHILD = textwrap.dedent("""
    import asyncio, os, sys
    import keyring
    from keyrings.alt.file import PlaintextKeyring
    backend = PlaintextKeyring()
    backend.file_path = sys.argv[1]
    keyring.set_keyring(backend)
    from replydesk.providers import http, oauth

    base, stage, now = sys.argv[2], sys.argv[3], float(sys.argv[4])
    app = oauth.OAuthApp("x", base + "/authorize", base + "/token", "client-1", ("tweet.read",))
    oauth.TokenStore.checkpoint = staticmethod(lambda at: os._exit(3) if at == stage else None)

    async def main():
        client = http.make_client()
        await oauth.OAuthSession(app, oauth.TokenStore("shop-x"), lambda: client, lambda: now).access_token()

    asyncio.run(main())
""")


@pytest.mark.parametrize("stage", ["after-next", "after-current"])
def test_a_crash_between_refresh_and_store_does_not_log_the_account_out(server, file_keyring, clock, stage):
    first, _ = run_login(server, follow=True, clock=clock)
    clock.advance(7200 - 60)
    done = subprocess.run([sys.executable, "-c", CHILD, file_keyring.file_path, server.base_url, stage,
                           str(clock.now)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr[-2000:]  # killed at that point of the rotation
    assert first.refresh_token not in server.refresh_tokens  # X spent the old refresh token
    # the next start finds the rotated set and keeps working: no re-login
    token = asyncio.run(_token_at(server, clock))
    assert token in server.access_tokens and token != first.access_token
    clock.advance(7200)
    later = asyncio.run(_token_at(server, clock))  # and its refresh token refreshes
    assert later in server.access_tokens and secrets.fetch(ACCOUNT + oauth.NEXT_SUFFIX) is None


def test_a_revoked_grant_needs_a_new_login(server, file_keyring, clock):
    run_login(server, follow=True, clock=clock)
    server.revoke_all()
    clock.advance(7200)
    with pytest.raises(AuthError, match="re-login needed"):
        asyncio.run(_token_at(server, clock))


def test_tokens_never_print(server, file_keyring, clock):
    tokens, _ = run_login(server, follow=True, clock=clock)
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)
    assert "secret" not in repr(oauth.OAuthApp("x", "a", "b", "id", (), client_secret="secret"))


def test_replydesk_login_drives_the_flow_with_the_url_pasted(server, file_keyring, tmp_path, monkeypatch, capsys):
    """``replydesk login shop-x --no-browser``: the URL on stderr, the redirected address on stdin."""
    from replydesk import cli

    config = tmp_path / "config.yaml"
    config.write_text(f"""
accounts:
  - name: shop-x
    provider: x
    client_id: client-1
    callback_port: 0
    authorize_url: {server.base_url}/authorize
    token_url: {server.base_url}/token
""", encoding="utf-8")
    browser = Browser(follow=False)

    class Terminal:  # what the user sees (stderr) and types (stdin)
        def write(self, text: str) -> int:
            browser.say(text)
            return len(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

        def readline(self) -> str:
            return browser.read_line()

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setattr(sys, "stdin", Terminal())
    assert cli.main(["--config", str(config), "login", "shop-x", "--no-browser"]) == 0
    stored = oauth.TokenStore("shop-x").load()
    assert stored is not None and stored.access_token in server.access_tokens
    assert "logged in" in capsys.readouterr().out
    printed = "".join(browser.printed)
    assert "scope=tweet.read+users.read+tweet.write+dm.read+dm.write+offline.access" in printed
    assert "paste it here" in printed and stored.access_token not in printed
