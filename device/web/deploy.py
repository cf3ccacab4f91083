"""``hark deploy MODEL URL``: put a bundle on a running hark from the desktop, through its page.

The bundle folder is checked here first (:func:`hark.bundle.load_bundle`: a bundle that would
be refused is not sent), packed into a gzipped tar in a temporary file, and uploaded to
``URL/api/model`` after logging in as the page does (the password from ``--password-file`` or
asked for without echo; a session cookie and the CSRF token). The device verifies it again,
swaps it in without restarting and keeps the previous one for rollback. Only the standard
library is used, so the command works with the device install too.
"""

from __future__ import annotations

import argparse
import getpass
import http.cookiejar
import json
import ssl
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from hark.bundle import load_bundle
from hark.errors import HarkError

TIMEOUT_S = 300.0


def _url(text: str) -> str:
    parsed = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise HarkError(f"{text}: not the address of a hark page (expected http://HOST:PORT)")
    return f"{parsed.scheme}://{parsed.netloc}"


def _message(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read(65536))["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return f"{err.code} {err.reason}"


class _Page:
    """A logged-in conversation with the page: the cookie jar and the CSRF token."""

    def __init__(self, base: str, *, cafile: str | None) -> None:
        self.base = base
        context = ssl.create_default_context(cafile=cafile) if base.startswith("https") else None
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=context) if context else urllib.request.HTTPHandler())
        self.csrf = ""

    def send(self, method: str, path: str, data: Any = None, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if self.csrf and method != "GET":
            request.add_header("X-CSRF-Token", self.csrf)
        try:
            with self.opener.open(request, timeout=TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise HarkError(f"{self.base}{path}: {_message(err)}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise HarkError(f"{self.base}: cannot reach the page ({reason})") from None

    def login(self, password: str | None) -> None:
        if password is not None:
            form = urllib.parse.urlencode({"password": password}).encode()
            self.send("POST", "/login", form, {"Accept": "application/json",
                                               "Content-Type": "application/x-www-form-urlencoded"})
        self.csrf = str(self.send("GET", "/api/session")["csrf"])


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise HarkError(f"{args.password_file}: cannot read the password file ({err})") from None
        return text.splitlines()[0].strip() if text else ""
    if not sys.stdin.isatty():
        raise HarkError("hark deploy: no terminal to ask for the password; give --password-file FILE")
    return getpass.getpass("password for the hark page: ")


def main(args: argparse.Namespace) -> int:
    """Check, pack, log in, upload; prints what the device now runs."""
    bundle = load_bundle(args.model)
    base = _url(args.url)
    page = _Page(base, cafile=args.cafile)
    # A page on 127.0.0.1 may have no password: try without asking first.
    try:
        page.login(None)
    except HarkError as err:
        if "log in" not in str(err):
            raise
        page.login(_password(args))
    with tempfile.NamedTemporaryFile(suffix=".tar.gz") as packed:
        with tarfile.open(fileobj=packed, mode="w:gz") as tar:
            for path in sorted(bundle.path.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    tar.add(path, arcname=f"{bundle.path.name}/{path.relative_to(bundle.path).as_posix()}",
                            recursive=False)
        size = packed.tell()
        packed.seek(0)
        print(f"uploading {bundle.name} ({size / 1e6:.1f} MB) to {base} ...", file=sys.stderr, flush=True)
        reply = page.send("POST", "/api/model", packed, {"Content-Type": "application/octet-stream",
                                                         "Content-Length": str(size),
                                                         "X-Filename": f"{bundle.path.name}.tar.gz"})
    print(f"{base} now runs {reply['name']} ({', '.join(reply['labels'])}); the previous model is kept for rollback")
    return 0
