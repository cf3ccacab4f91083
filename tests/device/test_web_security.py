"""The page's security against a real ``hark run``: nothing without a session, CSRF, the login limit,
uploads checked before anything is written, and no start without a password off 127.0.0.1."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.broker import free_port
from tests.fixtures.synth import write_stream
from tests.fixtures.web import PASSWORD, ROOT, Client, Daemon, serving, write_config

PROTECTED = [("GET", "/"), ("GET", "/live"), ("GET", "/static/app.js"), ("GET", "/api/status"),
             ("GET", "/api/session"), ("GET", "/api/model"), ("GET", "/api/captures"), ("GET", "/api/clips/beep"),
             ("GET", "/api/dataset/check"), ("GET", "/api/dataset.zip"), ("GET", "/model/report.html"),
             ("GET", "/files/dataset/beep/x.wav"), ("GET", "/ws"), ("POST", "/api/mute"), ("POST", "/api/record"),
             ("POST", "/api/model"), ("POST", "/api/model/rollback"), ("DELETE", "/api/clips/beep/x.wav")]


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events = [(1.0 + 3.0 * i, "beep" if i % 2 == 0 else "chirp") for i in range(60)]
    return write_stream(tmp_path_factory.mktemp("web_security") / "stream.wav", events, seconds=185.0)


@pytest.fixture(scope="module")
def daemon(tone_bundle: Path, stream: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with serving(tmp_path_factory.mktemp("web_security_run"), tone_bundle, stream) as running:
        yield running


def test_unauthenticated_requests_get_only_the_login_page(daemon: Daemon) -> None:
    anonymous = Client(daemon.url)
    for method, path in PROTECTED:
        reply = anonymous.request(method, path, b"{}" if method != "GET" else None)
        if method == "GET" and not path.startswith(("/api/", "/files/", "/ws", "/model/", "/static/")):
            assert reply.status == 303 and reply.headers["Location"] == "/login", (path, reply.status)
        else:
            assert reply.status in (401, 303), (method, path, reply.status)
        for secret in (b"beep", b"chirp", b"model", b"RIFF"):
            assert secret not in reply.body, (path, reply.body[:200])
    login = anonymous.request("GET", "/login")
    assert login.status == 200 and b'type="password"' in login.body
    assert b"beep" not in login.body and b"<script" not in login.body
    assert anonymous.request("GET", "/static/../../../../etc/passwd").status in (303, 401, 404)


def test_wrong_password_and_the_session_cookie(daemon: Daemon) -> None:
    client = Client(daemon.url)
    huge = client.request("POST", "/login", b"password=" + b"x" * 100_000,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert huge.status == 413  # read no further than a password's worth
    assert client.login("wrong").status == 401
    assert client.request("GET", "/api/status").status == 401
    reply = client.login()
    assert reply.status == 200
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    status = client.request("GET", "/api/status")
    assert status.status == 200 and status.json()["classes"] == ["beep", "chirp"]
    assert "default-src 'self'" in status.headers["Content-Security-Policy"]
    assert status.headers["X-Frame-Options"] == "DENY"


def test_state_changes_need_the_csrf_token_and_the_same_origin(daemon: Daemon) -> None:
    client = Client(daemon.url)
    assert client.login().status == 200
    without = client.request("POST", "/api/mute", {"muted": True}, csrf=False)
    assert without.status == 403 and b"CSRF" in without.body
    wrong = client.request("POST", "/api/mute", {"muted": True}, csrf=False, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status == 403
    cross = client.request("POST", "/api/mute", {"muted": True}, headers={"Origin": "http://evil.example"})
    assert cross.status == 403
    assert client.request("GET", "/api/status").json()["muted"] is False  # none of them did anything
    ok = client.request("POST", "/api/mute", {"muted": True}, headers={"Origin": daemon.url})
    assert ok.status == 200 and ok.json()["muted"] is True
    assert client.request("POST", "/api/mute", {"muted": False}).json()["muted"] is False
    # a WebSocket from another site is refused even with the session
    ws = client.request("GET", "/ws", headers={"Origin": "http://evil.example", "Connection": "Upgrade",
                                              "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert ws.status == 403


def models_dir(daemon: Daemon) -> Path:
    return daemon.folder / "state" / "models"


def snapshot(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def test_rejected_uploads_change_nothing(daemon: Daemon, tone_bundle: Path) -> None:
    client = Client(daemon.url)
    assert client.login().status == 200
    before = snapshot(models_dir(daemon))
    manifest = (tone_bundle / "manifest.json").read_bytes()
    head = (tone_bundle / "head.tflite").read_bytes()
    cases = {
        "traversal": (zipped({"manifest.json": manifest, "head.tflite": head, "../../escaped": b"x"}), "outside"),
        "absolute": (zipped({"manifest.json": manifest, "/tmp/escaped": b"x"}), "absolute"),
        "not a bundle": (zipped({"notes.txt": b"hello"}), "no manifest.json"),
        "altered head": (zipped({"manifest.json": manifest, "head.tflite": head[:-10]}), "sha256"),
        "garbage": (b"not an archive " * 500, "not a zip or tar"),
        "empty tar": (b"\x00" * 10240, "holds no files"),
    }
    for name, (body, problem) in cases.items():
        reply = client.request("POST", "/api/model", body, headers={"Content-Type": "application/octet-stream"})
        assert reply.status == 400, (name, reply.status, reply.body)
        assert problem in reply.json()["error"], (name, reply.json())
        assert "\n" not in reply.json()["error"]
    assert not Path("/tmp/escaped").exists()
    assert snapshot(models_dir(daemon)) == before  # nothing kept, no staging folder left
    assert client.request("GET", "/api/model").json()["name"] == "tone"  # still the same model


def test_an_upload_without_a_class_the_config_names_is_refused(tone_bundle: Path, stream: Path,
                                                               tmp_path: Path) -> None:
    """The config's overrides, LEDs and buttons name classes: a model without one of them is refused as at start."""
    with serving(tmp_path, tone_bundle, stream, extra="detection:\n  thresholds:\n    beep: 0.9\n") as running:
        client = Client(running.url)
        assert client.login().status == 200
        before = snapshot(models_dir(running))
        renamed = (tone_bundle / "manifest.json").read_bytes().replace(b'"beep"', b'"knock"')
        body = zipped({"manifest.json": renamed, "head.tflite": (tone_bundle / "head.tflite").read_bytes()})
        reply = client.request("POST", "/api/model", body, headers={"Content-Type": "application/octet-stream"})
        assert reply.status == 400, reply.body
        error = reply.json()["error"]
        assert "detection.thresholds.beep" in error and "no class 'beep'" in error, error
        assert snapshot(models_dir(running)) == before
        assert client.request("GET", "/api/model").json()["labels"] == ["beep", "chirp"]


