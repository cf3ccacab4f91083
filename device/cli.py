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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hark import __version__
from hark.errors import HarkError

TRAINER_MODULES = {"tensorflow", "keras", "matplotlib"}


def _trainer_missing(command: str, err: ModuleNotFoundError) -> HarkError:
    """The one line a trainer command prints on a device install (no TensorFlow there)."""
    return HarkError(
        f"'hark {command}' needs the trainer ({err.name} is missing): pip install 'hark[trainer]' on a desktop"
    )


@contextmanager
def _trainer_needed(command: str) -> Iterator[None]:
    """Imports of the trainer: a missing trainer library becomes the one line, anything else stays an error."""
    try:
        yield
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in TRAINER_MODULES:
            raise _trainer_missing(command, err) from None
        raise


def _run_train(args: argparse.Namespace) -> int | None:
    from hark.bundle import check_output

    check_output(args.output, dataset=args.dataset)  # refused in one line before anything is read or imported
    # Training imports TensorFlow only once the clips' features are computed, so without this a
    # device install would read and process the dataset for minutes before failing.
    if importlib.util.find_spec("tensorflow") is None:
        raise _trainer_missing(args.command, ModuleNotFoundError(name="tensorflow"))
    with _trainer_needed(args.command):
        from hark.trainer import train
    return train.main(args)


