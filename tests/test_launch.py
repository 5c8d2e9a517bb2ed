"""launch/local.py (N processes of one command, joined by JAX's distributed runtime) with a
tiny child script instead of fer_jax.main, and the cluster scripts launch/slurm.sbatch and
launch/tpu_vm.sh run against stand-ins for srun, scontrol and gcloud: the commands they would
run, and that every flag they pass to fer_jax.main exists."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "launch" / "local.py"
SLURM = REPO / "launch" / "slurm.sbatch"
TPU_VM = REPO / "launch" / "tpu_vm.sh"

CHILD = """\
import os, sys, time
print("argv", " ".join(sys.argv[1:]))
print("env " + os.environ["JAX_PLATFORMS"] + "|" + os.environ["XLA_FLAGS"])
if "--process_id=1" in sys.argv and "fail" in sys.argv:
    sys.exit(3)
if "fail" in sys.argv:
    time.sleep(120)  # the launcher must stop it
"""


def _local(tmp_path, *args, child_args=(), env=None):
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    return subprocess.run([sys.executable, str(LOCAL), *args, "--", sys.executable,
                           str(child), *child_args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_local_starts_processes_with_the_distributed_flags_and_cpu_devices(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_use_thunk_runtime=false "
               "--xla_force_host_platform_device_count=8")
    result = _local(tmp_path, "--processes=2", "--port=23456", "--devices_per_process=3",
                    child_args=["--config=x.py"], env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    for i in range(2):
        assert (f"[{i}] argv --config=x.py --coordinator_address=localhost:23456 "
                f"--num_processes=2 --process_id={i}") in lines
        # Inherited XLA flags kept, the device count replaced.
        assert (f"[{i}] env cpu|--xla_cpu_use_thunk_runtime=false "
                "--xla_force_host_platform_device_count=3") in lines


def test_local_picks_a_free_port(tmp_path):
    result = _local(tmp_path, "--processes=2")
    assert result.returncode == 0, result.stderr
    ports = set(re.findall(r"--coordinator_address=localhost:(\d+)", result.stdout))
    assert len(ports) == 1 and 0 < int(ports.pop()) < 65536


def test_local_stops_the_others_when_one_process_fails(tmp_path):
    start = time.monotonic()
    result = _local(tmp_path, "--processes=2", child_args=["fail"])
    assert time.monotonic() - start < 30  # process 0 (sleeping 120 s) was stopped
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "local: process 1 of 2 failed with exit code 3; stopped the others")


def test_local_needs_a_command(tmp_path):
    result = subprocess.run([sys.executable, str(LOCAL), "--processes=2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "give the command to run after --" in result.stderr


@pytest.mark.parametrize("script", [SLURM, TPU_VM], ids=lambda p: p.name)
def test_shell_script_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _stand_ins(tmp_path, exit_code=0) -> dict[str, str]:
    """An environment whose srun, scontrol and gcloud print ``@name`` and their arguments,
    one per line, and exit with ``exit_code`` (srun) or 0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, code in (("srun", exit_code), ("scontrol", 0), ("gcloud", 0)):
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\necho "@{name}"\nfor a in "$@"; do echo "  $a"; done\n'
                        f"exit {code}\n")
        path.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def _calls(out: str) -> list[tuple[str, list[str]]]:
    """(program, arguments) of every stand-in call in ``out``."""
    calls = []
    for line in out.splitlines():
        if line.startswith("@"):
            calls.append((line[1:], []))
        elif line.startswith("  ") and calls:
            calls[-1][1].append(line[2:])
    return calls


def _main_flags() -> set[str]:
    """The flags that ``python -m fer_jax.main`` defines itself."""
    help_text = subprocess.run([sys.executable, "-m", "fer_jax.main", "--helpfull"], cwd=REPO,
                               capture_output=True, text=True, timeout=60).stdout
    return set(re.findall(r"^\s+--(?:\[no\])?(\w+):", help_text, re.MULTILINE))


def _check_flags(arguments: list[str]) -> None:
    """Every --flag of a fer_jax.main command line is one of its flags (or a config field)."""
    names = {a[2:].split("=")[0] for a in arguments if a.startswith("--")}
    names = {n for n in names if not n.startswith("config.")}
    assert names and names <= _main_flags(), names - _main_flags()


def test_slurm_script_runs_fer_jax_on_every_node_and_requeues_after_sigterm(tmp_path):
    env = _stand_ins(tmp_path, exit_code=143)
    env.update(SLURM_JOB_ID="42", CONFIG="configs/synthetic.py:smoke", WORKDIR="/shared/run",
               EXTRA="--config.train.epochs=3 --config.seed=1")
    result = subprocess.run(["bash", str(SLURM)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 143
    (srun, arguments), requeue = _calls(result.stdout)
    assert srun == "srun" and arguments == [
        "python", "-m", "fer_jax.main", "--config=configs/synthetic.py:smoke",
        "--workdir=/shared/run", "--distributed", "--config.train.epochs=3", "--config.seed=1"]
    assert requeue == ("scontrol", ["requeue", "42"])  # stopped by SIGTERM, checkpoint saved
    _check_flags(arguments)
    directives = re.findall(r"^#SBATCH (\S+)", SLURM.read_text(), re.MULTILINE)
    for option in ("--nodes", "--ntasks-per-node=1", "--gpus-per-node", "--time", "--output",
                   "--signal=TERM@120", "--requeue"):
        assert any(d.split("=")[0] == option.split("=")[0] and option in d
                   for d in directives), option


def test_tpu_vm_script_runs_fer_jax_on_all_workers(tmp_path):
    env = _stand_ins(tmp_path)
    env.update(TPU_NAME="fer-v4", ZONE="us-central2-b")
    result = subprocess.run(["bash", str(TPU_VM), "run", "configs/synthetic.py",
                             "/mnt/shared/run", "--config.train.epochs=3"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    [(gcloud, arguments)] = _calls(result.stdout)
    assert gcloud == "gcloud" and arguments[:6] == ["compute", "tpus", "tpu-vm", "ssh", "fer-v4",
                             "--zone=us-central2-b"]
    assert "--worker=all" in arguments
    command = next(a for a in arguments if a.startswith("--command="))
    assert command == ("--command=cd fer_jax && python3 -m fer_jax.main "
                       "--config=configs/synthetic.py --workdir=/mnt/shared/run --distributed "
                       "--config.train.epochs=3 ")
    _check_flags(command.split("&&")[1].split())


@pytest.mark.parametrize("args, message", [
    ([], "usage:"),
    (["run", "configs/synthetic.py"], "usage:"),
    (["run", "configs/synthetic.py", "gs://bucket/run"], "shared by all workers"),
])
def test_tpu_vm_script_refuses_missing_arguments_and_gs_workdirs(tmp_path, args, message):
    env = _stand_ins(tmp_path)
    env.update(TPU_NAME="fer-v4", ZONE="us-central2-b")
    result = subprocess.run(["bash", str(TPU_VM), *args], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert not _calls(result.stdout)
