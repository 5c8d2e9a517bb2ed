"""Command-line entry point: ``python -m fer_jax.main --config=configs/X.py[:arg] --workdir=DIR``.

Modes: ``train`` (default; resumes automatically from DIR), ``eval`` (best checkpoint of DIR
on ``config.eval.split``), ``explain`` (maps of ``explain.videos`` as overlays, GIF/MP4 and
arrays in DIR/explanations), ``report`` (explanation measurements on ``explain.split`` in
DIR/report.html and report.json) and ``preprocess`` (raw files of a real dataset in
``preprocess.manual_dir`` → faces, landmarks, AU maps → TFDS records; no workdir needed) and
``predict`` (any video, image or folder in ``predict.input`` → per-frame predictions,
explanations and overlays in DIR/predictions; fer_jax/predict.py).
Config fields are overridden with ``--config.a.b=value``. Several processes form one run with
``--coordinator_address/--num_processes/--process_id`` or ``--distributed``
(``fer_jax/distributed.py``).

Problems the user can fix are reported on one line (``fer_jax: error: ...``, exit status 2);
a run stopped by SIGTERM saves a checkpoint and exits with status 143 (run it again to
resume).
"""
from __future__ import annotations

import gc
import json
import logging as std_logging
import re
import sys
import sysconfig
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with an argument: configs/X.py:arg.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics "
                                "(required except with --mode=preprocess).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "explain", "report", "preprocess",
                                            "predict"], "What to do.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 of a multi-process run "
    "(fer_jax/distributed.py); with --num_processes and --process_id.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes of the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0..N-1.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run whose cluster JAX detects (SLURM, TPU VM "
    "pod slices): jax.distributed.initialize() without arguments.")
flags.mark_flags_as_required(["config"])
flags.register_validator("workdir", lambda value: bool(value) or _MODE.value == "preprocess",
                         "--workdir is required and must not be empty (except with "
                         "--mode=preprocess)")


def _print_eval(result: dict) -> None:
    auc, eer = result.get("roc_auc"), result.get("eer_accuracy")
    print(f"{result['split']}: accuracy {result['accuracy']:.4f}  macro F1 "
          f"{result['macro_f1']:.4f}  ROC-AUC {'-' if auc is None else f'{auc:.4f}'}  "
          f"EER accuracy {'-' if eer is None else f'{eer:.4f}'}  loss {result['loss']:.4f}  "
          f"({result['count']} videos, {result['checkpoint']} checkpoint step "
          f"{result['checkpoint_step']})")
    for name, value in result["per_class_accuracy"].items():
        print(f"  {name:>12s}: {'-' if value is None else f'{value:.3f}'}")


def _print_report(results: dict) -> None:
    """The console table: per method, the measurements' ranking columns that have a short
    header (``evaluation/measurements``), then the seconds it took."""
    from fer_jax.evaluation import measurements
    c = results["classification"]
    print(f"{results['split']}: {results['videos']} videos, accuracy {c['accuracy']:.4f}, "
          f"macro F1 {c['macro_f1']:.4f}")
    columns = {label: [column for column in row if column.short]
               for label, row in measurements.ranking(results).items()}
    shown = next(iter(columns.values()), [])
    width = max([len("method"), *map(len, columns)]) + 2  # the longest label sets the column
    print(f"{'method':<{width}s}" + "".join(f"{column.short:>10s}" for column in shown)
          + f"{'seconds':>10s}")
    for label, row in columns.items():
        cells = [column.value for column in row] + [results["seconds"][label]]
        print(f"{label:<{width}s}" + "".join("         -" if v is None else f"{v:>10.3f}"
                                             for v in cells))
    for name, reason in (results.get("skipped") or {}).items():
        print(f"skipped: {name} ({reason})")
    print(f"report: {Path(results['workdir']) / 'report.html'}")


