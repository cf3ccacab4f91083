"""The ``hark`` command: parses arguments and hands each subcommand to the module that does it.

Subcommand modules are imported only when their command runs, so ``hark run`` on the Pi never
imports the trainer (or TensorFlow), and a trainer command on a machine without the
``trainer`` extra says in one line how to install it instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence

from hark import __version__
from hark.errors import HarkError

TRAINER_MODULES = {"tensorflow", "keras", "matplotlib"}


def _trainer_missing(command: str, err: ModuleNotFoundError) -> HarkError:
    """The one line a trainer command prints on a device install (no TensorFlow there)."""
    return HarkError(
        f"'hark {command}' needs the trainer ({err.name} is missing): pip install 'hark[trainer]' on a desktop"
    )


def _run_train(args: argparse.Namespace) -> int | None:
    from hark.bundle import check_output

    check_output(args.output, dataset=args.dataset)  # refused in one line before anything is read or imported
    # Training imports TensorFlow only once the clips' features are computed, so without this a
    # device install would read and process the dataset for minutes before failing.
    if importlib.util.find_spec("tensorflow") is None:
        raise _trainer_missing(args.command, ModuleNotFoundError(name="tensorflow"))
    try:
        from hark.trainer import train
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in TRAINER_MODULES:
            raise _trainer_missing(args.command, err) from None
        raise
    return train.main(args)


def _run_evaluate(args: argparse.Namespace) -> int | None:
    try:
        from hark.trainer import evaluate
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in TRAINER_MODULES:
            raise _trainer_missing(args.command, err) from None
        raise
    return evaluate.main(args)


# Device commands import their module only when they run, so `hark check` does not load PyAudio
# and `hark run` does not load the dataset tools.
def _run_classify(args: argparse.Namespace) -> int | None:
    from hark import classify

    return classify.main(args)


def _run_detect(args: argparse.Namespace) -> int | None:
    from hark import detect

    return detect.main(args)


def _run_listen(args: argparse.Namespace) -> int | None:
    from hark import listen

    return listen.main(args)


def _run_devices(args: argparse.Namespace) -> int | None:
    from hark import audio

    return audio.devices_main(args)


def _run_daemon(args: argparse.Namespace) -> int | None:
    from hark import daemon

    return daemon.main(args)


def _run_check(args: argparse.Namespace) -> int | None:
    from hark import check

    return check.main(args)


def _run_record(args: argparse.Namespace) -> int | None:
    from hark import record

    return record.main(args)


def _run_dataset_check(args: argparse.Namespace) -> int | None:
    from hark import dataset

    return dataset.check_main(args)


def _run_review(args: argparse.Namespace) -> int | None:
    from hark import review

    return review.main(args)


def _run_deploy(args: argparse.Namespace) -> int | None:
    from hark.web import deploy

    return deploy.main(args)


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
    p.set_defaults(run=_run_train)

    p = sub.add_parser("evaluate", help="accuracy of a model on a labelled dataset")
    p.add_argument("-m", "--model", required=True, metavar="MODEL")
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=_run_evaluate)

    p = sub.add_parser("classify", help="label audio files with a model")
    p.add_argument("-m", "--model", required=True, metavar="MODEL")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    p.add_argument("--json", action="store_true", help="one JSON line per clip")
    p.set_defaults(run=_run_classify)

    p = sub.add_parser("detect", help="run the streaming detector over an audio file")
    p.add_argument("-m", "--model", required=True, metavar="MODEL")
    p.add_argument("audio", metavar="AUDIO_FILE")
    p.add_argument("--json", action="store_true", help="one JSON line per detection")
    p.add_argument("--gate", choices=("activity", "silence", "off"), default="activity",
                   help="skip the network while the room is only its steady noise (activity, the default), "
                        "only in digital silence, or never")
    p.set_defaults(run=_run_detect)

    p = sub.add_parser("listen", help="live per-class scores from the microphone")
    p.add_argument("-m", "--model", required=True, metavar="MODEL")
    p.add_argument("--device", metavar="NAME", help="input device: name substring or index")
    p.set_defaults(run=_run_listen)

    p = sub.add_parser("devices", help="list audio input devices")
    p.set_defaults(run=_run_devices)

    p = sub.add_parser("run", help="the daemon: detect and act (GPIO, MQTT)")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG")
    p.add_argument("--input", metavar="AUDIO_FILE", help="read this file instead of the microphone")
    p.add_argument("--realtime", action="store_true", help="pace --input like a microphone")
    p.set_defaults(run=_run_daemon)

    p = sub.add_parser("check", help="validate a config, its model and pins without starting")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG")
    p.set_defaults(run=_run_check)

    p = sub.add_parser("record", help="record clips of a label from the microphone")
    p.add_argument("label", nargs="?", metavar="LABEL")
    p.add_argument("-d", "--dataset", required=True, metavar="DATASET")
    p.add_argument("--seconds", type=float, default=None, help="clip length (1.0; 20 with --background)")
    p.add_argument("--count", type=int, default=1, metavar="N")
    p.add_argument("--background", action="store_true", help="record background noise")
    p.add_argument("--device", metavar="NAME", help="input device: name substring or index")
    p.set_defaults(run=_run_record)

    p = sub.add_parser("dataset", help="inspect a dataset folder")
    dataset_sub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    q = dataset_sub.add_parser("check", help="clips, durations and problems per class")
    q.add_argument("dataset", metavar="DATASET")
    q.set_defaults(run=_run_dataset_check)

    p = sub.add_parser("review", help="judge captured detections: right into the dataset, wrong into _unknown_")
    p.add_argument("captures", metavar="CAPTURES", help="captures folder (CAPTURES/<label>/*.wav, from hark run)")
    p.add_argument("-d", "--dataset", required=True, metavar="DATASET", help="dataset folder to file them into")
    p.add_argument("--right", nargs="+", metavar="ID", help="captures that were right (<label>/<name>)")
    p.add_argument("--wrong", nargs="+", metavar="ID", help="captures that were wrong: into _unknown_")
    p.add_argument("--delete", nargs="+", metavar="ID", help="captures to delete")
    p.add_argument("--list", action="store_true", help="list the captures, newest first, and stop")
    p.set_defaults(run=_run_review)

    p = sub.add_parser("deploy", help="send a model bundle to a running hark's page (swapped in live)")
    p.add_argument("model", metavar="MODEL", help="bundle folder (from hark train)")
    p.add_argument("url", metavar="URL", help="the device's page, e.g. http://pi:8080")
    p.add_argument("--password-file", metavar="FILE", help="read the page's password from FILE (else asked)")
    p.add_argument("--cafile", metavar="PEM", help="CA certificate to trust for an https page")
    p.set_defaults(run=_run_deploy)
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
