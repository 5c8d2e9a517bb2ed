"""Several processes, one training run: JAX's distributed runtime.

Every process runs the same command; ``initialize`` connects them before JAX is used, after
which ``jax.devices()`` lists the devices of all processes and the training ``Mesh`` spans
them. How the processes find each other:

* explicitly: ``--coordinator_address=host:port --num_processes=N --process_id=i`` (what
  ``launch/local.py`` passes to N processes on one machine);
* ``--distributed``: ``jax.distributed.initialize()`` detects the cluster itself (SLURM, TPU
  VM pod slices, Kubernetes; ``launch/slurm.sbatch``, ``launch/tpu_vm.sh``).

On CPU, collectives across processes use Gloo. Process 0 (the chief) writes the config,
metrics, TensorBoard events and figures; every process takes part in checkpointing (Orbax
coordinates the writes, synchronising through the distributed runtime's barriers:
``use_coordination_barriers``) and loads only its own rows of each global batch.
"""
from __future__ import annotations

import jax

from fer_jax.errors import UserError


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> None:
    """Connects this process to the others (see the module docstring); does nothing for a
    single-process run (no address and not ``auto``)."""
    if coordinator_address is None and not auto:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise UserError("--num_processes / --process_id need --coordinator_address "
                            "(or --distributed on a cluster JAX detects)")
        return
    if coordinator_address is not None and (num_processes is None or process_id is None):
        raise UserError("--coordinator_address needs --num_processes and --process_id")
    if num_processes is not None and process_id is not None \
            and not 0 <= process_id < num_processes:
        raise UserError(f"--process_id={process_id} must lie in 0..{num_processes - 1}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"cannot join the distributed run: {str(e).splitlines()[0]}") from None
    use_coordination_barriers()


def use_coordination_barriers() -> None:
    """Makes Orbax synchronise the processes through the distributed runtime's barriers
    (its coordination service, with a timeout) instead of its default, an XLA collective (a
    psum over every device). An asynchronous checkpoint ends with such a barrier on a
    background thread, while the main thread issues the next training step's gradient
    all-reduce: two processes can then enter the two collectives in opposite orders and
    wait on each other forever (seen, rarely, as a two-process CPU run that stopped
    mid-epoch). A coordination-service barrier is no collective, so it cannot interleave."""
    from absl import flags
    import orbax.checkpoint  # noqa: F401 — defines Orbax's flags

    flags.FLAGS.experimental_orbax_use_distributed_barrier = True


def is_chief() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0