class _DropDiskFullEchoes(std_logging.Filter):
    """Drops library log records about writes that failed for want of space (Orbax logs each
    of a checkpoint's failed writes with a traceback); ``checkpointing`` turns the failure
    into the one line the user sees."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        from fer_jax.checkpointing import DISK_FULL_MARKERS
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        return not any(marker in text for marker in DISK_FULL_MARKERS)


def _quiet_closed_loop(hook):
    """``sys.unraisablehook`` without the echoes of a stopped asynchronous save: TensorStore
    callbacks that complete after Orbax closed its event loop (a failed save, a failed
    restore) each report 'RuntimeError: Event loop is closed' as unraisable; everything else
    goes to ``hook``."""

    def quiet(unraisable):
        if (unraisable.exc_type is RuntimeError
                and str(unraisable.exc_value) == "Event loop is closed"):
            return
        hook(unraisable)

    return quiet


def _print_predictions(out: dict) -> None:
    for r in out["results"]:
        if r["status"] == "ok":
            mean = r["prediction"]["mean"]
            print(f"{r['input']}: {mean['label']} ({max(mean['probabilities'].values()):.2f} "
                  f"mean over {r['frames_with_face']} of {r['frames']} frames with a face)")
        elif r["status"] == "no face":
            print(f"{r['input']}: no face found in any of its {r['frames']} frames")
        else:
            print(f"{r['input']}: {r['status']}: {'; '.join(r['notes'])}")
        for note in r.get("notes", []) if r["status"] == "ok" else []:
            print(f"  note: {note}")
    print(f"predictions: {out['outputs']}")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Imported here so that --help and flag errors stay fast.
    from fer_jax import distributed, train
    from fer_jax.errors import UserError

    # Tracing and compiling allocate many short-lived objects, on which Python's cyclic
    # collector would spend several per cent of a run: the objects alive after the imports
    # are moved out of its sight and collections are made rarer.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)

    if not flags.FLAGS["verbosity"].present:  # keep library INFO chatter (orbax) out of sight
        logging.set_verbosity(logging.WARNING)
        # Orbax's concurrent writes that fail together (a full disk) each log a traceback;
        # the failure itself is reported on one line below.
        std_logging.getLogger("asyncio").setLevel(std_logging.CRITICAL)
        logging.get_absl_handler().addFilter(_DropDiskFullEchoes())
        sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)
    # Grain's workers hand batches over in shared memory; the few blocks still in flight when
    # a run stops (those of a resumed iterator among them) are reclaimed by Python's resource
    # tracker process at exit, which would warn about each. The tracker inherits these
    # warning options when it starts (with the first worker).
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    config = _CONFIG.value
    logging.info("Config:\n%s", config)
    try:
        distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                               auto=_DISTRIBUTED.value)
        if _MODE.value == "preprocess":
            from fer_jax.data import preprocess
            preprocess.print_summary(preprocess.run(config))
        elif _MODE.value == "train":
            result = train.train_and_evaluate(config, _WORKDIR.value)
            best = result["best_validation"] or {}
            print(json.dumps({"stopped": result["stopped"], "best_epoch": result["best_epoch"],
                              "best_validation_accuracy": best.get("accuracy")}))
        elif _MODE.value == "eval":
            from fer_jax import experiment
            _print_eval(experiment.evaluate(config, _WORKDIR.value))
        elif _MODE.value == "explain":
            from fer_jax import explain
            index = explain.explain(config, _WORKDIR.value)
            for entry in index["videos"]:
                print(f"video {entry['video']}: {entry['label']} → {entry['predicted']} "
                      f"({entry['confidence']:.2f}); {len(entry['files'])} files in "
                      f"{Path(entry['files'][0]).parent}")
        elif _MODE.value == "predict":
            from fer_jax import predict
            _print_predictions(predict.run(config, _WORKDIR.value))
        else:
            from fer_jax import explain
            _print_report(explain.report(config, _WORKDIR.value))
    except UserError as e:
        print(f"fer_jax: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except train.Preempted as e:
        print(f"fer_jax: {e}", file=sys.stderr, flush=True)
        sys.exit(130 if e.signal_name == "SIGINT" else 143)  # 128 + signal: stopped
    except KeyboardInterrupt:
        print("fer_jax: interrupted; the last checkpoint in the workdir is kept, run the same "
              "command again to resume", file=sys.stderr)
        sys.exit(130)


def _one_line(error: BaseException, config_file: str | None = None,
              overrides: tuple[str, ...] = ()) -> str:
    """The useful part of a flag/config error: the final line of any embedded traceback,
    unescaped, whitespace collapsed. ``config_file``: the ``--config`` file, named in the
    message when it defines no ``get_config``; ``overrides``: the ``--config.a.b=v``
    arguments, one of which is named when it sets a field the config does not have."""
    text = str(error).replace("\\n", "\n").replace("\\'", "'")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        lines = [lines[0].split(":")[0] + ":", lines[-1]]
    text = " ".join(lines)
    if len(text) > 1 and text[0] == text[-1] == "'":
        text = text[1:-1]
    if isinstance(error, (flags.Error, SyntaxError)):  # their messages say what and where
        return text or type(error).__name__
    if isinstance(error, AttributeError) and "has no attribute 'get_config'" in text:
        return f"config file {config_file or ''} defines no get_config() function"
    unknown = _unknown_field(error, text, overrides)
    if unknown:
        return unknown
    # Anything else was raised while a config file ran: name the exception and the file.
    where = _config_file_line(error)
    return f"{type(error).__name__}: {text}" + (f" ({where})" if where else "")


def _unknown_field(error: BaseException, text: str, overrides: tuple[str, ...]) -> str:
    """'--config.a.b: the config has no field 'b' (did you mean 'c'?)' when ``error`` is
    ml_collections' complaint about a field an override names; else ''."""
    match = re.fullmatch(r"""["']*(\w+)["']*(?: Did you mean "(\w+)" instead of "\w+"\?)?""",
                         text)
    if not isinstance(error, (AttributeError, KeyError)) or not match:
        return ""
    name, suggestion = match.groups()
    for override in overrides:
        path = override.partition("=")[0]
        if name in path[len("--config."):].split("."):
            hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
            return f"{path}: the config has no field '{name}'{hint}"
    return ""


