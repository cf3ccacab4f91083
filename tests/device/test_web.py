"""The page in a real browser (Playwright driving Debian's chromium) against a real ``hark run``.

One daemon runs for the module: ``hark run -c CONFIG --input STREAM --realtime`` (a file of beeps
and chirps every 3 s, paced like a microphone) with a real mosquitto, captures on, the page on a
free port with a password. The tests go through the page as a user would, in order: log in
(a wrong password first), watch a detection arrive, mute, record clips, mark a capture wrong,
upload a model with other labels and roll back.

``HARK_SCREENSHOTS=docs/images pytest tests/device/test_web.py`` also saves a picture of each
page at phone and desktop width (``page-<tab>-<width>.png``) for the docs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.synth import write_stream
from tests.fixtures.web import PASSWORD, Daemon, serving

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = os.environ.get("HARK_SCREENSHOTS")
WIDTHS = {"phone": (390, 844), "desktop": (1200, 900)}


def rename(value: Any, names: dict[str, str]) -> Any:
    """``value`` (parsed JSON) with every key and string that is a class name renamed."""
    if isinstance(value, dict):
        return {names.get(k, k): rename(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [rename(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def renamed_bundle(tone_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same head under other class names (beep -> ding, chirp -> whoop) and the name ``dings``:
    what a new model's labels do on the page and on the wire shows."""
    out = Path(shutil.copytree(tone_bundle, tmp_path_factory.mktemp("renamed") / "dings"))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest = rename(manifest, {"beep": "ding", "chirp": "whoop"})
    manifest["name"] = "dings"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    from tests.fixtures.broker import MOSQUITTO

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; CI installs it)")
    broker = Broker(tmp_path_factory.mktemp("web_mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture(scope="module")
def events(module_broker: Broker) -> Iterator[Subscriber]:
    """Every event the daemon publishes, from before it starts."""
    sub = Subscriber(module_broker, ["hark/test/event"])
    try:
        yield sub
    finally:
        sub.close()


@pytest.fixture(scope="module")
def daemon(tone_bundle: Path, module_broker: Broker, events: Subscriber,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("web_run")
    events = [(1.0 + 3.0 * i, "beep" if i % 2 == 0 else "chirp") for i in range(100)]
    stream = write_stream(folder / "stream.wav", events, seconds=300.0)
    with serving(folder, tone_bundle, stream, broker=module_broker) as running:
        yield running


@pytest.fixture(scope="module")
def page(browser: Any, daemon: Daemon) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.errors = errors
    try:
        yield page
    finally:
        context.close()
    assert errors == []


def wait_js(page: Any, expression: str, *, timeout: float = 10.0) -> None:
    """Poll a JavaScript expression until it is true. Playwright's wait_for_function evaluates strings
    with eval inside the page, which the page's Content-Security-Policy forbids (as it should)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(f"() => Boolean({expression})"):
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {expression}")


def shoot(page: Any, name: str) -> None:
    if not SCREENSHOTS:
        return
    folder = ROOT / SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for kind, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        time.sleep(0.6)
        page.screenshot(path=str(folder / f"page-{name}-{kind}.png"), full_page=kind == "desktop")
    page.set_viewport_size(original)


def test_a_wrong_password_is_refused_then_the_right_one_lets_in(page: Any, daemon: Daemon) -> None:
    page.goto(daemon.url + "/")
    assert page.url == daemon.url + "/login"
    assert page.content().count("beep") == 0
    shoot(page, "login")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Wrong password.")
    assert "/login" in page.url
    assert page.context.cookies() == []
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".bar[data-label=beep]")
    assert page.url == daemon.url + "/"
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_the_live_page_shows_a_detection_within_a_second(page: Any, daemon: Daemon) -> None:
    page.wait_for_selector("#state.ok")
    wait_js(page, "document.querySelector('#spectrogram').getContext('2d')"
                  ".getImageData(599, 0, 1, 120).data.some((v, i) => i % 4 != 3 && v > 0)")
    # Mark what the page already lists and follow the second detection printed after that: the first may have
    # reached the page before the mark while its line was still on the way to this test. A beep or chirp comes
    # every 3 s with the same scores, so the page's list is searched for an unmarked entry, not read at its top.
    page.evaluate("() => document.querySelectorAll('li.detection').forEach(li => { li.dataset.before = '1'; })")
    printed = len(daemon.detections())
    daemon.wait_for(lambda: len(daemon.detections()) > printed + 1, timeout=10, what="two more detections")
    detection = daemon.detections()[printed + 1]
    wait_js(page, "[...document.querySelectorAll('li.fresh.detection:not([data-before])')].some(li => "
                  f"li.querySelector('.label').textContent === {detection.label!r} && "
                  f"li.children[1].textContent === '{detection.score:.3f}')", timeout=5)
    shown_at = time.monotonic()
    assert shown_at - detection.at < 1.0, f"shown {shown_at - detection.at:.2f} s after it was printed"
    # the score bars follow the live scores, with the thresholds drawn on them
    assert page.locator(".bar .threshold").count() == 2
    if SCREENSHOTS:  # the picture for the docs shows a bar over its threshold
        wait_js(page, "document.querySelector('.bar .fill.over')", timeout=15)
    shoot(page, "live")


def test_a_post_without_the_csrf_token_is_refused(page: Any) -> None:
    status = page.evaluate("""async () => (await fetch('/api/mute', {method: 'POST', body: '{"muted": true}',
                                            headers: {'Content-Type': 'application/json'}})).status""")
    assert status == 403
    assert page.evaluate("async () => (await (await fetch('/api/status')).json()).muted") is False


def test_mute_from_the_page_reaches_the_house(page: Any, module_broker: Broker) -> None:
    sub = Subscriber(module_broker, ["hark/test/state"])
    try:
        page.click("#mute")
        page.wait_for_selector("#state:text('muted')")
        sub.wait_for(lambda: any(m.json()["muted"] for m in sub.on("hark/test/state")), timeout=5)
        page.click("#mute")
        page.wait_for_selector("#state:text('listening')")
        sub.wait_for(lambda: not sub.on("hark/test/state")[-1].json()["muted"], timeout=5)
    finally:
        sub.close()


def test_clips_recorded_on_the_page_land_in_the_dataset(page: Any, daemon: Daemon) -> None:
    page.click("nav a[data-tab=record]")
    page.fill("#rec-label", "Bad Label!")
    page.fill("#rec-count", "2")
    page.fill("#rec-seconds", "0.5")
    page.click("#rec-start")  # the browser's own check stops it; the server would refuse it too
    assert page.evaluate("document.querySelector('#rec-label').validity.valid") is False
    page.fill("#rec-label", "clap")
    page.click("#rec-start")
    page.wait_for_selector("#rec-status:text('get ready')", timeout=5000)
    page.wait_for_selector("#rec-status:text('2 clip(s) of clap saved')", timeout=30000)
    clips = sorted((daemon.folder / "dataset" / "clap").glob("*.wav"))
    assert len(clips) == 2
    for clip in clips:
        info = sf.info(str(clip))
        assert info.samplerate == 16000 and info.channels == 1 and info.frames == 8000
    wait_js(page, "document.querySelectorAll('#clips .card').length == 2")
    wait_js(page, "[...document.querySelectorAll('#clips .card img')].every(i => i.complete && "
                           "i.naturalWidth > 0)")
    assert page.locator("#clips audio").count() == 2
    page.click("#check")
    page.wait_for_selector("#dataset-table")
    assert "clap" in page.locator("#dataset-table").inner_text()
    assert "at least 8 are needed" in page.locator("#dataset .errors").inner_text()
    shoot(page, "record")
    for clip in clips:  # as hark review leaves beside a filed capture: deleted with its clip
        clip.with_suffix(".json").write_text('{"detection_offset_s": 0.3}')
    page.locator("#clips .card button.delete").first.click()
    wait_js(page, "document.querySelectorAll('#clips .card').length == 1")
    [left] = (daemon.folder / "dataset" / "clap").glob("*.wav")
    assert [p.name for p in (daemon.folder / "dataset" / "clap").glob("*.json")] == [left.with_suffix(".json").name]
    page.click("#rec-background")
    page.wait_for_selector("#rec-status:text('1 clip(s) of background saved')", timeout=30000)
    (noise,) = (daemon.folder / "dataset" / "_background_noise_").glob("*.wav")
    assert sf.info(str(noise)).frames == 16000  # recording.background_seconds
    wait_js(page, "document.querySelector('#clips-title').textContent == 'Clips of background'")


def test_a_capture_marked_wrong_lands_in_unknown(page: Any, daemon: Daemon) -> None:
    captures = daemon.folder / "captures"
    daemon.wait_for(lambda: list(captures.rglob("*.wav")), timeout=10, what="a capture")
    page.click("nav a[data-tab=review]")
    page.wait_for_selector("#captures .card")
    wait_js(page, "[...document.querySelectorAll('#captures .card img')].every(i => i.complete && "
                           "i.naturalWidth > 0)")
    shoot(page, "review")
    card = page.locator("#captures .card").first
    name = card.get_attribute("data-name")
    label = card.locator(".meta b").inner_text()
    assert (captures / label / name).is_file()
    card.locator("button.wrong").click()
    page.wait_for_selector("#banner.ok:text('moved to _unknown_/')")
    unknown = daemon.folder / "dataset" / "_unknown_" / name
    assert unknown.is_file() and not (captures / label / name).exists()
    assert sf.info(str(unknown)).frames > 0


def zip_bundle(bundle: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                z.write(path, f"{bundle.name}/{path.relative_to(bundle).as_posix()}")
    return target


def test_an_uploaded_bundle_replaces_the_running_one_and_rollback_restores_it(
        page: Any, daemon: Daemon, renamed_bundle: Path, tmp_path: Path, module_broker: Broker) -> None:
    sub = Subscriber(module_broker, ["homeassistant/event/hark_test/detection/config", "hark/test/state"])
    page.click("nav a[data-tab=model]")
    page.wait_for_selector("#model-info")
    assert "beep, chirp" in page.locator("#model-info").inner_text()
    shoot(page, "model")
    page.set_input_files("#upload-file", str(zip_bundle(renamed_bundle, tmp_path / "dings.zip")))
    page.click("#upload")
    page.wait_for_selector("#banner.ok:text('now running dings')", timeout=60000)
    swapped = len(daemon.detections())
    daemon.wait_for(lambda: len(daemon.detections()) > swapped, timeout=10, what="a detection by the new model")
    assert daemon.detections()[swapped].label in ("ding", "whoop")
    wait_js(page, "document.querySelector('#model-info').innerText.includes('ding, whoop')")
    # Home Assistant hears of the new model and its event types
    sub.wait_for(lambda: any(m.json()["event_types"] == ["ding", "whoop"]
                             for m in sub.on("homeassistant/event/hark_test/detection/config")), timeout=5)
    sub.wait_for(lambda: sub.on("hark/test/state")[-1].json()["model"] == "dings", timeout=5)
    # the live view follows: bars for the new classes
    page.click("nav a[data-tab=live]")
    page.wait_for_selector(".bar[data-label=ding]")
    page.click("nav a[data-tab=model]")
    page.wait_for_selector("#rollback:not([hidden])")
    page.click("#rollback")
    page.wait_for_selector("#banner.ok:text('rolled back: now running tone')", timeout=60000)
    back = len(daemon.detections())
    daemon.wait_for(lambda: len(daemon.detections()) > back, timeout=10, what="a detection after the rollback")
    assert daemon.detections()[back].label in ("beep", "chirp")
    sub.close()


def test_nothing_was_lost_across_the_swaps(page: Any, daemon: Daemon, events: Subscriber) -> None:
    """Two model swaps later: every detection is an event, once, in order, and the stream clock never
    slipped (no audio skipped): each detection sits at the same place after its sound, 3 s apart.
    The swaps are the page's (the upload test before this one), so it needs the browser too."""
    printed = daemon.detections()
    assert len(printed) >= 4
    events.wait_for(lambda: len(events.on("hark/test/event")) >= len(printed), timeout=10)
    received = [m.json() for m in events.on("hark/test/event")][:len(printed)]
    assert [e["event_type"] for e in received] == [d.label for d in printed]
    ids = [e["id"] for e in received]
    assert ids == sorted(set(ids))
    assert {e["model"] for e in received} == {"tone", "dings"}
    # Each kind of sound is detected at the same delay after it starts (a beep or chirp every 3 s), before
    # and after the swaps (a new pipeline's hop grid may start one stride, 80 ms, elsewhere).
    for names in (("beep", "ding"), ("chirp", "whoop")):
        phases = [(d.time_s - 1.0) % 3.0 for d in printed if d.label in names]
        assert phases and max(phases) - min(phases) < 0.2, [(d.label, d.time_s) for d in printed]
    assert any("dings" in line and "deployed" in line for line in daemon.log)


def test_every_tab_fits_a_phone(page: Any) -> None:
    """At a phone's width every tab is reachable from the bar and nothing needs sideways scrolling."""
    width, height = WIDTHS["phone"]
    original = page.viewport_size
    page.set_viewport_size({"width": width, "height": height})
    try:
        for tab in ("live", "record", "review", "model"):
            link = page.locator(f"nav a[data-tab={tab}]")
            box = link.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (tab, box)
            link.click()
            page.wait_for_selector(f"section#{tab}:not([hidden])")
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            wide = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e =>
                e.getBoundingClientRect().right > window.innerWidth).map(e => e.tagName + '#' + e.id).slice(0, 5)""")
            assert overflow <= width, f"the {tab} tab (too wide: {wide}) is {overflow} px wide on a {width} px screen"
    finally:
        page.set_viewport_size(original)
