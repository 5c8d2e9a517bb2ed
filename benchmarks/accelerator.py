"""One jit-compiled training step of the papers' video models in every precision and attention
setting: step time, clips/s, TFLOP/s from XLA's cost analysis, MFU, peak memory.

    python benchmarks/accelerator.py                       # reduced sizes on a CPU, full on GPU/TPU
    python benchmarks/accelerator.py --full --json accelerator.json
    python benchmarks/accelerator.py --models timesformer --precisions bfloat16 \\
        --attention xla,cudnn --steps 20
    python benchmarks/accelerator.py --peak-tflops 989.5   # a device missing from PEAK_TFLOPS

The models, at the papers' sizes (``--full``, the default on a GPU or TPU), each from its
experiment config:

  timesformer  configs/timesformer_cremad.py  TimeSformer-B (768 wide, 12 layers, 12 heads,
               divided space-time attention), 8×224², batch 8 (Du Toit; the batch is the
               official TimeSformer recipe's, the paper states none)
  resnet3d_18  configs/resnet3d18_afew.py     dense 3D ResNet-18, 16×112², batch 8 (Ayral's
               thesis, ch. 2; batch chosen by the config)
  i3d          configs/i3d_hmdb51.py          I3D Inception-v1, 64×224² (the issue's size; the
               config trains 16-frame clips), batch 16 (thesis, ch. 3: "batch 16 on two GPUs")
  vgg16_3d     configs/vgg16_3d_afew.py       inflated VGG-16 (3×3×3), 16×112², batch 8 (thesis,
               ch. 3; batch chosen by the config, which accumulates 4 batches per update)

``--reduced`` (the default on a CPU) runs each config's ``:smoke`` variant instead (tiny
widths, 4- or 8-frame 32×32 clips, batch 8: a step takes milliseconds to a second on a CPU,
and compiling takes most of the run). Every step is one update: gradient
accumulation is switched off (``optimizer.accumulation_steps=1``) so each timed step runs
forward, backward and the optimiser update.

The step is the training loop's own (``fer_jax.train.jit_train_step``: forward, backward,
optimiser update, float16 loss scaling, state and sums donated), on a state from
``train.init_train_state`` and a uint8 batch sharded as the loop shards it. Per setting the
script compiles it once (``jit(...).lower(...).compile()``), runs one warm-up step and times
``--steps`` more. Settings: ``--precisions`` (``model.precision``) and, for TimeSformer,
``--attention`` (``model.attention_implementation``): ``cudnn`` is skipped with the reason
printed off NVIDIA GPUs and in float32 (cuDNN's fused attention takes 16-bit inputs), and a
setting whose step the backend cannot lower or compile (``UNSUPPORTED``) is reported with the
error instead of stopping the run.

Columns (also the JSON's ``rows``, ``--json PATH``, with the environment: JAX version,
backend, device kind, host CPU, XLA_FLAGS):
  status, reason       ok | skipped | unsupported | failed (an isolated process that died),
                       and why when not ok
  compile_seconds      building the model and state and compiling the step
  step_seconds         mean wall time of a step
  clips_per_second     batch / step_seconds
  flops                FLOPs of the compiled step per ``compiled.cost_analysis()['flops']``
  model_flops          the FLOPs used for TFLOP/s and MFU: ``flops``, except for fused
                       attention (xla, cudnn), where it is the same model's explicit-attention
                       step in the same precision (XLA's cost analysis need not count the
                       FLOPs inside a custom call such as cuDNN's kernel, so a fused step's
                       own count can fall short)
  tflops_per_second    model_flops / step_seconds / 1e12
  peak_tflops, mfu     the device's dense peak for the precision (``PEAK_TFLOPS``, or
                       ``--peak-tflops``) and tflops_per_second / peak_tflops; None ("n/a")
                       when the peak is unknown (every CPU without ``--peak-tflops``)
  peak_bytes           ``device.memory_stats()['peak_bytes_in_use']`` where the device reports
                       it (GPU, TPU; each setting then runs in a process of its own,
                       ``--isolate``, so the peak is its own), else XLA's ``compiled.memory_analysis()`` of the
                       step: arguments + outputs − aliased (donated) + temporaries
  peak_bytes_source    which of the two
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from fer_jax import configs, experiment, train
from fer_jax.data import pipeline
import timing
from timing import cpu_name, seconds_per_call

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# name → (config file, overrides of the full size): the papers' models and sizes.
MODELS = {
    "timesformer": ("timesformer_cremad.py", {}),
    "resnet3d_18": ("resnet3d18_afew.py", {}),
    "i3d": ("i3d_hmdb51.py", {"clip_frames": 64}),
    "vgg16_3d": ("vgg16_3d_afew.py", {}),
}
PRECISIONS = ("float32", "bfloat16", "float16")
ATTENTION = ("explicit", "xla", "cudnn")  # model.attention_implementation (TimeSformer)

# Dense (no structured sparsity) peak TFLOP/s per chip: (device_kind pattern, name, peaks by
# precision). float32 counts the rate JAX's default matmul precision runs float32 at: TF32
# tensor cores on NVIDIA GPUs since Ampere, bfloat16 passes on TPUs ("By default, JAX leans
# toward speed: float32 dot products may be computed with reduced-precision arithmetic
# internally (bfloat16 on TPU, TF32 on recent GPUs)", https://docs.jax.dev/en/latest/201/
# precision.html). None: no figure (TPUs have no float16 matrix unit rate).
PEAK_TFLOPS = [
    # NVIDIA H100 Tensor Core GPU datasheet, SXM column: BF16/FP16 1,979 and TF32 989 TFLOPS
    # "with sparsity"; dense is half.
    (r"H100.*(SXM|HBM3)", "NVIDIA H100 SXM",
     {"bfloat16": 989.5, "float16": 989.5, "float32": 494.5}),
    # NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column: the same figures as H100 SXM.
    (r"H200(?!.*NVL)", "NVIDIA H200 SXM",
     {"bfloat16": 989.5, "float16": 989.5, "float32": 494.5}),
    # NVIDIA A100 Tensor Core GPU datasheet (SXM and PCIe alike): BF16/FP16 312, TF32 156.
    (r"A100", "NVIDIA A100", {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0}),
    # NVIDIA L4 Tensor Core GPU datasheet: BF16/FP16 242 and TF32 120 "with sparsity".
    (r"\bL4\b", "NVIDIA L4", {"bfloat16": 121.0, "float16": 121.0, "float32": 60.0}),
    # Google Cloud TPU documentation, system architecture pages, peak compute per chip (bf16):
    # v5e 197, v5p 459, v4 275 TFLOPS.
    (r"TPU v5( lite|e)", "TPU v5e", {"bfloat16": 197.0, "float16": None, "float32": 197.0}),
    (r"TPU v5(p)?$", "TPU v5p", {"bfloat16": 459.0, "float16": None, "float32": 459.0}),
    (r"TPU v4$", "TPU v4", {"bfloat16": 275.0, "float16": None, "float32": 275.0}),
]


def device_peak(device_kind: str, precision: str) -> tuple[str | None, float | None]:
    """``(device name, dense peak TFLOP/s for precision)`` from ``PEAK_TFLOPS``, or
    ``(None, None)`` for a device not in the table (every CPU)."""
    for pattern, name, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_kind):
            return name, peaks[precision]
    return None, None


def benchmark_config(model: str, reduced: bool, precision: str, attention: str,
                     batch: int | None):
    """The experiment config of ``model`` (``MODELS``; ``:smoke`` when ``reduced``) for one
    setting: precision, attention implementation (TimeSformer), no gradient accumulation,
    ``batch`` when given."""
    filename, full = MODELS[model]
    config = configs.load(f"{CONFIG_DIR / filename}{':smoke' if reduced else ''}")
    if not reduced and "clip_frames" in full:
        config.input.clip_frames = full["clip_frames"]
    config.model.precision = precision
    if model == "timesformer":
        config.model.attention_implementation = attention
    config.optimizer.accumulation_steps = 1
    if batch:
        config.train.batch_size = batch
    return config


def row_head(config, model: str, precision: str, attention: str) -> dict:
    """The fields that name a row: model, input shape without the batch, batch, precision,
    attention implementation (None for the 3D CNNs)."""
    return {"model": model, "input": list(pipeline.input_shape(config)),
            "batch": config.train.batch_size, "precision": precision,
            "attention": attention if model == "timesformer" else None}


def skip_reason(model: str, precision: str, attention: str, platform_name: str) -> str | None:
    """Why a setting cannot run on this backend, or None."""
    if attention == "cudnn" and platform_name != "gpu":
        return f"cuDNN attention needs an NVIDIA GPU (backend: {platform_name})"
    if attention == "cudnn" and precision == "float32":
        return "cuDNN attention takes 16-bit inputs only (bfloat16, float16)"
    return None


def _xla_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float((cost or {}).get("flops", 0.0))


def _program_bytes(compiled) -> int:
    """Arguments + outputs − aliased (donated) + temporaries of a compiled program."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)


