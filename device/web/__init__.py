"""The device's own page: listen, record, review and deploy from a browser.

``hark run`` serves it when the config has a ``web:`` section (:class:`hark.config.WebConfig`).
The server (:mod:`hark.web.server`, aiohttp) runs on a thread of its own with its own event
loop, so nothing it does can hold up the audio loop; the pages are plain HTML, JavaScript and
CSS from :mod:`hark.web` 's ``static/`` folder, with nothing fetched from the internet.

This module itself imports nothing heavy: ``hark check`` uses :func:`check_web` to run the
same checks ``hark run`` does before it serves (password file, TLS files) without aiohttp.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from hark.config import Config, WebConfig
from hark.errors import HarkError

STATIC_DIR = Path(__file__).resolve().parent / "static"


def tls_context(web: WebConfig) -> ssl.SSLContext | None:
    """The server's TLS context from ``web.tls``, or None for plain HTTP; one-line errors name the file."""
    if web.tls is None:
        return None
    for key in ("cert_file", "key_file"):
        path = getattr(web.tls, key)
        if not path.is_file():
            raise HarkError(f"web.tls.{key}: {path} does not exist")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(web.tls.cert_file), str(web.tls.key_file))
    except (ssl.SSLError, OSError, ValueError) as err:
        raise HarkError(f"web.tls: cannot use {web.tls.cert_file} with {web.tls.key_file} ({err})") from None
    return context


def check_web(config: Config) -> str:
    """What ``hark check`` prints for the page; raises what ``hark run`` would refuse to start with."""
    web = config.web
    if web is None:
        return "off (no web section)"
    password = web.read_password()
    tls_context(web)
    scheme = "https" if web.tls else "http"
    auth = "password from file (not shown)" if password else "no password (this machine only)"
    return f"{scheme}://{web.bind}:{web.port}/, {auth}"
