"""The experiment config files of configs/, loaded as config_flags loads them (by path)."""
import importlib.util
from pathlib import Path

from fer_jax import configs

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def module(name: str):
    """The config file ``configs/<name>.py`` as a module (its ``get_config``, tables, …)."""
    spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def load(name: str, arg: str = ""):
    """``configs/<name>.py:<arg>`` → its ConfigDict (as ``--config=`` reads it)."""
    return configs.load(f"{CONFIG_DIR / name}.py:{arg}" if arg else f"{CONFIG_DIR / name}.py")


def smoke(**overrides):
    """``configs/synthetic.py:smoke`` for one epoch, with dotted-key ``overrides``
    (``{"optimizer.learning_rate": 1e-3}``)."""
    config = load("synthetic", "smoke")
    config.train.epochs = 1
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config