# What lowering or compiling a setting raises when the backend lacks an operation (e.g.
# "The precision 'F16_F16_F32' is not supported by dot_general on CPU"): such a setting is a
# row with status 'unsupported'; anything else (a config error, a bug) stops the benchmark.
UNSUPPORTED = (ValueError, NotImplementedError, jax.errors.JaxRuntimeError)


def compile_step(config, workdir: str):
    """``(compiled step, state, batch, sums)`` of ``config``'s training step: the loop's
    ``train.jit_train_step`` compiled for a fresh state (``train.init_train_state``) and a
    uint8 video batch ``[B, T, H, W, C]`` with labels, both sharded as the loop shards them."""
    run = experiment.Run(config, workdir)
    tx, _ = train.make_optimizer(config, steps_per_epoch=100)
    state = train.init_train_state(run, tx, config, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    size = config.train.batch_size
    batch = run.shard({
        "video": rng.integers(0, 256, (size, *pipeline.input_shape(config)), np.uint8),
        "label": (np.arange(size) % config.dataset.num_classes).astype(np.int32)})
    sums = jax.device_put(train.zero_train_sums(), run.replicated)
    step = train.jit_train_step(run.model, tx, config)
    compiled = step.lower(state, batch, sums).compile()
    return compiled, state, batch, sums


def measure(model: str, precision: str, attention: str, reduced: bool, steps: int,
            batch: int | None, peak_override: float | None,
            explicit_flops: float | None = None) -> dict:
    """One row: the setting's step measured as the module docstring says; a setting the
    backend cannot compile is a row with ``status='unsupported'`` and the error as reason.
    ``explicit_flops``: the XLA count of the same model's explicit-attention step in this
    precision when already known (else a fused-attention row compiles that step to count)."""
    device = jax.devices()[0]
    config = benchmark_config(model, reduced, precision, attention, batch)
    row = row_head(config, model, precision, attention)
    reason = skip_reason(model, precision, attention, device.platform)
    if reason:
        return {**row, "status": "skipped", "reason": reason}
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        try:
            compiled, state, batch_arrays, sums = compile_step(config, workdir)
        except UNSUPPORTED as e:
            lines = str(e).strip().splitlines() or [""]
            return {**row, "status": "unsupported",
                    "reason": f"{type(e).__name__}: {lines[0][:300]}"}
        compile_seconds = time.perf_counter() - start
        carried = [state, sums]

        def one_step():
            carried[0], carried[1], _ = compiled(carried[0], batch_arrays, carried[1])
            jax.block_until_ready(carried)

        seconds = seconds_per_call(one_step, steps)
        flops = _xla_flops(compiled)
        model_flops = flops
        if model == "timesformer" and attention != "explicit":
            if explicit_flops is None:
                explicit = benchmark_config(model, reduced, precision, "explicit", batch)
                explicit_flops = _xla_flops(compile_step(explicit, workdir)[0])
            model_flops = explicit_flops
        stats = device.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            peak_bytes, source = int(stats["peak_bytes_in_use"]), "device.memory_stats"
        else:
            peak_bytes, source = _program_bytes(compiled), "compiled.memory_analysis"
    device_name, peak = device_peak(device.device_kind, precision)
    if peak_override:
        device_name, peak = "--peak-tflops", peak_override
    tflops = model_flops / seconds / 1e12
    return {**row, "status": "ok", "compile_seconds": compile_seconds,
            "step_seconds": seconds, "clips_per_second": row["batch"] / seconds,
            "flops": flops, "model_flops": model_flops, "tflops_per_second": tflops,
            "peak_tflops": peak, "peak_source": device_name if peak else None,
            "mfu": tflops / peak if peak else None,
            "peak_bytes": peak_bytes, "peak_bytes_source": source}


def settings(models: list[str], precisions: list[str], attention: list[str]):
    """``(model, precision, attention)`` of every row, in table order."""
    for model in models:
        for precision in precisions:
            for implementation in (attention if model == "timesformer" else ["explicit"]):
                yield model, precision, implementation


def measure_isolated(setting: tuple[str, str, str], args) -> dict:
    """``measure`` of one setting in a fresh process (a device's peak memory is the
    process's), read back from its JSON; a process that fails (e.g. out of device memory)
    gives a row with ``status='failed'`` and its last line of errors."""
    model, precision, attention = setting
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "row.json"
        command = [sys.executable, __file__, "--models", model, "--precisions", precision,
                   "--attention", attention, "--steps", str(args.steps), "--json", str(path),
                   "--no-isolate", "--reduced" if args.reduced else "--full", "--quiet"]
        if args.batch:
            command += ["--batch", str(args.batch)]
        if args.peak_tflops:
            command += ["--peak-tflops", str(args.peak_tflops)]
        done = subprocess.run(command, stderr=subprocess.PIPE, text=True)
        if done.returncode == 0 and path.exists():
            return json.loads(path.read_text())["rows"][0]
    config = benchmark_config(model, args.reduced, precision, attention, args.batch or None)
    errors = done.stderr.strip().splitlines() or [""]
    return {**row_head(config, model, precision, attention), "status": "failed",
            "reason": f"exit status {done.returncode}: {errors[-1][:300]}"}


HEADER = (f"{'model':<13}{'input':>14}{'batch':>6}{'precision':>10}{'attention':>10}"
          f"{'step ms':>10}{'clips/s':>9}{'GFLOP':>10}{'TFLOP/s':>10}{'MFU':>7}{'peak MiB':>10}")


def format_row(r: dict) -> str:
    """One row of the table (a skipped or unsupported setting with its reason)."""
    head = (f"{r['model']:<13}{'x'.join(map(str, r['input'])):>14}{r['batch']:>6}"
            f"{r['precision']:>10}{r['attention'] or '-':>10}")
    if r["status"] != "ok":
        return f"{head}   {r['status']}: {r['reason']}"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
    return (f"{head}{1e3 * r['step_seconds']:>10.1f}{r['clips_per_second']:>9.1f}"
            f"{r['model_flops'] / 1e9:>10.4g}{r['tflops_per_second']:>10.4g}{mfu:>7}"
            f"{r['peak_bytes'] / 2 ** 20:>10.1f}")


def format_table(rows: list[dict]) -> str:
    """The rows as a plain-text table under ``HEADER``."""
    return "\n".join([HEADER, *map(format_row, rows)])


def _names(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = list(allowed) if value == "all" else [v for v in value.split(",") if v]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown[0]!r}; choose from {', '.join(allowed)}")
    return names


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark with command-line ``argv``; returns (and with ``--json`` writes)
    ``{'environment': {...}, 'rows': [...]}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="all", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--precisions", default="all", help=", ".join(PRECISIONS))
    parser.add_argument("--attention", default="all",
                        help=f"TimeSformer's implementations: {', '.join(ATTENTION)}")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--reduced", action="store_true", default=None,
                      help="each config's :smoke size (default on a CPU)")
    size.add_argument("--full", dest="reduced", action="store_false",
                      help="the papers' sizes (default on a GPU or TPU)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
    parser.add_argument("--batch", type=int, default=0, help="override the batch size")
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="the device's peak TFLOP/s for MFU (overrides PEAK_TFLOPS)")
    parser.add_argument("--json", default="", help="write the results here")
    isolate = parser.add_mutually_exclusive_group()
    isolate.add_argument("--isolate", action="store_true", default=None,
                         help="one process per setting (default where the device reports "
                              "its peak memory)")
    isolate.add_argument("--no-isolate", dest="isolate", action="store_false")
    parser.add_argument("--quiet", action="store_true", help="print no table")
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    if args.reduced is None:
        args.reduced = device.platform == "cpu"
    if args.isolate is None:
        args.isolate = "peak_bytes_in_use" in (device.memory_stats() or {})
    models = _names(args.models, tuple(MODELS), "model")
    rows_wanted = list(settings(models, _names(args.precisions, PRECISIONS, "precision"),
                                _names(args.attention, ATTENTION, "attention")))
    environment = {"jax": jax.__version__, "backend": device.platform,
                   "device_kind": device.device_kind, "device_count": jax.device_count(),
                   "cpu": cpu_name(), "cpu_count": os.cpu_count(), "reduced": args.reduced,
                   "steps": args.steps, "xla_flags": os.environ.get("XLA_FLAGS", "")}
    if not args.quiet:
        print(f"JAX {jax.__version__}, {device.platform} ({device.device_kind}), host "
              f"{cpu_name()} ({os.cpu_count()} cores); "
              f"{'reduced sizes (:smoke configs)' if args.reduced else 'full sizes'}, "
              f"{args.steps} timed steps after one warm-up", flush=True)
        print(HEADER, flush=True)
    rows = []
    for setting in rows_wanted:
        if args.isolate and not skip_reason(*setting, device.platform):
            row = measure_isolated(setting, args)
        else:
            model, precision, _ = setting
            explicit = [r["flops"] for r in rows if r["status"] == "ok" and r["model"] == model
                        and r["precision"] == precision and r["attention"] == "explicit"]
            row = measure(*setting, args.reduced, args.steps, args.batch or None,
                          args.peak_tflops or None, explicit[0] if explicit else None)
        rows.append(row)
        if not args.quiet:
            print(format_row(row), flush=True)
    return timing.result(environment, rows, args.json)


if __name__ == "__main__":
    main()
