"""Storage URLs without their secrets (torch-free, optuna-free: the report command and every error
message use it).

A PostgreSQL password can sit in three places of a URL, and all three are removed:

- the userinfo: ``postgresql://alice:secret@host/db``, including a raw ``@`` or ``:`` inside the
  password (``alice:p@ss@host``: the host is after the *last* ``@``, as libpq reads it);
- the query: ``...?password=secret`` (also ``sslpassword``, ``pass``, ``pwd``, any case);
- the keyword form: ``postgresql+psycopg:///db?host=...&password=...`` and libpq DSN text
  ``host=h password=secret``.

:func:`mask_url` is what may be shown or written (``user@host``, no password, ``***`` for query
secrets); :func:`scrub` removes every secret of a URL (raw and percent-decoded) from any text, e.g. a
driver's error message that echoes the DSN.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
SECRET_KEYS = ("password", "sslpassword", "pass", "passwd", "pwd")
_QUERY_SECRET_RE = re.compile(r"(?i)(?P<key>(?:^|[?&;])(?:%s)=)(?P<value>[^&;#]*)" % "|".join(SECRET_KEYS))
_DSN_SECRET_RE = re.compile(r"(?i)(?P<key>\b(?:%s)\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|\S+)" % "|".join(SECRET_KEYS))
MASK = "***"


def is_url(text: str) -> bool:
    return bool(_SCHEME_RE.match(str(text)))


def _split(url: str) -> tuple[str, str, str]:
    """(scheme://, netloc, rest) without urllib's normalisation (a raw '@' stays where it was)."""
    m = _SCHEME_RE.match(url)
    head = m.group(0) if m else ""
    body = url[len(head):]
    cut = len(body)
    for ch in "/?#":
        i = body.find(ch)
        if i != -1:
            cut = min(cut, i)
    netloc = body[:cut]
    # a password may contain '/', '?' or '#' only percent-encoded; but a raw '@' after the cut means
    # the cut was inside the userinfo: extend the netloc to the last '@' before any path
    at = body.rfind("@")
    if at != -1 and at > cut:
        rest = body[at:]
        nxt = min([i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i != -1] or [len(rest)])
        cut = at + nxt
        netloc = body[:cut]
    return head, netloc, body[cut:]


def url_secrets(url: str) -> list[str]:
    """Every secret value in ``url`` (raw and percent-decoded), longest first."""
    s = str(url)
    found: set[str] = set()
    if is_url(s):
        _, netloc, rest = _split(s)
        userinfo, sep, _host = netloc.rpartition("@")
        if sep and ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
        for m in _QUERY_SECRET_RE.finditer(rest):
            found.add(m.group("value"))
    else:
        for m in _DSN_SECRET_RE.finditer(s):
            found.add(m.group("value").strip("'"))
    out = {v for x in found for v in (x, unquote(x)) if v}
    return sorted(out, key=len, reverse=True)


def mask_url(url: str) -> str:
    """The URL as it may be shown or written: the userinfo password dropped (``user@host``), query and
    keyword secrets replaced by ``***``; a plain path (a journal file) is returned unchanged."""
    s = str(url)
    if is_url(s):
        head, netloc, rest = _split(s)
        userinfo, sep, host = netloc.rpartition("@")
        if sep and ":" in userinfo:
            netloc = userinfo.split(":", 1)[0] + "@" + host
        rest = _QUERY_SECRET_RE.sub(lambda m: m.group("key") + MASK, rest)
        s = head + netloc + rest
    elif _DSN_SECRET_RE.search(s):
        s = _DSN_SECRET_RE.sub(lambda m: m.group("key") + MASK, s)
    return s


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` replaced by ``***`` (and any URL in it masked)."""
    out = str(text)
    for secret in url_secrets(url):
        out = out.replace(secret, MASK)
    if str(url) in out:
        out = out.replace(str(url), mask_url(url))
    return out