def _run_evaluate(args: argparse.Namespace) -> int | None:
    with _trainer_needed(args.command):
        from hark.trainer import evaluate
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


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written (line breaks kept); an option's default after its help
    when it has one worth showing (not for flags, required options or options whose help says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is False or default == argparse.SUPPRESS
                or action.required or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def _command(sub: Any, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts with what it does and ends with examples."""
    return sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
                          epilog="examples:\n" + examples, formatter_class=_HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hark", formatter_class=_HelpFormatter,
        description="hark: a teachable sound detector for the Raspberry Pi.\n\n"
                    "Record a few clips of each sound, train a model on a desktop, and run it on the Pi,\n"
                    "which lights LEDs, sounds a buzzer and tells the house over MQTT on each detection.",
        epilog="examples:\n"
               "  hark record lights -d DATASET --count 10      record ten clips of 'lights'\n"
               "  hark train DATASET -o MODEL                   train a model bundle (desktop)\n"
               "  hark check -c /etc/hark/hark.yaml             validate a config before running\n"
               "  hark run -c /etc/hark/hark.yaml               the daemon\n\n"
               "'hark COMMAND --help' describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"hark {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _command(sub, "train", "train a model bundle from a folder of clips (desktop)",
                 "Needs the trainer extra (pip install 'hark[trainer]'). Checks the dataset first, picks the\n"
                 "base, trains the head, calibrates each class's threshold to the false-alarm budget, and\n"
                 "writes the bundle MODEL/ (copy it to the Pi) with its report, MODEL/report.html.",
                 "  hark train DATASET -o MODEL\n"
                 "  hark train DATASET -o MODEL --base none --false-alarms-per-hour 0.5")
    p.add_argument("dataset", metavar="DATASET", help="folder of DATASET/<label>/*.wav|flac|ogg and "
                   "DATASET/_background_noise_/")
    p.add_argument("-o", "--output", metavar="MODEL", required=True, help="bundle folder to write")
    p.add_argument("--base", choices=["auto", "speech", "sounds", "none"], default="auto",
                   help="pretrained base: speech for words, sounds for everyday sounds, none for no third-party "
                        "weights; auto picks by cross-validation on your clips")
    p.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same model)")
    p.add_argument("--false-alarms-per-hour", type=float, default=1.0, metavar="F",
                   help="false-alarm budget the detection thresholds are calibrated to")
    p.add_argument("--embedding", choices=["float", "int8"], default=None,
                   help="speech base only: the pretrained float embedding (default), or an int8 copy calibrated "
                        "on your recordings that the bundle carries: half the device's CPU with ai-edge-litert, "
                        "but a few points less recall (docs/cost.md)")
    p.add_argument("--no-negatives", action="store_true", help="do not add the generic negative bank")
    p.add_argument("--no-verifier", action="store_true",
                   help="no second opinion from the clips' templates before each detection")
    p.add_argument("--speech-check", action=argparse.BooleanOptionalAction, default=True,
                   help="a spoken class does not fire where YAMNet hears no speech but a sound your background "
                        "recordings and clips never held, such as a dog or a clock (default: on; "
                        "docs/quality.md)")
    p.add_argument("--heads", type=int, default=1, metavar="K",
                   help="train K heads from different starts and average them (1-5; fewer false alarms "
                        "on other speech, K times the training time; the device's cost barely changes)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.set_defaults(run=_run_train)

    p = _command(sub, "evaluate", "accuracy of a model on a labelled dataset",
                 "Labels every clip of DATASET (and 3 s pieces of its background) as 'hark classify' does\n"
                 "and prints accuracy, precision and recall per class and the confusion matrix.",
                 "  hark evaluate -m MODEL TESTSET\n"
                 "  hark evaluate -m MODEL TESTSET --json > result.json")
    p.add_argument("-m", "--model", required=True, metavar="MODEL", help="model bundle folder")
    p.add_argument("dataset", metavar="DATASET", help="folder of DATASET/<label>/ clips, labelled like the model's")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=_run_evaluate)

    p = _command(sub, "classify", "label audio files with a model",
                 "Each file is one clip: the class scoring highest over its windows, or background.",
                 "  hark classify -m MODEL clip.wav\n"
                 "  hark classify -m MODEL recordings/ --json")
    p.add_argument("-m", "--model", required=True, metavar="MODEL", help="model bundle folder")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    p.add_argument("--json", action="store_true", help="one JSON line per clip")
    p.set_defaults(run=_run_classify)

    p = _command(sub, "detect", "run the streaming detector over an audio file",
                 "The same pipeline as 'hark run' on the microphone: one line per detection\n"
                 "(stream time mm:ss.mmm, class, score).",
                 "  hark detect -m demo/model demo/demo.flac\n"
                 "  hark detect -m MODEL long-recording.flac --json")
    p.add_argument("-m", "--model", required=True, metavar="MODEL", help="model bundle folder")
    p.add_argument("audio", metavar="AUDIO_FILE", help="WAV, FLAC or OGG; any rate and channel count")
    p.add_argument("--json", action="store_true", help="one JSON line per detection")
    p.add_argument("--gate", choices=("activity", "silence", "off"), default="activity",
                   help="skip the network while the room is only its steady noise (activity, the default), "
                        "only in digital silence, or never")
    p.set_defaults(run=_run_detect)

    p = _command(sub, "listen", "live per-class scores from the microphone",
                 "Shows each class's score against its threshold as you speak, and the detections.",
                 "  hark listen -m MODEL\n"
                 "  hark listen -m MODEL --device 'USB'")
    p.add_argument("-m", "--model", required=True, metavar="MODEL", help="model bundle folder")
    p.add_argument("--device", metavar="NAME",
                   help="input device: a part of its name or its index ('hark devices'); the system default "
                        "when not given")
    p.set_defaults(run=_run_listen)

    p = _command(sub, "devices", "list audio input devices",
                 "Index, name, channels and default rate of every input; give a part of the name to\n"
                 "--device or to audio.device in the config.",
                 "  hark devices")
    p.set_defaults(run=_run_devices)

    p = _command(sub, "run", "the daemon: detect and act (GPIO, MQTT)",
                 "Listens until stopped (SIGTERM or Ctrl-C); each detection lights its LED, sounds the\n"
                 "buzzer and is published over MQTT. The config is described in config/hark.yaml.",
                 "  hark run -c /etc/hark/hark.yaml\n"
                 "  hark run -c config/demo.yaml --input demo/demo.flac --realtime")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG", help="the YAML config file")
    p.add_argument("--input", metavar="AUDIO_FILE",
                   help="read this file instead of the microphone, then exit (the microphone when not given)")
    p.add_argument("--realtime", action="store_true", help="pace --input like a microphone")
    p.set_defaults(run=_run_daemon)

    p = _command(sub, "check", "validate a config, its model and pins without starting",
                 "Runs every check 'hark run' would: the config's keys, the model bundle (as 'run' loads\n"
                 "it), labels, pins on mock pins, MQTT files, the audio device and the state directory.",
                 "  hark check -c /etc/hark/hark.yaml")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG", help="the YAML config file")
    p.set_defaults(run=_run_check)

    p = _command(sub, "record", "record clips of a label from the microphone",
                 "Counts down, records, and writes DATASET/LABEL/<time>.wav (16 kHz mono), with a level\n"
                 "meter; with --background, DATASET/_background_noise_/.",
                 "  hark record lights -d DATASET --count 10\n"
                 "  hark record -d DATASET --background --seconds 60")
    p.add_argument("label", nargs="?", metavar="LABEL", help="the class to record (not with --background)")
    p.add_argument("-d", "--dataset", required=True, metavar="DATASET", help="dataset folder to add the clips to")
    p.add_argument("--seconds", type=float, default=None,
                   help="clip length in seconds (1.0 for a clip, 20 with --background, when not given)")
    p.add_argument("--count", type=int, default=1, metavar="N", help="clips to record, one after another")
    p.add_argument("--background", action="store_true", help="record background noise of the room")
    p.add_argument("--device", metavar="NAME",
                   help="input device: a part of its name or its index ('hark devices'); the system default "
                        "when not given")
    p.set_defaults(run=_run_record)

    p = _command(sub, "dataset", "inspect a dataset folder", "One action for now: check.",
                 "  hark dataset check DATASET")
    dataset_sub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    q = dataset_sub.add_parser(
        "check", help="clips, durations and problems per class", formatter_class=_HelpFormatter,
        description="Clips, durations and problems per class.\n\nThe same check 'hark train' runs first: "
                    "files it cannot read, silent, clipped\nor duplicate clips, classes with too few clips.",
        epilog="examples:\n  hark dataset check DATASET")
    q.add_argument("dataset", metavar="DATASET", help="folder of DATASET/<label>/ clips")
    q.set_defaults(run=_run_dataset_check)

    p = _command(sub, "review", "judge captured detections: right into the dataset, wrong into _unknown_",
                 "Captures (recording.capture: true in the config) are the audio of each detection. A right\n"
                 "one becomes a clip of its class, a wrong one goes to DATASET/_unknown_/ so the next\n"
                 "training learns not to fire on it; nothing is overwritten.",
                 "  hark review /var/lib/hark/captures -d DATASET --list\n"
                 "  hark review CAPTURES -d DATASET --right lights/2026-01-02T10-00-00_0.97 --wrong music/...")
    p.add_argument("captures", metavar="CAPTURES", help="captures folder (CAPTURES/<label>/*.wav, from hark run)")
    p.add_argument("-d", "--dataset", required=True, metavar="DATASET", help="dataset folder to file them into")
    p.add_argument("--right", nargs="+", metavar="ID", help="captures that were right (<label>/<name>)")
    p.add_argument("--wrong", nargs="+", metavar="ID", help="captures that were wrong: into _unknown_")
    p.add_argument("--delete", nargs="+", metavar="ID", help="captures to delete")
    p.add_argument("--list", action="store_true", help="list the captures, newest first, and stop")
    p.set_defaults(run=_run_review)

    p = _command(sub, "deploy", "send a model bundle to a running hark's page (swapped in live)",
                 "Checks the bundle here first, logs in to the page (the password from --password-file, or\n"
                 "asked), uploads it; the device checks it again and keeps the previous one for rollback.",
                 "  hark deploy MODEL http://hark.local:8080\n"
                 "  hark deploy MODEL https://hark.local:8443 --password-file ~/.hark-password --cafile ca.pem")
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
