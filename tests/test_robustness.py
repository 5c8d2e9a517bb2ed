"""Robustness corpus: bad inputs across configs, data, checkpoints and the command line.

Every kind of bad input is one row of a table: kind → what is set up → a fragment of the
expected message. Each must fail with one actionable line — ``UserError`` in-process; on the
command line exit status 2, a single ``fer_jax: error:`` line on stderr and no traceback — and
must leave what the workdir already holds (checkpoints, best/, metrics.json, config.json)
byte for byte as it was, writing no checkpoint either.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import config_files
import shared_runs
from fer_jax import experiment, explain, train
from fer_jax.errors import UserError
from fer_jax.models import pretrained
from fer_jax.workdir_lock import LOCK_FILE

REPO = Path(__file__).resolve().parents[1]
GUARDED = ("checkpoints", "best", "corrupt_checkpoints")
"""Folders in which a failed call must not create (or move) anything."""


_smoke_config = config_files.smoke


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under ``root`` ({} if it does not exist); the
    writer lock's file is left out (it records the last process that took the lock)."""
    if not root.is_dir():
        return {str(root): hashlib.sha256(root.read_bytes()).hexdigest()} \
            if root.is_file() else {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def _assert_unchanged(before: dict, root: Path, may_change: tuple = ()) -> None:
    """Every file of ``before`` is still there with the same bytes (except ``may_change``),
    and no file appeared in a checkpoint folder."""
    after = _snapshot(root)
    lost = [p for p in before if p not in after]
    changed = [p for p in before if p in after and before[p] != after[p]
               and p not in may_change]
    written = [p for p in set(after) - set(before) if p.split(os.sep)[0] in GUARDED]
    assert not lost and not changed and not written, \
        f"lost {lost[:5]}, changed {changed[:5]}, new in checkpoint folders {written[:5]}"


def _assert_one_line(error: BaseException, fragment: str) -> None:
    message = str(error)
    assert isinstance(error, UserError), f"{type(error).__name__}: {message[:500]}"
    assert "\n" not in message.strip(), message
    assert fragment in message, message


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch smoke run: checkpoints 4 and 6, best 6, metrics.json, config.json."""
    workdir = shared_runs.synthetic_smoke(tmp_path_factory, tmp_path_factory.mktemp("trained"))
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "6"]
    return workdir


# --------------------------------------------------------------------------- preparations
def _garble(*folders):
    """Overwrites every file of the saved train states in ``folders`` with junk."""
    def prepare(workdir, tmp_path, monkeypatch):
        for folder in folders:
            for f in (workdir / folder).rglob("*"):
                if f.is_file() and "state" in f.relative_to(workdir).parts:
                    f.write_bytes(b"\x00garbage")
    return prepare


def _truncate_everything(workdir, tmp_path, monkeypatch):
    """Cuts every checkpoint file to half its length (an interrupted copy)."""
    for folder in ("checkpoints", "best"):
        for f in (workdir / folder).rglob("*"):
            if f.is_file():
                f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])


def _drop_config_json(workdir, tmp_path, monkeypatch):
    (workdir / "config.json").unlink()


def _truncate_config_json(workdir, tmp_path, monkeypatch):
    path = workdir / "config.json"
    path.write_bytes(path.read_bytes()[:40])


def _best_is_a_file(workdir, tmp_path, monkeypatch):
    (workdir / "best").write_text("not a checkpoint folder")


def _three_devices(workdir, tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda *args: 3)


def _init_from_json(workdir, tmp_path, monkeypatch):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"params": [1, 2, 3]}))
    return {"model.init_from": str(path)}


def _init_from_other_model(workdir, tmp_path, monkeypatch):
    path = pretrained.save(tmp_path / "c3d.msgpack",
                           {"params": {"conv1a": {"kernel": np.zeros((3, 3, 3, 3, 4))}}},
                           "c3d", {})
    return {"model.init_from": str(path)}


def _table(rows, width: int, default=()):
    """Rows (tuples, or ``pytest.param`` for marked ones) → ``pytest.param``s with the kind
    as id, short rows padded with ``default`` to ``width`` values."""
    params = []
    for row in rows:
        values, marks = (row.values, row.marks) if hasattr(row, "marks") else (row, ())
        values = tuple(values) + (default,) * (width - len(values))
        params.append(pytest.param(*values, marks=marks, id=values[0]))
    return params


# kind, workdir ('trained' copy | 'fresh' | 'file'), call, config overrides, preparation,
# expected message fragment[, files a failed call may rewrite]
CASES = [
    # -- configs
    ("unknown model name", "trained", "train", {"model.name": "nope"}, None,
     "unknown model 'nope'; available models: c3d"),
    ("unknown model argument", "trained", "train", {"model.kwargs.hiddn_size": 32}, None,
     "cannot build model 'timesformer' from config.model"),
    ("unknown dataset name", "trained", "eval", {"dataset.name": "nope"}, None,
     "unknown dataset 'nope'; available: synthetic"),
    ("synthetic dataset parameter out of range", "fresh", "train",
     {"dataset.num_classes": 9}, None, "config.dataset: num_classes must be in 2..7, got 9"),
    ("empty evaluation split", "trained", "eval", {"dataset.test_videos": 0}, None,
     "config.dataset.test_videos must be at least 1, got 0"),
    ("batch size zero", "fresh", "train", {"train.batch_size": 0}, None,
     "train.batch_size must be at least 1, got 0"),
    ("negative evaluation batch size", "trained", "eval", {"train.batch_size": -8}, None,
     "evaluation batch size must be at least 1, got -8"),
    ("batch size larger than the training split", "fresh", "train",
     {"dataset.train_videos": 5}, None, "has 5 videos but train.batch_size is 8"),
    ("batch size not divisible by the device count", "trained", "train", {}, _three_devices,
     "train.batch_size=8 is not divisible by the 3 devices"),
    # keep_checkpoints=0 used to make Orbax delete every checkpoint of the workdir.
    ("keep no checkpoints", "trained", "train", {"train.keep_checkpoints": 0}, None,
     "train.keep_checkpoints must be at least 1, got 0"),
    ("image size not divisible by the patch size", "fresh", "train",
     {"input.image_size": 30}, None, "is not divisible by patch size 8"),
    ("log every zero steps", "trained", "train", {"train.log_every_steps": 0, "train.epochs": 2},
     None, "train.log_every_steps must be at least 1"),
    ("negative checkpoint interval", "trained", "train", {"train.checkpoint_every_steps": -1},
     None, "train.checkpoint_every_steps must be 0"),
    ("unknown best metric", "fresh", "train", {"train.best_metric": "acc"}, None,
     "train.best_metric must be one of accuracy"),
    # Used to fail with ZeroDivisionError, blame the learning rate, or train silently.
    ("clip of zero frames", "fresh", "train", {"input.clip_frames": 0}, None,
     "input.clip_frames must be at least 1, got 0"),
    ("zero standard deviation", "trained", "eval", {"input.std": 0.0}, None,
     "input.std must be positive"),
    ("NaN learning rate", "fresh", "train", {"optimizer.learning_rate": float("nan")}, None,
     "optimizer.learning_rate must be a finite number > 0, got nan"),
    ("negative learning rate", "fresh", "train", {"optimizer.learning_rate": -1e-3}, None,
     "optimizer.learning_rate must be a finite number > 0"),
    ("zero epochs", "trained", "train", {"train.epochs": 0}, None,
     "train.epochs must be at least 1, got 0"),
    ("negative patience", "fresh", "train", {"train.early_stopping_patience": -1}, None,
     "train.early_stopping_patience must be 0 (off) or positive, got -1"),
    ("negative worker count", "fresh", "train", {"input.num_workers": -2}, None,
     "input.num_workers must be 0 (in-process) or positive, got -2"),
    ("non-positive optimizer.scale", "fresh", "train",
     {"optimizer.scaled": "kernel", "optimizer.scale": 0.0}, None,
     "optimizer.scale must be a finite number > 0, got 0.0"),
    ("init_exclude without init_from", "fresh", "train", {"model.init_exclude": "fc"}, None,
     "model.init_exclude='fc' needs model.init_from"),
    # -- workdirs and checkpoints
    ("workdir is an existing file", "file", "train", {}, None, "cannot write to workdir"),
    ("eval of an empty workdir", "fresh", "eval", {}, None,
     "; train first with --mode=train --workdir="),
    ("resume with another experiment's config", "trained", "train",
     {"model.kwargs.hidden_size": 64}, None, "different experiment (differs in model)"),
    # optimizer.scaled adds to the optimiser state: a resume must agree on it
    ("resume with parameters newly scaled", "trained", "train",
     {"optimizer.scaled": "kernel", "optimizer.scale": 0.1}, None,
     "different experiment (differs in optimizer.scaled)"),
    # Used to move the intact checkpoints to corrupt_checkpoints/ and train from scratch;
    # the checkpoints' experiment record now names the difference.
    ("resume checkpoints of other shapes without config.json", "trained", "train",
     {"model.kwargs.hidden_size": 64}, _drop_config_json,
     "different experiment (differs in model)"),
    # Used to move them all to corrupt_checkpoints/ and train from scratch, replacing best/.
    ("resume when every checkpoint is unreadable", "trained", "train", {},
     _garble("checkpoints"), "checkpoints (step 6, 4: "),
    ("eval when every checkpoint is truncated", "trained", "eval", {}, _truncate_everything,
     "best/6, checkpoints/6, checkpoints/4 cannot be read"),
    ("checkpoint folder is a file", "fresh", "train", {}, _best_is_a_file,
     "best is not a directory"),
    # The experiment record in the checkpoints replaces a lost or damaged config.json.
    ("resume with another seed, config.json truncated", "trained", "train", {"seed": 5},
     _truncate_config_json, "different experiment (differs in seed)"),
    ("resume with another data seed, config.json missing", "trained", "train",
     {"dataset.seed": 3}, _drop_config_json, "different experiment (differs in dataset)"),
    ("eval checkpoints of other shapes without config.json", "trained", "eval",
     {"model.kwargs.hidden_size": 64}, _drop_config_json,
     "different experiment (differs in model)"),
    # -- pretrained weights
    ("init_from a file that is not converted weights", "fresh", "train", {}, _init_from_json,
     "is not a converted-weights file"),
    ("init_from weights of another architecture", "fresh", "train", {},
     _init_from_other_model, "no pretrained array matches the model"),
    # -- explanations
    ("explain.videos not indices", "trained", "explain", {"explain.videos": "first"}, None,
     "explain.videos must be comma-separated video indices, got 'first'"),
    ("unknown explain.target", "trained", "explain",
     {"explain.target": "truth", "explain.videos": "0"}, None,
     "explain.target must be 'predicted' or 'label', got 'truth'"),
    ("occlusion grid larger than the image", "trained", "report", {"explain.grid": 100}, None,
     "explain.grid=100 must lie in 1..input.image_size (32)"),
    # -- training (config.json: rewritten by train.py before training starts)
    ("non-finite loss", "trained", "train",
     {"train.epochs": 2, "optimizer.learning_rate": 1e30, "optimizer.grad_clip_norm": 0.0},
     None, "the last good checkpoint (step 6) is kept. Lower --config.optimizer.learning_rate",
     ("config.json",)),
]

CALLS = {"train": train.train_and_evaluate, "eval": experiment.evaluate,
         "explain": explain.explain, "report": explain.report}


@pytest.mark.parametrize("kind, workdir_kind, call, overrides, prepare, fragment, may_change",
                         _table(CASES, 7))
def test_bad_input_is_one_line_and_keeps_the_workdir(
        trained, tmp_path, monkeypatch, kind, workdir_kind, call, overrides, prepare, fragment,
        may_change):
    workdir = tmp_path / "run"
    if workdir_kind == "trained":
        shutil.copytree(trained, workdir)
    elif workdir_kind == "file":
        workdir.write_text("a file where the workdir should be")
    else:
        workdir.mkdir()
    extra = prepare(workdir, tmp_path, monkeypatch) if prepare else None
    config = _smoke_config(**{**overrides, **(extra or {})})
    before = _snapshot(workdir)
    with pytest.raises(Exception) as error:
        CALLS[call](config, str(workdir))
    _assert_one_line(error.value, fragment)
    _assert_unchanged(before, workdir, may_change)


def test_failed_first_run_does_not_lock_the_workdir(tmp_path):
    """Following the batch-size advice of a failed first run must not be refused as
    'another experiment' by the config.json that failed run left behind."""
    workdir = tmp_path / "run"
    with pytest.raises(UserError, match="use --config.train.batch_size=5 or fewer"):
        train.train_and_evaluate(_smoke_config(**{"dataset.train_videos": 5}), str(workdir))
    corrected = _smoke_config(**{"dataset.train_videos": 5, "train.batch_size": 5})
    experiment.check_same_experiment(corrected, workdir)


# --------------------------------------------------------------------------- raw data
def _unreadable_videos(raw: Path) -> None:
    for partition, emotion in (("Train", "Happy"), ("Train", "Sad"), ("Val", "Happy")):
        folder = raw / partition / emotion
        folder.mkdir(parents=True)
        (folder / "000001.avi").write_bytes(np.random.default_rng(0).bytes(3000))
    (raw / "Val" / "Sad").mkdir()
    (raw / "Val" / "Sad" / "000002.avi").write_bytes(b"")


def _other_layout(raw: Path) -> None:
    (raw / "VideoFlash").mkdir(parents=True)
    (raw / "VideoFlash" / "1001_DFA_ANG_XX.flv").write_bytes(b"FLV")


DATA_CASES = [
    ("every video unreadable", _unreadable_videos,
     "no afew video could be preprocessed from"),
    ("manual_dir of another dataset's layout", _other_layout,
     "has no Train; expected Train/<Emotion>/*.avi"),
]


@pytest.mark.parametrize("kind, make, fragment", _table(DATA_CASES, 3))
def test_bad_raw_dataset_is_one_line_and_keeps_the_files(tmp_path, kind, make, fragment):
    from fer_jax.data import preprocess

    raw = tmp_path / "raw"
    make(raw)
    config = _smoke_config()
    config.dataset = {"name": "afew", "num_classes": 7, "data_dir": str(tmp_path / "data"),
                      "protocol": "", "fold": 0, "split_seed": 0, "codebook": "figure"}
    # OpenCV's bundled face detector: no optional dependency (the videos fail before it).
    config.preprocess.update(manual_dir=str(raw), crop_size=48, workers=0, backend="opencv")
    before = _snapshot(raw)
    with pytest.raises(Exception) as error:
        preprocess.run(config)
    _assert_one_line(error.value, fragment)
    _assert_unchanged(before, raw)
    records = tmp_path / "data" / "afew"
    assert not records.exists() or not any(records.rglob("*.array_record*"))


# --------------------------------------------------------------------------- command line
CONFIG_FILES = {
    "no_get_config.py": "SEED = 0\n",
    "bad_syntax.py": "def get_config(:\n",
    "raises.py": "def get_config():\n    return {'train': 1}['model']\n",
}

# kind, command-line arguments (``{configs}``: the folder of CONFIG_FILES; ``--workdir`` is a
# trained workdir's copy unless ``--no-workdir``; ``--garble``: its checkpoints made
# unreadable first), expected message fragment
CLI_CASES = [
    ("unknown config field", ["--config=configs/synthetic.py:smoke",
                              "--config.optimizer.learning_rat=1e-3"],
     "--config.optimizer.learning_rat: the config has no field 'learning_rat' (did you mean "
     "'learning_rate'?)"),
    ("wrong type on the command line", ["--config=configs/synthetic.py:smoke",
                                        "--config.train.batch_size=1.5"],
     "--config.train.batch_size=1.5: invalid literal for int()"),
    ("config file without get_config", ["--config={configs}/no_get_config.py"],
     "no_get_config.py defines no get_config() function"),
    ("config file with a syntax error", ["--config={configs}/bad_syntax.py"],
     "invalid syntax (bad_syntax.py, line 1)"),
    ("config file that raises", ["--config={configs}/raises.py"],
     "KeyError: model ({configs}/raises.py, line 2)"),
    ("missing --workdir", ["--config=configs/synthetic.py:smoke", "--no-workdir"],
     "--workdir is required"),
    ("empty --workdir", ["--config=configs/synthetic.py:smoke", "--workdir=", "--no-workdir"],
     "--workdir is required and must not be empty"),
    ("eval when every checkpoint is unreadable",
     ["--config=configs/synthetic.py:smoke", "--config.train.epochs=1", "--mode=eval",
      "--garble"], "cannot be read"),
]


@pytest.mark.parametrize("kind, arguments, fragment", _table(CLI_CASES, 3))
def test_bad_command_line_is_one_line_and_keeps_the_workdir(trained, tmp_path, kind, arguments,
                                                            fragment):
    configs = tmp_path / "configs"
    configs.mkdir()
    for name, text in CONFIG_FILES.items():
        (configs / name).write_text(text)
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    if "--garble" in arguments:
        _garble("checkpoints", "best")(workdir, tmp_path, None)
    if "--no-workdir" not in arguments:
        arguments = arguments + [f"--workdir={workdir}"]
    arguments = [a.format(configs=configs) for a in arguments
                 if a not in ("--garble", "--no-workdir")]
    before = _snapshot(workdir)
    result = subprocess.run([sys.executable, "-m", "fer_jax.main", *arguments], cwd=REPO,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("fer_jax: error:")]
    assert len(errors) == 1 and fragment.format(configs=configs) in errors[0], \
        result.stderr[-2000:]
    _assert_unchanged(before, workdir)
