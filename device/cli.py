"""The ``hark`` command: parses arguments and hands each subcommand to the module that does it.

Subcommand modules are imported only when their command runs, so ``hark run`` on the Pi never
imports the trainer (or TensorFlow), and a trainer command on a machine without the
``trainer`` extra says how to install it instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from device import __version__
from device.errors import HarkError

TRAINER_MODULES = {"tensorflow", "keras", "matplotlib"}


def _handler(target: str) -> Callable[[argparse.Namespace], int | None]:
    """A lazy reference ``"module:function"`` resolved when the command runs."""

    def run(args: argparse.Namespace) -> int | None:
        module_name, function_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if module_name.startswith("trainer") and (err.name or "").split(".")[0] in TRAINER_MODULES:
                raise HarkError(
                    f"'hark {args.command}' needs the trainer extra ({err.name} is missing): "
                    "pip install 'hark[trainer]' on a desktop"
                ) from None
            raise
        return getattr(module, function_name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hark", description="hark: a teachable sound detector for the Raspberry Pi."
    )
    parser.add_argument("--version", action="version", version=f"hark {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a model bundle from a folder of clips (desktop)")
    p.add_argument("dataset", metavar="DATASET", help="folder of DATASET/<label>/*.wav|flac|ogg")
    p.add_argument("-o", "--output", metavar="MODEL", required=True, help="bundle folder to write")
    p.add_argument("--base", choices=["auto", "speech", "sounds", "none"], default="auto",
                   help="pretrained base: auto (default) picks by cross-validation")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--false-alarms-per-hour", type=float, default=1.0, metavar="F",
                   help="false-alarm budget the thresholds are calibrated to (default 1)")
    p.add_argument("--no-negatives", action="store_true", help="do not add the generic negative bank")
    p.add_argument("--no-verifier", action="store_true",
                   help="no second opinion from the clips' templates before each detection")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.set_defaults(run=_handler("trainer.train:main"))

    p = sub.add_parser("evaluate", help="accuracy of a model on a labelled dataset")
    p.add_argument("-m", "--model", required=True, metavar="MODEL")
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=_handler("trainer.evaluate:main"))

    p = sub.add_parser("classify", help="label audio files with a model")
    p.add_argument("-m", "--model", required=True, metavar="MODEL")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    p.add_argument("--json", action="store_true", help="one JSON line per clip")
    p.set_defaults(run=_handler("device.classify:main"))

    p = sub.add_parser("detect", help="run the streaming detector over an audio file")
    p.add_argument("-m", "--model", required=True, metavar="MODEL")
    p.add_argument("audio", metavar="AUDIO_FILE")
    p.add_argument("--json", action="store_true", help="one JSON line per detection")
    p.set_defaults(run=_handler("device.detect:main"))

    p = sub.add_parser("listen", help="live per-class scores from the microphone")
    p.add_argument("-m", "--model", required=True, metavar="MODEL")
    p.add_argument("--device", metavar="NAME", help="input device: name substring or index")
    p.set_defaults(run=_handler("device.listen:main"))

    p = sub.add_parser("devices", help="list audio input devices")
    p.set_defaults(run=_handler("device.audio:devices_main"))

    p = sub.add_parser("run", help="the daemon: detect and act (GPIO, MQTT)")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG")
    p.add_argument("--input", metavar="AUDIO_FILE", help="read this file instead of the microphone")
    p.add_argument("--realtime", action="store_true", help="pace --input like a microphone")
    p.set_defaults(run=_handler("device.daemon:main"))

    p = sub.add_parser("check", help="validate a config, its model and pins without starting")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG")
    p.set_defaults(run=_handler("device.check:main"))

    p = sub.add_parser("record", help="record clips of a label from the microphone")
    p.add_argument("label", nargs="?", metavar="LABEL")
    p.add_argument("-d", "--dataset", required=True, metavar="DATASET")
    p.add_argument("--seconds", type=float, default=None, help="clip length (1.0; 20 with --background)")
    p.add_argument("--count", type=int, default=1, metavar="N")
    p.add_argument("--background", action="store_true", help="record background noise")
    p.add_argument("--device", metavar="NAME", help="input device: name substring or index")
    p.set_defaults(run=_handler("device.record:main"))

    p = sub.add_parser("dataset", help="inspect a dataset folder")
    dataset_sub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    q = dataset_sub.add_parser("check", help="clips, durations and problems per class")
    q.add_argument("dataset", metavar="DATASET")
    q.set_defaults(run=_handler("device.dataset:check_main"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except HarkError as err:
        print(f"hark: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
