"""A fake Google Business Profile behind an httpx.MockTransport, shaped as Google documents it.

No public recordings of these APIs exist, so the payloads follow the reference pages: the v4
``Review`` (``name``, ``reviewId``, ``reviewer{displayName, isAnonymous}``, ``starRating`` ONE..FIVE,
``comment``, ``createTime``/``updateTime`` in RFC 3339 with 0, 3, 6 or 9 fractional digits,
``reviewReply{comment, updateTime, reviewReplyState, policyViolation}``), ``ListReviewsResponse``
(``reviews``, ``averageRating``, ``totalReviewCount``, ``nextPageToken``), ``batchGetReviews``
(``locationReviews[{name, review}]``), the Account Management ``accounts.list`` and the Business
Information ``accounts.locations.list`` (``readMask``), Google's error envelope
(``{"error": {"code", "message", "status", "details"}}``) and the OAuth token endpoint.

The fake keeps state like the platform: reviews sorted by ``updateTime desc``, one reply per review
(PUT is an upsert), access tokens that expire or are revoked. Faults: ``after_put`` raises an
exception *after* the reply landed (an answer lost on the way back).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

ACCOUNT = "accounts/1001"
MAIN_ST = f"{ACCOUNT}/locations/2001"
HARBOUR = f"{ACCOUNT}/locations/2002"
TITLES = {MAIN_ST: "Corner Coffee — Main St", HARBOUR: "Corner Coffee — Harbour"}
STARS = {1: "ONE", 2: "TWO", 3: "THREE", 4: "FOUR", 5: "FIVE"}


def stamp(epoch: float, digits: int = 9) -> str:
    """RFC 3339 in Z with ``digits`` fractional digits, as Google writes it (0, 3, 6 or 9)."""
    base = dt.datetime.fromtimestamp(epoch, dt.UTC)
    text = base.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{base.microsecond:06d}{'000'}"[:digits]
    return text + "Z"


def error(code: int, status: str, message: str, details: list[Any] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "status": status, **({"details": details} if details else {})}}
    return httpx.Response(code, json=body)


@dataclass
class FakeGoogle:
    clock: Any
    reviews: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {MAIN_ST: [], HARBOUR: []})
    tokens: set[str] = field(default_factory=lambda: {"access-1"})
    refreshes: list[str] = field(default_factory=list)
    calls: list[httpx.Request] = field(default_factory=list)
    after_put: list[BaseException] = field(default_factory=list)
    put_state: list[dict[str, Any]] = field(default_factory=list)  # extra fields for the next PUT answers
    refuse: dict[str, httpx.Response] = field(default_factory=dict)  # path -> answer
    fail_pages: dict[str, httpx.Response] = field(default_factory=dict)  # pageToken -> answer

    # ---- building the shop's reviews ----------------------------------------------------------------

    def review(self, location: str, rid: str, stars: int | None, comment: str | None, *, written: float,
               updated: float | None = None, name: str = "Maria K.", anonymous: bool = False,
               reply: dict[str, Any] | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "name": f"{location}/reviews/{rid}", "reviewId": rid,
            "reviewer": ({"isAnonymous": True} if anonymous else
                         {"profilePhotoUrl": f"https://lh3.googleusercontent.com/a/{rid}", "displayName": name,
                          "isAnonymous": False}),
            "starRating": STARS.get(stars, "STAR_RATING_UNSPECIFIED") if stars else "STAR_RATING_UNSPECIFIED",
            "createTime": stamp(written), "updateTime": stamp(updated or written),
        }
        if comment is not None:
            item["comment"] = comment
        if reply is not None:
            item["reviewReply"] = reply
        self.reviews[location] = [r for r in self.reviews[location] if r["reviewId"] != rid] + [item]
        return item

    def edit(self, location: str, rid: str, stars: int, comment: str, at: float) -> None:
        item = self.find(f"{location}/reviews/{rid}")
        item.update({"starRating": STARS[stars], "comment": comment, "updateTime": stamp(at)})

    def find(self, name: str) -> dict[str, Any]:
        location = name.split("/reviews/")[0]
        return next(r for r in self.reviews[location] if r["name"] == name)

    def requests(self, method: str, pattern: str) -> list[httpx.Request]:
        return [r for r in self.calls if r.method == method and re.search(pattern, r.url.path)]

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    # ---- the platform ---------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        host, path = request.url.host, request.url.path
        if host == "oauth2.googleapis.com" and path == "/token":
            return self._token(request)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
                         "access token, login cookie or other valid authentication credential.")
        if path in self.refuse:
            return self.refuse[path]
        if host == "mybusinessaccountmanagement.googleapis.com" and path == "/v1/accounts":
            return httpx.Response(200, json={"accounts": [
                {"name": ACCOUNT, "accountName": "Corner Coffee Group", "type": "LOCATION_GROUP", "role": "OWNER",
                 "verificationState": "VERIFIED"}]})
        if host == "mybusinessbusinessinformation.googleapis.com" and path == f"/v1/{ACCOUNT}/locations":
            assert "readMask" in request.url.params  # the API refuses a listing without one
            return httpx.Response(200, json={"locations": [
                {"name": "locations/2001", "title": TITLES[MAIN_ST],
                 "storefrontAddress": {"regionCode": "GR", "locality": "Athens", "addressLines": ["Odos Main 12"]}},
                {"name": "locations/2002", "title": TITLES[HARBOUR],
                 "storefrontAddress": {"regionCode": "GR", "locality": "Piraeus", "addressLines": ["Akti 3"]}},
            ], "totalSize": 2})
        if host != "mybusiness.googleapis.com":
            return error(404, "NOT_FOUND", "Requested entity was not found.")
        match = re.fullmatch(r"/v4/(accounts/\w+/locations/\w+)/reviews", path)
        if match and request.method == "GET":
            return self._page(self.reviews.get(match.group(1), []), dict(request.url.params), None)
        match = re.fullmatch(r"/v4/(accounts/\w+)/locations:batchGetReviews", path)
        if match and request.method == "POST":
            body = json.loads(request.content)
            pairs = [(loc, r) for loc in body["locationNames"] for r in self.reviews.get(loc, [])]
            return self._page([r for _, r in pairs], body, {r["name"]: loc for loc, r in pairs})
        match = re.fullmatch(r"/v4/(accounts/\w+/locations/\w+/reviews/[\w-]+)/reply", path)
        if match:
            return self._reply(request, match.group(1))
        return error(404, "NOT_FOUND", "Requested entity was not found.")

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != "refresh-1":
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "Token has been expired "
                                             "or revoked."})
        fresh = f"access-{len(self.refreshes) + 2}"
        self.refreshes.append(fresh)
        self.tokens.add(fresh)
        # Google does not rotate refresh tokens: the answer carries none
        return httpx.Response(200, json={"access_token": fresh, "expires_in": 3599, "token_type": "Bearer",
                                         "scope": "https://www.googleapis.com/auth/business.manage"})

    def _page(self, reviews: list[dict[str, Any]], asked: dict[str, Any], located: dict[str, str] | None
              ) -> httpx.Response:
        token = asked.get("pageToken")
        if token in self.fail_pages:
            return self.fail_pages[token]
        ordered = sorted(reviews, key=lambda r: r["updateTime"], reverse=True)
        start = int(str(token).removeprefix("page-")) if token else 0
        size = min(int(asked.get("pageSize") or 50), 50)
        page = ordered[start:start + size]
        more = start + size < len(ordered)
        if located is None:
            body: dict[str, Any] = {"reviews": page, "averageRating": 3.4, "totalReviewCount": len(ordered)}
        else:
            body = {"locationReviews": [{"name": located[r["name"]], "review": r} for r in page]}
        if more:
            body["nextPageToken"] = f"page-{start + size}"
        return httpx.Response(200, json=body)

    def _reply(self, request: httpx.Request, name: str) -> httpx.Response:
        try:
            review = self.find(name)
        except StopIteration:
            return error(404, "NOT_FOUND", "Requested entity was not found.")
        if request.method == "DELETE":
            review.pop("reviewReply", None)
            return httpx.Response(200, json={})
        comment = json.loads(request.content)["comment"]
        reply = {"comment": comment, "updateTime": stamp(self.clock()), "reviewReplyState": "APPROVED"}
        if self.put_state:
            reply.update(self.put_state.pop(0))
        review["reviewReply"] = reply
        if self.after_put:
            raise self.after_put.pop(0)
        return httpx.Response(200, json=reply)
