"""``hark check`` refuses exactly what ``hark run`` refuses, in the same words, and tries the broker it names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fixtures.broker import Broker, free_port
from tests.fixtures.tls import Pki, TlsBroker, make_pki

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "tests" / "fixtures" / "bundles" / "tone"


def hark(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hark", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def config(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "hark.yaml"
    path.write_text("\n".join([f"model: {BUNDLE}", "state_dir: state", *lines]) + "\n")
    return path


CASES = {
    "nan threshold": (["detection: {thresholds: {beep: .nan}}"], "3: detection.thresholds.beep: nan is not a finite"),
    "empty host": (["mqtt: {host: ''}"], "3: mqtt.host: must not be empty"),
    "invalid pem": (["mqtt: {host: localhost, tls: {ca_file: <not_pem>}}"],
                    "3: mqtt.tls.ca_file: <not_pem>: not a usable PEM certificate"),
    "cert/key mismatch": (["mqtt: {host: localhost, tls: {cert_file: <client_cert>, key_file: <stray_key>}}"],
                          "3: mqtt.tls.key_file: <stray_key> is not the key of the certificate <client_cert>"),
    "one pin, two names": (["gpio: {mock: true, leds: {beep: GPIO17, chirp: BOARD11}}"],
                           "3: gpio.leds.chirp: GPIO17 is already used by gpio.leds.beep"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_and_run_refuse_the_same_config_in_the_same_line(case: str, pki: Pki, tmp_path: Path) -> None:
    lines, expected = CASES[case]
    names = {"not_pem": pki.not_pem, "client_cert": pki.client_cert, "stray_key": pki.stray_key}
    def fill(text: str) -> str:
        for name, value in names.items():
            text = text.replace(f"<{name}>", str(value))
        return text

    path = config(tmp_path, *map(fill, lines))
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16000, np.float32), 16000)
    check = hark("check", "-c", str(path), cwd=tmp_path)
    run = hark("run", "-c", str(path), "--input", str(quiet), cwd=tmp_path)
    want = f"hark: error: {path}:{fill(expected)}"
    for name, result in (("check", check), ("run", run)):
        assert result.returncode == 2, (name, result.stdout, result.stderr[-2000:])
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(want), (name, last)
        assert "Traceback" not in result.stderr, name
    assert check.stderr.strip().splitlines()[-1] == run.stderr.strip().splitlines()[-1]


def test_check_connects_to_the_broker(broker: Broker, tmp_path: Path) -> None:
    path = config(tmp_path, "mqtt:", f"  host: {broker.host}", f"  port: {broker.port}")
    result = hark("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"ok    broker   {broker.host}:{broker.port} accepted the connection" in result.stdout


def test_a_broker_check_cannot_reach_is_a_warning_with_the_reason(pki: Pki, tmp_path: Path) -> None:
    port = free_port()
    path = config(tmp_path, "mqtt:", "  host: 127.0.0.1", f"  port: {port}")
    result = hark("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"warn  broker   127.0.0.1:{port} refused the connection (is the broker running, on this port?); "
            "hark run will keep trying") in result.stdout

    server = TlsBroker(tmp_path / "broker", pki)
    server.start()
    try:
        path = config(tmp_path, "mqtt:", f"  host: {server.host}", f"  port: {server.port}",
                      f"  tls: {{ca_file: {pki.wrong_ca}}}")
        result = hark("check", "-c", str(path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (f"warn  broker   TLS: the broker's certificate at 127.0.0.1:{server.port} was refused: "
                "self-signed certificate in certificate chain") in result.stdout
        path = config(tmp_path, "mqtt:", f"  host: {server.host}", f"  port: {server.port}",
                      f"  tls: {{ca_file: {pki.ca}}}")
        result = hark("check", "-c", str(path), cwd=tmp_path)
        assert "ok    broker" in result.stdout, result.stdout
    finally:
        server.kill()


def test_password_file_others_can_read_is_a_warning(broker: Broker, tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret-never-shown\n")
    secret.chmod(0o644)
    path = config(tmp_path, "mqtt:", f"  host: {broker.host}", f"  port: {broker.port}", "  username: hark",
                  f"  password_file: {secret}")
    result = hark("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"warn  secrets  mqtt.password_file: {secret} can be read by every user of this machine "
            f"(mode -rw-r--r--); chmod o-rwx {secret}") in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    secret.chmod(0o640)
    result = hark("check", "-c", str(path), cwd=tmp_path)
    assert "secrets" not in result.stdout


def test_web_password_file_others_can_read_is_a_warning(tmp_path: Path) -> None:
    secret = tmp_path / "web-password"
    secret.write_text("page-password-never-shown\n")
    secret.chmod(0o604)
    path = config(tmp_path, "web:", f"  password_file: {secret}")
    result = hark("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"warn  secrets  web.password_file: {secret} can be read by every user of this machine" in result.stdout
    assert "page-password" not in result.stdout + result.stderr