def test_uploads_over_the_cap_are_refused_before_they_are_read(daemon: Daemon) -> None:
    client = Client(daemon.url)
    assert client.login().status == 200
    before = snapshot(models_dir(daemon))
    big = client.request("POST", "/api/model", b"\x00" * (201 << 20),
                         headers={"Content-Type": "application/octet-stream"})
    assert big.status == 413
    assert snapshot(models_dir(daemon)) == before


def test_failed_logins_are_rate_limited(tone_bundle: Path, stream: Path, tmp_path: Path) -> None:
    port = free_port()
    running = Daemon(write_config(tmp_path, tone_bundle, port=port), stream, port)
    try:
        client = Client(running.url)
        statuses = [client.login(f"guess {i}").status for i in range(6)]
        assert statuses == [401] * 5 + [429]
        limited = client.login()  # even the right password waits now
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
        page = urllib.request.Request(running.url + "/login", data=b"password=x", method="POST")
        try:
            urllib.request.urlopen(page, timeout=10)
            raise AssertionError("the form login was not limited")
        except urllib.error.HTTPError as err:
            assert err.code == 429 and b"Too many wrong passwords" in err.read()
        assert any("too many wrong passwords" in line for line in running.log)
    finally:
        running.stop()


def test_no_password_off_loopback_is_refused_by_run_and_check(tone_bundle: Path, tmp_path: Path) -> None:
    config = tmp_path / "hark.yaml"
    config.write_text(f"model: {tone_bundle}\nstate_dir: {tmp_path / 'state'}\nweb:\n  bind: 0.0.0.0\n")
    for command in (["check", "-c", str(config)], ["run", "-c", str(config), "--input", "/nonexistent.wav"]):
        result = subprocess.run([sys.executable, "-m", "hark", *command], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2, result
        assert result.stderr.splitlines() == [
            f"hark: error: {config}:4: web.bind: '0.0.0.0' opens the page to the network: a web.password_file is "
            "required (the page controls the microphone)"]
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config.write_text(config.read_text() + f"  password_file: {secret}\n")
    check = subprocess.run([sys.executable, "-m", "hark", "check", "-c", str(config)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "ok    web      http://0.0.0.0:8080/, password from file (not shown)" in check.stdout
    assert "s3cret" not in check.stdout + check.stderr


def test_hark_deploy_logs_in_and_swaps_the_model(daemon: Daemon, tone_bundle: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    refused = subprocess.run([sys.executable, "-m", "hark", "deploy", str(tone_bundle), daemon.url, "--password-file",
                              str(wrong)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        f"hark: error: {daemon.url}/login: wrong password"]
    right = tmp_path / "right"
    right.write_text(PASSWORD + "\n")
    deployed = subprocess.run([sys.executable, "-m", "hark", "deploy", str(tone_bundle), daemon.url.removeprefix(
        "http://"), "--password-file", str(right)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.strip() == (f"{daemon.url} now runs tone (beep, chirp); the previous model is kept for "
                                       "rollback")
    kept = [p for p in models_dir(daemon).iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(kept) == 1 and (kept[0] / "manifest.json").is_file()
    active = (models_dir(daemon) / "active.json").read_text()
    assert str(kept[0]) in active and str(tone_bundle) in active
    daemon.wait_for(lambda: any("deployed from" in line for line in daemon.log), what="the swap in the log")
    # a folder that is not a bundle is refused before anything is sent
    broken = subprocess.run([sys.executable, "-m", "hark", "deploy", str(tmp_path), daemon.url, "--password-file",
                             str(right)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2 and "manifest.json: missing" in broken.stderr


def test_files_and_folders_from_the_url_are_checked(daemon: Daemon) -> None:
    client = Client(daemon.url)
    assert client.login().status == 200
    for path in ["/files/dataset/..%2F..%2Fetc/passwd.wav", "/files/dataset/../../etc/passwd",
                 "/files/etc/x/y.wav", "/files/captures/..%2F/x.wav", "/files/dataset/beep/..%2Fx.wav",
                 "/files/dataset/Beep/x.wav", "/api/clips/..%2F..", "/api/clips/.hidden"]:
        assert client.request("GET", path).status == 404, path
    for path in ["/api/clips/beep/..%2F..%2Fhark.yaml", "/api/clips/..%2F/hark.yaml", "/api/clips/beep/x.txt"]:
        assert client.request("DELETE", path).status == 404, path
    assert (daemon.folder / "hark.yaml").is_file()
    bad = client.request("POST", "/api/captures/beep/..%2F..%2Fhark", {"verdict": "delete"})
    assert bad.status in (400, 404)
    assert (daemon.folder / "hark.yaml").is_file()
    for body in ({"label": "../x", "count": 1}, {"label": "Beep"}, {"label": "beep", "count": 500},
                 {"label": "beep", "seconds": 1e9}, {"label": "beep", "seconds": 0.01}, {"label": ["beep"]}):
        reply = client.request("POST", "/api/record", body)
        assert reply.status == 400 and "\n" not in reply.json()["error"], (body, reply.status)
    assert not (daemon.folder / "x").exists()


def test_the_dataset_downloads_as_a_zip_and_captures_as_audio_and_pictures(daemon: Daemon) -> None:
    captures = daemon.folder / "captures"
    daemon.wait_for(lambda: list(captures.rglob("*.wav")), timeout=15, what="a capture")
    client = Client(daemon.url)
    assert client.login().status == 200
    listed = client.request("GET", "/api/captures").json()
    assert listed and {"id", "label", "score", "time"} <= set(listed[0])
    label, stem = listed[-1]["id"].split("/")
    audio = client.request("GET", f"/files/captures/{label}/{stem}.wav")
    assert audio.status == 200 and audio.body[:4] == b"RIFF"
    picture = client.request("GET", f"/files/captures/{label}/{stem}.png")
    assert picture.status == 200 and picture.body[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.headers["Content-Type"] == "image/png"
    moved = client.request("POST", f"/api/captures/{label}/{stem}", {"verdict": "right"})
    assert moved.status == 200 and moved.json()["moved_to"] == f"{label}/{stem}.wav"
    reply = client.request("GET", "/api/dataset.zip")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(reply.body)) as z:
        assert z.testzip() is None
        names = z.namelist()
    assert f"dataset/{label}/{stem}.wav" in names
    check = client.request("GET", "/api/dataset/check").json()
    assert [r["name"] for r in check["rows"]][0] == label and check["errors"]


def test_the_page_over_tls(tone_bundle: Path, stream: Path, tmp_path: Path) -> None:
    from tests.fixtures.tls import make_pki

    pki = make_pki(tmp_path / "pki")
    port = free_port()
    extra = f"  tls:\n    cert_file: {pki.server_cert}\n    key_file: {pki.server_key}\n"
    config = write_config(tmp_path, tone_bundle, port=port, extra="")
    config.write_text(config.read_text() + extra)
    check = subprocess.run([sys.executable, "-m", "hark", "check", "-c", str(config)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and f"https://127.0.0.1:{port}/" in check.stdout, check.stderr
    running = Daemon(config, stream, port)
    try:
        secret = tmp_path / "pw"
        secret.write_text(PASSWORD)
        url = f"https://127.0.0.1:{port}"
        deploy = [sys.executable, "-m", "hark", "deploy", str(tone_bundle), url, "--password-file", str(secret)]
        untrusted = subprocess.run(deploy + ["--cafile", str(pki.wrong_ca)], cwd=ROOT, capture_output=True, text=True,
                                   timeout=120)
        assert untrusted.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        trusted = subprocess.run(deploy + ["--cafile", str(pki.ca)], cwd=ROOT, capture_output=True, text=True,
                                 timeout=120)
        assert trusted.returncode == 0, trusted.stderr
        assert "now runs tone" in trusted.stdout
    finally:
        running.stop()
    # a key that does not belong to the certificate: one line from check and run, before anything starts
    config.write_text(config.read_text().replace(str(pki.server_key), str(pki.stray_key)))
    for command in (["check", "-c", str(config)], ["run", "-c", str(config), "--input", str(stream)]):
        result = subprocess.run([sys.executable, "-m", "hark", *command], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.splitlines()[-1].startswith("hark: error: web.tls: cannot use")
    assert result.stderr.startswith("hark: error: web.tls")  # run: refused before the model is even loaded


def test_a_deployed_model_is_used_at_the_next_start_and_a_vanished_one_is_not(tone_bundle: Path,
                                                                              tmp_path: Path) -> None:
    import json

    from hark.config import load_config
    from hark.web.models import models_dir, write_active

    config_path = tmp_path / "hark.yaml"
    config_path.write_text(f"model: {tone_bundle}\nstate_dir: {tmp_path / 'state'}\nweb: {{}}\n")
    config = load_config(config_path)
    deployed = models_dir(config) / "20260101-000000-000000-dings"
    shutil.copytree(tone_bundle, deployed)
    manifest = json.loads((deployed / "manifest.json").read_text())
    manifest["name"] = "dings"
    (deployed / "manifest.json").write_text(json.dumps(manifest))
    write_active(config, deployed, Path(tone_bundle))

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hark", "check", "-c", str(config_path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    first = check()
    assert first.returncode == 0, first.stderr
    assert "ok    model    dings" in first.stdout and "deployed from the page" in first.stderr
    shutil.rmtree(deployed)
    second = check()
    assert second.returncode == 0, second.stderr
    assert "ok    model    tone" in second.stdout
