"""The page's server: aiohttp on a thread of its own, talking to the running daemon.

The daemon hands the server each audio chunk (:meth:`WebServer.feed`) and each detection
(:meth:`WebServer.detection`); both are a flag test and, only while a page is open, a
``deque.append``. Everything else (the live spectrogram, file listings, pictures, uploads)
runs on the server's own thread and event loop, or on its small thread pool for file and
model work, so the audio loop never waits for a browser. Live updates go out at
:data:`PUSH_HZ` at most, and only while a WebSocket is connected: a closed page costs nothing.

Routes (everything but ``/login`` needs a session; every POST/DELETE a CSRF token):

``/`` the app, ``/static/*`` its files, ``/ws`` live updates; ``/api/session``, ``/api/status``,
``/api/mute``; ``/api/record`` (N clips with a countdown, through the daemon's recorder),
``/api/clips/<folder>``, ``/api/dataset/check``, ``/api/dataset.zip``; ``/api/captures`` and their
verdicts (:mod:`hark.review`); ``/api/model`` (info, upload), ``/api/model/rollback``,
``/model/report.html``; ``/files/<dataset|captures>/<folder>/<name>.wav|png`` (audio and pictures).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from hark import SAMPLE_RATE, review
from hark.config import WebConfig
from hark.dataset import RECORD_SUFFIX
from hark.errors import HarkError
from hark.labels import BACKGROUND, BACKGROUND_DIR, UNKNOWN_DIR, check_label, is_valid_label
from hark.web import STATIC_DIR, tls_context
from hark.web.auth import COOKIE, CSRF_HEADER, Auth, Session
from hark.web.spectrogram import frontend_for, levels, picture, to_bytes

log = logging.getLogger(__name__)

PUSH_HZ = 10.0
MAX_CLIENTS = 8
AUDIO_BACKLOG = 64  # chunks (about 5 s) kept for the live spectrogram between pushes
RECENT_DETECTIONS = 20
MAX_COUNT = 50
COUNTDOWN_S = 3.0
PAUSE_S = 1.0
NAME_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,120}")
MAX_FORM_BYTES = 4096
PAGES = {"/", "/live", "/record", "/review", "/model"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # not no-referrer: with it a form POST says Origin: null
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                                "connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
                                "form-action 'self'; base-uri 'none'"),
}


@dataclass
class _RecordJob:
    label: str | None
    count: int
    seconds: float
    index: int = 0
    phase: str = "starting"
    left_s: float = 0.0
    error: str | None = None
    saved: list[str] = field(default_factory=list)


class WebServer:
    """The page for one running :class:`hark.daemon.Daemon`; :meth:`start` serves, :meth:`stop` ends."""

    def __init__(self, daemon: Any, config: WebConfig) -> None:
        self.daemon = daemon
        self.config = config
        self.auth = Auth(config.read_password(), session_s=config.session_hours * 3600)
        self.ssl = tls_context(config)
        self.max_upload = int(config.upload_max_mb * (1 << 20))
        self.port = config.port
        self.active = False  # a page is open: the daemon hands over audio
        self._audio: collections.deque[np.ndarray] = collections.deque(maxlen=AUDIO_BACKLOG)
        self._detections: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_DETECTIONS)
        self._detection_seq = 0
        self._clients: set[web.WebSocketResponse] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hark-web")
        self._push_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._record: _RecordJob | None = None
        self._record_task: asyncio.Task[None] | None = None
        # Paths the recorder saved (clips and captures alike), for a recording in progress; bounded, so
        # months of captures with nobody recording cost nothing.
        self._saved: collections.deque[Path] = collections.deque(maxlen=64)
        self._model_lock = threading.Lock()
        # What the live spectrogram is drawn with, made when a page first opens (for a speech model it loads
        # two TFLite models) and again after a model swap; used on the server's loop thread only.
        self._drawn_for: Any = None
        self._drawn: Any = None

    # ------------------------------------------------------------ daemon side (audio thread)

    def feed(self, chunk: np.ndarray) -> None:
        """An audio chunk from the daemon's loop; kept only while a page is open."""
        if self.active:
            self._audio.append(chunk)

    def on_detection(self, detection: Any) -> None:
        """A detection from the daemon's loop (the page is a :class:`hark.sinks.Sink`); the newest
        :data:`RECENT_DETECTIONS` are kept for the page."""
        self._detection_seq += 1
        self._detections.append({"seq": self._detection_seq, "label": detection.label,
                                 "score": round(float(detection.score), 4),
                                 "time": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                                 "stream_s": round(float(detection.time_s), 3)})

    def saved(self, path: Path) -> None:
        """A clip or capture is on disk (the recorder's writer thread)."""
        self._saved.append(path)

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host = self.config.bind if ":" not in self.config.bind else f"[{self.config.bind}]"
        return f"{'https' if self.ssl else 'http'}://{host}:{self.port}/"

    def start(self) -> None:
        """Serve on a thread of its own; raises :class:`HarkError` when the port cannot be had."""
        self._thread = threading.Thread(target=self._serve, name="hark-web", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            err = self._error
            raise HarkError(f"web: cannot serve on {self.config.bind}:{self.config.port} "
                            f"({getattr(err, 'strerror', None) or err})")
        log.info("web page on %s (%s)", self.url,
                 "password required" if self.auth.required else "no password: this machine only")

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._wake = asyncio.Event()
        try:
            self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.config.bind, self.config.port, ssl_context=self.ssl,
                               reuse_address=True)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1] if site._server else self.config.port  # type: ignore[union-attr]
        except BaseException as err:  # reported by start()
            self._error = err
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        for ws in list(self._clients):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._record_task is not None:
            self._record_task.cancel()
        if self._push_task is not None:
            self._push_task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def close(self) -> None:
        """Stop serving (the :class:`hark.sinks.Sink` call at the daemon's end)."""
        self.stop()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ the app

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=self.max_upload + (1 << 20))
        r = app.router
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        for page in PAGES:
            r.add_get(page, self.index)
        r.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
        r.add_get("/ws", self.websocket)
        r.add_get("/api/session", self.session_info)
        r.add_get("/api/status", self.status)
        r.add_post("/api/mute", self.mute)
        r.add_post("/api/record", self.record)
        r.add_post("/api/record/cancel", self.record_cancel)
        r.add_get("/api/clips/{folder}", self.clips)
        r.add_delete("/api/clips/{folder}/{name}", self.clip_delete)
        r.add_get("/api/dataset/check", self.dataset_check)
        r.add_get("/api/dataset.zip", self.dataset_zip)
        r.add_get("/api/captures", self.captures)
        r.add_post("/api/captures/{label}/{stem}", self.capture_verdict)
        r.add_get("/api/model", self.model_info)
        r.add_post("/api/model", self.model_upload)
        r.add_post("/api/model/rollback", self.model_rollback)
        r.add_get("/model/report.html", self.model_report)
        r.add_get("/files/{root}/{folder}/{name}", self.file)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        """Sessions, CSRF and the security headers, for every request."""
        try:
            response = await self._checked(request, handler)
        except web.HTTPException as exc:
            response = exc
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.path.startswith(("/api/", "/files/")) or request.path in PAGES or request.path == "/login":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _checked(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        changes = request.method not in ("GET", "HEAD")
        # A WebSocket is not covered by CORS: another site's script may open one, so its Origin is checked too.
        if (changes or request.path == "/ws") and not self._same_origin(request):
            return _error(403, "cross-site request refused")
        if request.path == "/login":
            return await handler(request)
        session = self.auth.session(request.cookies.get(COOKIE))
        if session is None and not self.auth.required:
            session = self.auth.new_session()
            request["new_session"] = session
        if session is None:
            if request.path.startswith(("/api/", "/files/", "/ws")) or request.method != "GET":
                return _error(401, "log in first")
            raise web.HTTPSeeOther("/login")
        if request.method not in ("GET", "HEAD") and not Auth.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            return _error(403, "missing or wrong CSRF token; reload the page")
        request["session"] = session
        response = await handler(request)
        if "new_session" in request:
            self._set_cookie(response, session)
        return response

    def _same_origin(self, request: web.Request) -> bool:
        """A browser's Origin, when it sends one, must be this page's (CSRF and cross-site WebSockets)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser (hark deploy, curl); the session and CSRF token still apply
        return origin == f"{request.scheme}://{request.host}"

    def _set_cookie(self, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", secure=self.ssl is not None,
                            path="/", max_age=int(self.auth.session_s))

    # ------------------------------------------------------------ logging in

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        if self.auth.session(request.cookies.get(COOKIE)) is not None or not self.auth.required:
            raise web.HTTPSeeOther("/")
        message = ("Wrong password." if "failed" in request.query else
                   "Too many wrong passwords: wait a minute." if "limited" in request.query else None)
        return _login_page(message)

    async def login(self, request: web.Request) -> web.StreamResponse:
        client = request.remote or "?"
        wait = self.auth.retry_after(client)
        if wait > 0:
            log.warning("web: login from %s refused: too many wrong passwords (wait %.0f s)", client, wait)
            if not request.headers.get("Accept", "").startswith("application/json"):
                return _login_page("Too many wrong passwords: wait a minute.", status=429,
                                   headers={"Retry-After": str(int(wait) + 1)})
            return _error(429, f"too many wrong passwords; try again in {wait:.0f} s",
                          headers={"Retry-After": str(int(wait) + 1)})
        # Read by hand, at most MAX_FORM_BYTES: anyone may post here, and request.post() would take a body
        # as large as an upload.
        body = await request.content.read(MAX_FORM_BYTES + 1)
        if len(body) > MAX_FORM_BYTES:
            return _error(413, "too long")
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        password = (form.get("password") or [None])[0]
        if not isinstance(password, str) or len(password) > 1024 or not self.auth.check_password(client, password):
            log.warning("web: wrong password from %s", client)
            if request.headers.get("Accept", "").startswith("application/json"):
                return _error(401, "wrong password")
            raise web.HTTPSeeOther("/login?failed=1")
        session = self.auth.new_session()
        log.info("web: %s logged in", client)
        response: web.StreamResponse
        if request.headers.get("Accept", "").startswith("application/json"):
            response = web.json_response({"ok": True, "csrf": session.csrf})
        else:
            response = web.HTTPSeeOther("/")
        self._set_cookie(response, session)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.auth.end(request.cookies.get(COOKIE))
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def session_info(self, request: web.Request) -> web.StreamResponse:
        session: Session = request["session"]
        return web.json_response({"csrf": session.csrf, "password": self.auth.required})

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    # ------------------------------------------------------------ live

    def state(self) -> dict[str, Any]:
        d = self.daemon
        mqtt = d.mqtt
        if d.recording:
            state = "recording"
        elif d.muted:
            state = "muted"
        else:
            state = "listening"
        return {
            "state": state, "muted": bool(d.muted), "recording": bool(d.recording), "mic_lost": bool(d.audio_lost),
            "broker": None if mqtt is None else bool(mqtt.connected),
            "model": d.model_name, "detections": d.detections, "record": self._record_state(),
        }

    def _thresholds(self) -> dict[str, float]:
        return {**self.daemon.model.thresholds, **dict(self.daemon.config.detection.thresholds)}

    async def status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({**self.state(), "classes": self.daemon.classes, "thresholds": self._thresholds(),
                                  "recent": list(self._detections)})

    async def mute(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        muted = body.get("muted")
        if not isinstance(muted, bool):
            return _error(400, 'expected {"muted": true|false}')
        self.daemon.set_muted(muted)
        log.info("web: mute %s", "on" if muted else "off")
        self._poke()
        return web.json_response(self.state())

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if len(self._clients) >= MAX_CLIENTS:
            return _error(503, f"at most {MAX_CLIENTS} pages may be open at once")
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
        await ws.prepare(request)
        self._clients.add(ws)
        self.active = True
        if self._push_task is None or self._push_task.done():
            self._push_task = asyncio.get_running_loop().create_task(self._push_loop())
        try:
            await ws.send_str(json.dumps(self._hello()))
            async for message in ws:
                if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._clients.discard(ws)
            if not self._clients:
                self.active = False
                self._audio.clear()
        return ws

    def _hello(self) -> dict[str, Any]:
        return {"type": "hello", "classes": self.daemon.classes, "thresholds": self._thresholds(),
                "recent": list(self._detections), "state": self.state(), "mels": self._drawing().feature_shape[0],
                "frames_per_s": SAMPLE_RATE / self._drawing().hop_samples}

    def _drawing(self) -> Any:
        """The running model's spectrogram frontend (see ``_drawn``), made again after a model swap."""
        if self._drawn_for is not self.daemon.model:
            self._drawn_for = self.daemon.model
            self._drawn = frontend_for(self._drawn_for)
        return self._drawn

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _push_loop(self) -> None:
        """While a page is open: scores, new spectrogram columns, detections and state, PUSH_HZ at most."""
        frontend = self._drawing()
        frontend.reset()
        last_seq = self._detection_seq
        last_model = self.daemon.model_name
        try:
            while self._clients:
                started = time.monotonic()
                frontend = self._drawing()
                chunks = []
                while self._audio:
                    chunks.append(self._audio.popleft())
                columns = ""
                if chunks:
                    features = frontend.push(np.concatenate(chunks))
                    if len(features):
                        columns = base64.b64encode(to_bytes(features, *levels(frontend)).tobytes()).decode()
                message: dict[str, Any] = {"type": "live", "scores": _rounded(self.daemon.pipeline.last_scores),
                                           "spec": columns, "state": self.state()}
                if self.daemon.model_name != last_model:
                    last_model = self.daemon.model_name
                    message["hello"] = self._hello()
                if self._detection_seq != last_seq:
                    message["detections"] = [d for d in self._detections if d["seq"] > last_seq]
                    last_seq = self._detection_seq
                await self._broadcast(message)
                if self._wake is not None:
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(),
                                               max(0.0, 1 / PUSH_HZ - (time.monotonic() - started)))
                    # A poke (mute, a clip saved) is shown at once but still no faster than PUSH_HZ.
                    await asyncio.sleep(max(0.0, 1 / PUSH_HZ - (time.monotonic() - started)))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("web: live updates stopped")

    async def _broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        for ws in list(self._clients):
            try:
                await asyncio.wait_for(ws.send_str(text), 2.0)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                self._clients.discard(ws)
                with contextlib.suppress(Exception):
                    await ws.close()

    # ------------------------------------------------------------ recording

    def _dataset_dir(self) -> Path:
        return Path(self.daemon.recorder.dataset_dir)

    def _captures_dir(self) -> Path:
        return Path(self.daemon.recorder.captures_dir)

    def _record_state(self) -> dict[str, Any] | None:
        job = self._record
        if job is None:
            return None
        return {"label": job.label or BACKGROUND, "count": job.count, "seconds": job.seconds, "index": job.index,
                "phase": job.phase, "left_s": round(job.left_s, 1), "error": job.error, "saved": list(job.saved)}

    async def record(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        recorder = self.daemon.recorder
        background = body.get("background") is True or body.get("label") == BACKGROUND
        try:
            label = None if background else check_label(body.get("label"), where="label")
            count = body.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
                raise HarkError(f"count: {str(count)[:20]} is not a whole number from 1 to {MAX_COUNT}")
            seconds = body.get("seconds")
            if seconds is None:
                seconds = recorder.background_seconds if background else recorder.clip_seconds
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
                    recorder.min_seconds <= seconds <= recorder.max_seconds):
                raise HarkError(f"seconds: {str(seconds)[:20]} is not from {recorder.min_seconds:g} to "
                                f"{recorder.max_seconds:g} (recording.min_seconds, max_seconds)")
        except HarkError as err:
            return _error(400, str(err))
        if self._record_task is not None and not self._record_task.done():
            return _error(409, "already recording; wait or cancel")
        self._record = _RecordJob(label=label, count=count, seconds=float(seconds))
        self._record_task = asyncio.get_running_loop().create_task(self._record_loop(self._record))
        log.info("web: recording %d clip(s) of %s, %.1f s each", count, label or BACKGROUND, seconds)
        return web.json_response(self._record_state())

    async def record_cancel(self, request: web.Request) -> web.StreamResponse:
        if self._record_task is not None and not self._record_task.done():
            self._record_task.cancel()
        return web.json_response({"ok": True})

    async def _record_loop(self, job: _RecordJob) -> None:
        recorder = self.daemon.recorder
        folder = self._dataset_dir() / (job.label or BACKGROUND_DIR)
        try:
            for index in range(job.count):
                job.index = index
                countdown = COUNTDOWN_S if index == 0 else PAUSE_S
                end = time.monotonic() + countdown
                job.phase = "countdown"
                while (left := end - time.monotonic()) > 0:
                    job.left_s = left
                    self._poke()
                    await asyncio.sleep(min(0.25, left))
                self._saved.clear()
                if not recorder.request_clip(job.label, job.seconds, trusted=True):
                    raise HarkError("the recorder refused (another clip is being recorded, or the dataset is "
                                    "full); see the log")
                job.phase, job.left_s = "recording", job.seconds
                self._poke()
                deadline = time.monotonic() + job.seconds + 30
                path = None
                while time.monotonic() < deadline and path is None:
                    job.left_s = max(0.0, job.left_s - 0.1)
                    await asyncio.sleep(0.1)
                    while self._saved:
                        saved = self._saved.popleft()
                        if saved.parent == folder:
                            path = saved
                if path is None:
                    raise HarkError("the clip was not saved (full disk? see the log)")
                job.saved.append(f"{folder.name}/{path.name}")
                self._poke()
            job.phase = "done"
        except asyncio.CancelledError:
            job.phase = "cancelled"
        except HarkError as err:
            job.phase, job.error = "failed", str(err)
            log.warning("web: recording stopped: %s", err)
        finally:
            self._poke()

    def _folder(self, name: str) -> Path:
        if name not in (BACKGROUND_DIR, UNKNOWN_DIR) and not is_valid_label(name):
            raise web.HTTPNotFound()
        return self._dataset_dir() / name

    async def clips(self, request: web.Request) -> web.StreamResponse:
        folder = self._folder(request.match_info["folder"])

        def listing() -> list[dict[str, Any]]:
            if not folder.is_dir():
                return []
            files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()
                            and NAME_PATTERN.fullmatch(p.name)), key=lambda p: p.name, reverse=True)
            return [{"name": p.name, "folder": folder.name, "bytes": p.stat().st_size} for p in files[:100]]

        return web.json_response(await self._run(listing))

    async def clip_delete(self, request: web.Request) -> web.StreamResponse:
        folder = self._folder(request.match_info["folder"])
        name = request.match_info["name"]
        if not NAME_PATTERN.fullmatch(name) or not name.lower().endswith(".wav"):
            raise web.HTTPNotFound()
        path = folder / name
        if not path.is_file() or path.is_symlink():
            raise web.HTTPNotFound()
        await self._run(path.unlink)
        record = path.with_suffix(RECORD_SUFFIX)  # a reviewed capture's detection time (hark.dataset), gone with it
        if record.is_file() and not record.is_symlink():
            await self._run(record.unlink)
        log.info("web: deleted %s", path)
        return web.json_response({"ok": True})

    async def dataset_check(self, request: web.Request) -> web.StreamResponse:
        from hark.dataset import load_dataset

        root = self._dataset_dir()
        if not root.is_dir():
            return web.json_response({"rows": [], "warnings": [], "errors": [f"{root}: no clips recorded yet"]})

        def check() -> dict[str, Any]:
            warnings: list[str] = []
            try:
                dataset = load_dataset(root, warn=warnings.append)
            except HarkError as err:
                return {"rows": [], "warnings": warnings, "errors": [str(err)]}
            rows = [{"name": r.name, "clips": r.clips, "duration_s": round(r.duration_s, 1), "rates": sorted(r.rates),
                     "clipped": r.clipped, "silent": r.silent, "duplicates": r.duplicates} for r in dataset.stats()]
            return {"rows": rows, "warnings": warnings, "errors": dataset.errors}

        return web.json_response(await self._run(check))

    async def dataset_zip(self, request: web.Request) -> web.StreamResponse:
        """The dataset folder as a zip, streamed as it is made (audio is stored, not compressed again)."""
        root = self._dataset_dir()
        if not root.is_dir():
            return _error(404, "no dataset yet")
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{root.name or "dataset"}.zip"'})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        parts: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)

        class Pipe:
            """A write-only file whose bytes go to the response (zipfile needs a file object)."""

            def __init__(self) -> None:
                self.offset = 0

            def write(self, data: bytes) -> int:
                asyncio.run_coroutine_threadsafe(parts.put(bytes(data)), loop).result()
                self.offset += len(data)
                return len(data)

            def tell(self) -> int:
                return self.offset

            def flush(self) -> None:
                pass

        def make() -> None:
            try:
                with zipfile.ZipFile(Pipe(), "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
                    for path in sorted(root.rglob("*")):
                        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                            archive.write(path, f"{root.name or 'dataset'}/{path.relative_to(root).as_posix()}")
            finally:
                asyncio.run_coroutine_threadsafe(parts.put(None), loop).result()

        task = loop.run_in_executor(self._pool, make)
        while (part := await parts.get()) is not None:
            await response.write(part)
        await task
        await response.write_eof()
        return response

    # ------------------------------------------------------------ review

    async def captures(self, request: web.Request) -> web.StreamResponse:
        captures = await self._run(review.list_captures, self._captures_dir(), limit=200)
        return web.json_response([c.as_dict() for c in captures])

    async def capture_verdict(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        verdict = body.get("verdict")
        if verdict not in review.VERDICTS:
            return _error(400, f"verdict: expected one of {', '.join(review.VERDICTS)}")
        capture_id = f"{request.match_info['label']}/{request.match_info['stem']}"
        try:
            target = await self._run(review.judge, self._captures_dir(), self._dataset_dir(), capture_id, verdict)
        except HarkError as err:
            return _error(404 if "not found" in str(err) else 400, str(err))
        return web.json_response({"ok": True, "moved_to": target.relative_to(self._dataset_dir()).as_posix()
                                  if target else None})

    # ------------------------------------------------------------ files

    async def file(self, request: web.Request) -> web.StreamResponse:
        root_name, folder, name = (request.match_info[k] for k in ("root", "folder", "name"))
        if root_name == "dataset":
            base = self._folder(folder)
        elif root_name == "captures" and is_valid_label(folder):
            base = self._captures_dir() / folder
        else:
            raise web.HTTPNotFound()
        if not NAME_PATTERN.fullmatch(name):
            raise web.HTTPNotFound()
        stem, _, kind = name.rpartition(".")
        audio = base / f"{stem}.wav"
        if kind not in ("wav", "png") or not audio.is_file() or audio.is_symlink():
            raise web.HTTPNotFound()
        if kind == "wav":
            return web.FileResponse(audio, headers={"Content-Type": "audio/wav"})
        try:
            data = await self._run(picture, audio, self.daemon.model)
        except Exception as err:  # an unreadable file is a missing picture, not a broken page
            log.warning("web: no spectrogram of %s (%s)", audio, err)
            raise web.HTTPNotFound() from None
        return web.Response(body=data, content_type="image/png")

    # ------------------------------------------------------------ the model

    async def model_info(self, request: web.Request) -> web.StreamResponse:
        from hark.web.models import read_active

        d = self.daemon
        manifest = d.model.manifest
        detection = manifest.detection
        previous = read_active(d.config).previous if self._deployed_previous() else None
        return web.json_response({
            "name": d.model_name, "path": str(d.model.bundle.path), "labels": d.classes,
            "thresholds": self._thresholds(), "base": manifest.base or manifest.frontend.name,
            "created": manifest.created or None, "trainer_version": manifest.trainer_version or None,
            "expected_recall": dict(detection.expected_recall) or None,
            "false_alarms_per_hour": dict(detection.expected_false_alarms_per_hour) or None,
            "false_alarms_budget": detection.false_alarms_per_hour_budget,
            "dataset": dict(manifest.dataset) or None, "report": (d.model.bundle.path / "report.html").is_file(),
            "previous": str(previous) if previous else None, "upload_max_mb": self.config.upload_max_mb,
        })

    def _deployed_previous(self) -> bool:
        from hark.web.models import read_active

        previous = read_active(self.daemon.config).previous
        if previous is None:
            return str(self.daemon.model.bundle.path) != str(self.daemon.config.model)
        return previous.is_dir()

    async def model_report(self, request: web.Request) -> web.StreamResponse:
        path = self.daemon.model.bundle.path / "report.html"
        if not path.is_file():
            raise web.HTTPNotFound()
        # Served as it is, in a sandbox: a report inside an uploaded bundle can run nothing in the page's origin.
        return web.FileResponse(path, headers={"Content-Type": "text/html; charset=utf-8",
                                               "Content-Security-Policy": "sandbox; default-src 'none'; "
                                               "img-src data:; style-src 'unsafe-inline'"})

    async def model_upload(self, request: web.Request) -> web.StreamResponse:
        from hark.web import models

        if request.content_length is not None and request.content_length > self.max_upload:
            return _error(413, f"the upload is larger than web.upload_max_mb ({self.config.upload_max_mb:g} MB)")
        if not self._model_lock.acquire(blocking=False):
            return _error(409, "another model is being installed")
        try:
            folder = models.models_dir(self.daemon.config)
            await self._run(folder.mkdir, parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".upload-", dir=folder)
            upload = Path(name)
            try:
                size = 0
                with os.fdopen(fd, "wb") as out:
                    async for block in request.content.iter_chunked(1 << 16):
                        size += len(block)
                        if size > self.max_upload:
                            return _error(413, f"the upload is larger than web.upload_max_mb "
                                               f"({self.config.upload_max_mb:g} MB)")
                        out.write(block)
                filename = request.headers.get("X-Filename", "upload")[:100]
                try:
                    model, path = await self._run(models.install, self.daemon.config, upload,
                                                  max_bytes=self.max_upload * 4, filename=filename)
                except HarkError as err:
                    log.warning("web: upload refused: %s", err)
                    return _error(400, str(err))
            finally:
                with contextlib.suppress(OSError):
                    upload.unlink()
            previous = self.daemon.model.bundle.path
            await self._run(self.daemon.swap_model, model)
            await self._run(models.write_active, self.daemon.config, path, previous)
            await self._run(models.prune, self.daemon.config, {path, previous})
            log.info("web: model %s deployed from %s (previous: %s)", model.bundle.name, path, previous)
            self._poke()
            return web.json_response({"ok": True, "name": model.bundle.name, "labels": model.bundle.classes})
        finally:
            self._model_lock.release()

    async def model_rollback(self, request: web.Request) -> web.StreamResponse:
        from hark.model import Model
        from hark.web import models

        if not self._model_lock.acquire(blocking=False):
            return _error(409, "another model is being installed")
        try:
            config = self.daemon.config
            previous = models.read_active(config).previous or Path(config.model)
            current = self.daemon.model.bundle.path
            if Path(previous).resolve() == Path(current).resolve():
                return _error(409, "nothing to roll back to")
            try:
                model = await self._run(Model.load, previous)
                config.check_labels(model.labels)
            except HarkError as err:
                return _error(400, f"cannot roll back: {err}")
            await self._run(self.daemon.swap_model, model)
            await self._run(models.write_active, config, previous, current)
            log.info("web: rolled back to %s", previous)
            self._poke()
            return web.json_response({"ok": True, "name": model.bundle.name, "labels": model.bundle.classes})
        finally:
            self._model_lock.release()

    # ------------------------------------------------------------ helpers

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kwargs))


def _login_page(message: str | None, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    page = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
    if message:
        page = page.replace("<!--MESSAGE-->", f'<p class="failed" role="alert">{message}</p>')
    # The login page has no script at all; its style is inline.
    return web.Response(text=page, content_type="text/html", status=status, headers={
        **(headers or {}),
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                   "frame-ancestors 'none'; base-uri 'none'"})


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {label: round(float(value), 3) for label, value in scores.items() if label != BACKGROUND}


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES, actual_size=request.content_length)
    try:
        body = json.loads(await request.content.read(MAX_FORM_BYTES + 1) or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='{"error": "expected a JSON body"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}', content_type="application/json")
    return body
