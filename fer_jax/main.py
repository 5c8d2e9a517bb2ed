"""Command-line entry point: ``python -m fer_jax.main --config=configs/X.py[:arg] --workdir=DIR``.

Modes: ``train`` (default; resumes automatically from DIR) and ``eval`` (best checkpoint of DIR
on ``config.eval.split``). Config fields are overridden with ``--config.a.b=value``.
Problems the user can fix are reported on one line (``fer_jax: error: ...``, exit status 2).
"""
from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with an argument: configs/X.py:arg.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "What to do.")
flags.mark_flags_as_required(["config", "workdir"])


def _print_eval(result: dict) -> None:
    print(f"{result['split']}: accuracy {result['accuracy']:.4f}  macro F1 "
          f"{result['macro_f1']:.4f}  loss {result['loss']:.4f}  "
          f"({result['count']} videos, {result['checkpoint']} checkpoint step "
          f"{result['checkpoint_step']})")
    for name, value in result["per_class_accuracy"].items():
        print(f"  {name:>12s}: {'-' if value is None else f'{value:.3f}'}")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Imported here so that --help and flag errors stay fast.
    from fer_jax import train
    from fer_jax.errors import UserError

    if not flags.FLAGS["verbosity"].present:  # keep library INFO chatter (orbax) out of sight
        logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    logging.info("Config:\n%s", config)
    try:
        if _MODE.value == "train":
            result = train.train_and_evaluate(config, _WORKDIR.value)
            best = result["best_validation"] or {}
            print(json.dumps({"stopped": result["stopped"], "best_epoch": result["best_epoch"],
                              "best_validation_accuracy": best.get("accuracy")}))
        else:
            _print_eval(train.evaluate(config, _WORKDIR.value))
    except UserError as e:
        print(f"fer_jax: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("fer_jax: interrupted; the last checkpoint in the workdir is kept, run the same "
              "command again to resume", file=sys.stderr)
        sys.exit(130)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
