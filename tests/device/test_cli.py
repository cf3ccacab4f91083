"""The ``hark`` command line: trainer commands on an install without the trainer."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.synth import write_dataset

ROOT = Path(__file__).resolve().parents[2]

# A device install, as far as Python can tell: a None entry in sys.modules makes the import system
# report TensorFlow as not installed (the Pi's `.[device]` venv has no TensorFlow at all).
WITHOUT_TENSORFLOW = (
    "import sys; sys.modules['tensorflow'] = None; from hark.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_train_without_tensorflow_is_one_line_before_any_work(tmp_path):
    data = write_dataset(tmp_path / "data", per_class=8, seed=1)
    out = tmp_path / "model"
    done = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, "train", str(data), "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hark: error: 'hark train' needs the trainer (tensorflow is missing): pip install 'hark[trainer]' on a desktop"
    ]
    assert not out.exists()


def test_evaluate_needs_only_the_device_install(tmp_path, tone_bundle):
    """Scoring a labelled folder needs only the device's runtime, so a Pi can check its own model.

    scripts/test runs tests/device in a venv with hark[device] alone, where this is the proof; in the
    dev venv TensorFlow may be the only TFLite runtime, so it is not hidden here.
    """
    data = write_dataset(tmp_path / "data", per_class=3, seed=1)
    done = subprocess.run([sys.executable, "-m", "hark", "evaluate", "-m", str(tone_bundle), str(data),
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["accuracy"] >= 0.9 and sum(result["confusion"][1]) == 3, result


def _subcommands() -> list[tuple[list[str], argparse.ArgumentParser]]:
    from hark.cli import build_parser

    found: list[tuple[list[str], argparse.ArgumentParser]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found.append(([*prefix, name], child))
                    walk(child, [*prefix, name])

    walk(build_parser(), [])
    return found


def test_every_command_has_a_description_option_help_and_examples(capsys):
    from hark.cli import main

    commands = _subcommands()
    assert {" ".join(argv) for argv, _ in commands} >= {"train", "run", "check", "detect", "dataset check"}
    for argv, parser in commands:
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        description = text.split("\n\n")[1]
        assert description and not description.startswith(("positional", "options")), (argv, text)
        assert "\nexamples:\n  hark " + " ".join(argv) in text, (argv, text)
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (argv, action.option_strings or action.dest)


def test_defaults_are_shown_where_they_matter(capsys):
    from hark.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: auto)" in text and "(default: 1.0)" in text and "(default: 0)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