def _config_file_line(error: BaseException) -> str:
    """'FILE, line N' of the innermost traceback frame outside installed packages and the
    standard library (the config file's own code), or '' when there is none."""
    skip = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], "<")
    where = ""
    traceback = error.__traceback__
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if not filename.startswith(skip) and filename != __file__:
            where = f"{filename}, line {traceback.tb_lineno}"
        traceback = traceback.tb_next
    return where


def _config_path(argv: list[str]) -> str | None:
    """The file named by ``--config`` on the command line (without its ``:argument``), or
    None when the flag is absent."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            value = arg[len("--config="):]
        elif arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        return value.split(":", 1)[0]
    return None


def _check_config_file(path: str) -> None:
    """Raises ``flags.Error`` with a one-line message when ``path`` cannot be a config file:
    missing (naming the configs that exist next to it), a folder, or unreadable."""
    file = Path(path)
    if not file.exists():
        folder = file.parent if file.parent.is_dir() else Path("configs")
        known = sorted(p.name for p in folder.glob("*.py") if not p.name.startswith("_"))
        hint = (f"; config files in {folder}/: {', '.join(known)}" if known and folder.is_dir()
                else "")
        raise flags.Error(f"config file {path} not found{hint}")
    if file.is_dir():
        raise flags.Error(f"--config={path} is a folder; name a config file in it, "
                          f"e.g. --config={file / 'synthetic.py'}")
    try:
        file.open("rb").close()
    except OSError as e:
        raise flags.Error(f"config file {path} cannot be read: {e.strerror}") from None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with config-file and override problems reported on one line."""
    path = _config_path(argv)
    try:
        if path is not None:
            _check_config_file(path)
        rest = flags.FLAGS(argv)
        _CONFIG.value.keys()  # config files load lazily: surface their errors here
        return rest
    except Exception as e:  # noqa: BLE001 — any failure here is a bad command line or config
        overrides = tuple(a for a in argv if a.startswith("--config."))
        print(f"fer_jax: error: {_one_line(e, path, overrides)} (see --helpfull)", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
