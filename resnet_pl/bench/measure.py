"""Timing one planned case: build our model and torchvision's twin, set each up for the case's
backend, warm up, then alternate timed repeats between them so that machine noise (clock
boost, a neighbour's load, thermal drift) lands on both equally.

Timing: on CPU, ``time.perf_counter`` around each step; on CUDA, a CUDA event pair around each
step (latency) and a synchronised wall clock around each repeat (throughput). Repeats alternate
in ABBA order (ours, theirs, theirs, ours, ...), which also cancels an effect of going first.

Memory: on CUDA, the implementation's own bytes: what its setup left allocated (weights, BN
buffers, optimizer state, captured CUDA-graph pools) plus the largest rise in
``torch.cuda.max_memory_allocated`` during one of its repeats (activations, gradients,
workspace); the shared synthetic input batch is not counted. On CPU, the process's peak resident
set during the implementation's repeats (``VmHWM``, reset before each repeat through
``/proc/self/clear_refs``), which includes both models and the interpreter; where the reset is not
possible, the process's lifetime peak (``resource.getrusage``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import re
import resource
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_pl.bench import dense
from resnet_pl.bench.aggregate import Measurement
from resnet_pl.bench.plan import Case, arch_cfg, forward_flops
from resnet_pl.data.specs import IMAGENET_MEAN, IMAGENET_STD
from resnet_pl.errors import ResNetPLError
from resnet_pl.factory import create_model
from resnet_pl.models.registry import count_flops, count_params, split_name

OURS = "resnet_pl"
TWIN = "torchvision"
LR = 1e-4  # small, so random-label training stays numerically tame over the timed steps

Step = Callable[[Tensor, Tensor], None]


@dataclass(frozen=True)
class Settings:
    steps: int
    warmup: int
    repeats: int
    loader_workers: int = 0
    seed: int = 0
    eval_samples: int = 0  # real images for the accuracy columns (0: none)
    calibration_samples: int = 256


class OutOfMemory(ResNetPLError, RuntimeError):
    """CUDA ran out of memory even at batch size 1."""


# ---- helpers ---------------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _amp(case: Case, cache_enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
    """Autocast for bf16/fp16 rows; a no-op context for fp32/tf32."""
    if case.precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if case.precision == "bf16" else torch.float16
        return torch.autocast(case.device, dtype=dtype, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


@contextlib.contextmanager
def tf32_mode(case: Case) -> Iterator[None]:
    """TF32 tensor cores on for ``tf32`` rows and off for every other row (PyTorch enables them
    for cuDNN convolutions by default, which would make ``fp32`` rows secretly TF32)."""
    if case.device != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = (
            case.precision == "tf32"
        )
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _memory_format(case: Case) -> torch.memory_format:
    return torch.channels_last if case.memory_format == "channels_last" else torch.contiguous_format


_HWM = re.compile(r"VmHWM:\s+(\d+)\s+kB")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter for this process (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set of this process since the last reset (or since start)."""
    try:
        with open("/proc/self/status") as f:
            match = _HWM.search(f.read())
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux


@cache
def twin_flops(arch: str, input_size: int) -> int:
    """Forward FLOPs per image of torchvision's model, counted the same way as ours."""
    import torchvision

    if dense.parse(arch) is not None:
        return dense.flops(arch, input_size, twin=True)

    with torch.device("meta"):
        model = torchvision.models.get_model(split_name(arch)[0], weights=None)
    return count_flops(model, (3, input_size, input_size))


def _host_backend(case: Case) -> bool:
    """Rows whose runtime takes host (numpy) arrays: ONNX Runtime and the export rows."""
    return case.backend.startswith(("onnxruntime", "export:"))


# ---- inputs ----------------------------------------------------------------------------------
class Inputs:
    """The batches a case feeds: one synthetic batch made on the device (the default), or
    batches from a ``DataLoader`` over an in-memory uint8 dataset, moved to the device and
    normalised inside each timed step (``--with-loader``)."""

    def __init__(self, case: Case, batch_size: int, num_classes: int, settings: Settings) -> None:
        self.case = case
        self.batch_size = batch_size
        self.num_classes = num_classes
        # ONNX Runtime and OpenVINO take host arrays, so their batches stay on the CPU.
        self.device = "cpu" if _host_backend(case) else case.device
        self.format = _memory_format(case)
        chans = int(arch_cfg(case.arch)["input_size"][0])
        size = (batch_size, chans, case.input_size, case.input_size)
        self._iter: Iterator[list[Tensor]] | None = None
        if not case.loader:  # made on the device: no host copy in setup or in the timed steps
            g = torch.Generator(device=self.device).manual_seed(settings.seed)
            x = torch.randn(size, generator=g, device=self.device)
            self.x = x.contiguous(memory_format=self.format)
            self.y = torch.randint(0, num_classes, (batch_size,), generator=g, device=self.device)
            return
        g = torch.Generator().manual_seed(settings.seed)
        from torch.utils.data import DataLoader, TensorDataset

        n = batch_size * 4
        images = torch.randint(0, 256, (n, *size[1:]), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, num_classes, (n,), generator=g)
        workers = settings.loader_workers
        self.loader = DataLoader(
            TensorDataset(images, labels),
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=self.device == "cuda",
            persistent_workers=workers > 0,
        )
        mean = torch.tensor(IMAGENET_MEAN[:chans]).view(1, chans, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD[:chans]).view(1, chans, 1, 1) * 255
        self.mean, self.std = mean.to(self.device), std.to(self.device)
        self.x, self.y = self.next()  # a batch of the right shape for static buffers

    def next(self) -> tuple[Tensor, Tensor]:
        """The next batch, ready for the model (the fixed batch when synthetic)."""
        if not self.case.loader:
            return self.x, self.y
        if self._iter is None:
            self._iter = iter(self.loader)
        try:
            xb, yb = next(self._iter)
        except StopIteration:
            self._iter = iter(self.loader)
            xb, yb = next(self._iter)
        x = xb.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=self.format), yb.to(self.device, non_blocking=True)

    def close(self) -> None:
        self._iter = None


# ---- runners ---------------------------------------------------------------------------------
def build_model(impl: str, case: Case, ours: nn.Module | None) -> nn.Module:
    """Our model, or torchvision's with our weights copied in (identical numbers make the two
    run identical arithmetic, denormals included). ONNX rows build on the CPU for export. An
    ``arch.tag`` name loads those pretrained weights (sha256-checked)."""
    device = "cpu" if _host_backend(case) else case.device
    spec = dense.parse(case.arch)
    arch, tag = split_name(case.arch) if spec is None else (case.arch, None)
    with torch.device(device):
        if impl == OURS:
            if ours is not None:  # the same weights for every row of a group
                return copy.deepcopy(ours).to(device)
            if spec is not None:
                return dense.build(case.arch)
            return create_model(case.arch, pretrained=tag is not None)
        import torchvision

        if spec is not None:
            twin = dense.build_twin(case.arch, ours) if ours is not None else None
            if twin is None:
                raise ValueError(f"torchvision has no model matching {case.arch!r}")
            model = twin
        else:
            model = torchvision.models.get_model(arch, weights=None)
    if ours is not None:
        model.load_state_dict(ours.state_dict())
    return model


def _torch_step(
    model: nn.Module, case: Case, cache_enabled: bool = True
) -> tuple[Step, torch.optim.Optimizer | None, Callable[[Tensor], Tensor]]:
    """One eager (or compiled) step: inference under ``inference_mode``, or training with
    cross-entropy, backward and an SGD step (fp16 with a GradScaler, as fp16 training needs).
    Returns the step, its optimizer (``None`` for inference) and the forward it calls."""
    fn: Callable[[Tensor], Tensor] = model
    if case.backend.startswith("compile:"):
        fn = torch.compile(model, mode=case.backend.partition(":")[2])  # type: ignore[assignment]
    if case.mode == "infer":
        model.eval()

        def infer(x: Tensor, y: Tensor) -> None:
            with torch.inference_mode(), _amp(case, cache_enabled):
                fn(x)

        return infer, None, fn

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    scaler = (
        torch.amp.GradScaler(case.device)
        if case.precision == "fp16" and case.device == "cuda"
        else None
    )

    def train(x: Tensor, y: Tensor) -> None:
        with _amp(case, cache_enabled):
            loss = F.cross_entropy(fn(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)

    return train, opt, fn


def _cudagraph_step(model: nn.Module, case: Case, x: Tensor, y: Tensor) -> Step:
    """Capture one whole step (forward; or forward, backward and SGD step) in a CUDA graph
    reading from the static buffers ``x``/``y``; each call copies a new batch in if one is given
    and replays the graph. Eager kernels, no per-kernel launch cost."""
    eager, opt, _ = _torch_step(model, case, cache_enabled=False)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture: cuDNN/cuBLAS state, momentum
        for _ in range(3):
            eager(x, y)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    if case.mode == "infer":
        with torch.cuda.graph(graph), torch.no_grad(), _amp(case, cache_enabled=False):
            model(x)
    else:
        assert opt is not None
        opt.zero_grad(set_to_none=True)  # grads get allocated inside the graph's pool
        with torch.cuda.graph(graph):
            with _amp(case, cache_enabled=False):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

    def replay(xb: Tensor, yb: Tensor) -> None:
        if xb.data_ptr() != x.data_ptr():
            x.copy_(xb)
            y.copy_(yb)
        graph.replay()

    return replay


def _ort_step(model: nn.Module, case: Case, impl: str, tmp: Path, example: Tensor) -> Step:
    """Export to ONNX (TorchScript exporter, opset 17, dynamic batch axis) and run the file in an
    ONNX Runtime session on the case's execution provider, as many threads as torch uses."""
    import onnxruntime as ort

    model.eval()
    path = tmp / f"{case.arch}-{impl}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about our shape check
        torch.onnx.export(
            model,
            (example[:1].contiguous(),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    provider = case.backend.partition(":")[2]
    session = ort.InferenceSession(str(path), opts, providers=[provider])

    def run(x: Tensor, y: Tensor) -> None:
        session.run(None, {"input": x.numpy()})

    return run


@dataclass
class Runner:
    impl: str
    step: Step
    setup_s: float
    persistent_bytes: int | None
    params: int
    flops_per_image: int
    case: Case | None = None
    # The forward pass as a call on a preprocessed batch (for the accuracy columns), and what
    # to record about the backend (compile/export time, runtime, threads, precisions).
    forward: Callable[[Tensor], Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def make_runner(
    impl: str,
    case: Case,
    inputs: Inputs,
    ours: nn.Module | None,
    settings: Settings,
    tmp: Path,
    data: Any = None,
) -> tuple[Runner, nn.Module]:
    """Build, set up for the backend and warm up one implementation. The setup time (model
    build, export, compile or capture, and warm-up) is recorded in the row as ``setup_s``;
    torch.compile's first call (the compilation) also as ``compile_s``, and the export of a
    file as ``export_s``. ``data`` (:class:`resnet_pl.bench.deploy.EvalData`) holds the calibration
    images int8 export rows need."""
    _sync(case.device)
    before = torch.cuda.memory_allocated() if case.device == "cuda" else 0
    t0 = time.perf_counter()
    model = build_model(impl, case, ours)
    info: dict[str, Any] = {}
    forward: Callable[[Tensor], Any] | None = None
    if not _host_backend(case):
        model = model.to(memory_format=_memory_format(case))
    if case.backend == "cudagraphs":
        step = _cudagraph_step(model, case, inputs.x, inputs.y)
    elif case.backend.startswith("onnxruntime"):
        step = _ort_step(model, case, impl, tmp, inputs.x)
    elif case.backend.startswith("export:"):
        step, forward, info = _export_step(model.eval(), case, inputs, data)
    else:
        step, _, fn = _torch_step(model, case)
        forward = _torch_forward(fn, case)
    for i in range(settings.warmup):
        ts = time.perf_counter()
        step(*inputs.next())
        if i == 0 and case.backend.startswith("compile:"):
            _sync(case.device)
            info["compile_s"] = time.perf_counter() - ts  # the first call compiles
    _sync(case.device)
    setup_s = time.perf_counter() - t0
    ort_on_gpu = case.device == "cuda" and case.backend.startswith("onnxruntime")
    persistent = (
        torch.cuda.memory_allocated() - before if case.device == "cuda" and not ort_on_gpu else None
    )
    flops = (
        forward_flops(case.arch, case.input_size)
        if impl == OURS
        else twin_flops(case.arch, case.input_size)
    )
    runner = Runner(
        impl, step, setup_s, persistent, count_params(model), flops, case, forward, info
    )
    return runner, model


def _torch_forward(fn: Callable[[Tensor], Tensor], case: Case) -> Callable[[Tensor], Tensor]:
    """The row's forward (its memory format, autocast and compiled graph) on a CPU batch."""

    def forward(x: Tensor) -> Tensor:
        x = x.to(case.device).contiguous(memory_format=_memory_format(case))
        with torch.inference_mode(), _amp(case):
            return fn(x).float()

    return forward


def _export_step(
    model: nn.Module, case: Case, inputs: Inputs, data: Any
) -> tuple[Step, Callable[[Tensor], Any], dict[str, Any]]:
    """The file ``export_onnx`` writes for this model at the row's dtype, in the row's runtime
    (see :mod:`resnet_pl.bench.deploy`)."""
    from resnet_pl.bench import deploy

    if data is None:
        data = deploy.EvalData(None, None, None, "no real images")
    exported = deploy.exported_file(model, case, data)
    threads = torch.get_num_threads()
    runtime = case.backend.partition(":")[2]
    if runtime == "openvino":
        run, info = deploy.openvino_runner(exported.path, inputs.batch_size, threads)
    else:
        run, info = deploy.ort_runner(exported.path, threads)
    info.update(
        export_s=exported.export_s,
        model_file=f"{exported.dtype} ONNX from resnet_pl.deploy.export_onnx "
        f"({exported.exporter} exporter{', ' + exported.converter if exported.converter else ''})",
        model_file_mb=exported.file_mb,
    )

    def step(x: Tensor, y: Tensor) -> None:
        run(x)

    return step, run, info


def timed_repeat(
    runner: Runner, case: Case, inputs: Inputs, steps: int
) -> tuple[float, list[float], int | None]:
    """Run ``steps`` steps; return (wall seconds, per-step seconds, peak bytes or None)."""
    cuda = case.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        start_alloc = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        t0 = time.perf_counter()
        for start, end in events:
            start.record()
            runner.step(*inputs.next())
            end.record()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        step_s = [s.elapsed_time(e) / 1e3 for s, e in events]
        rise = torch.cuda.max_memory_allocated() - start_alloc
        peak = None if runner.persistent_bytes is None else runner.persistent_bytes + rise
        return wall, step_s, peak
    step_s = []
    t0 = time.perf_counter()
    for _ in range(steps):
        ts = time.perf_counter()
        runner.step(*inputs.next())
        step_s.append(time.perf_counter() - ts)
    wall = time.perf_counter() - t0
    return wall, step_s, peak_rss_bytes()


def current_rss_bytes() -> int | None:
    """Resident set of this process now (``VmRSS``), or None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            match = re.search(r"VmRSS:\s+(\d+)\s+kB", f.read())
        return int(match.group(1)) * 1024 if match else None
    except OSError:
        return None


def measure_group(
    cases: list[Case],
    settings: Settings,
    eval_cases: set[tuple[Any, ...]] | None = None,
    failures: list[tuple[Case, str, str]] | None = None,
) -> list[Measurement]:
    """Time every case of one group (same arch, mode, batch and input size) together: one
    set of weights, each case's runner set up and warmed up in turn, then ``repeats`` rounds in
    which every runner does one timed repeat, the order reversed every other round (ABBA ...),
    so that the eager fp32 reference and every deployment path share the machine's state.

    For cases whose :meth:`Case.path_key` is in ``eval_cases``, the row also gets accuracy
    columns (top-1 on the arch's real images, agreement with the group's eager fp32 row), from
    the row's own forward at its own batch size (see :mod:`resnet_pl.bench.deploy`). On CPU each row
    also records ``peak_mem_rise_mb``: how far the resident set rose above its level at the start
    of the row's repeats (the row's own activations and workspace, without the other rows'
    weights that the process-wide peak includes).

    With a ``failures`` list, a case whose set-up raises is appended to it as
    ``(case, impl, message)`` and the others are still measured; without one, it raises.
    """
    from resnet_pl.bench import deploy

    first = cases[0]
    steps = first.steps or settings.steps
    repeats = first.repeats or settings.repeats
    warmup = first.warmup if first.warmup is not None else settings.warmup
    settings = dataclasses.replace(settings, steps=steps, repeats=repeats, warmup=warmup)
    torch.manual_seed(settings.seed)
    num_classes = 10 if first.family == "small" else 1000
    n_eval = first.eval_samples if first.eval_samples is not None else settings.eval_samples
    exports = any(c.backend.startswith("export:") for c in cases)
    data = (
        deploy.eval_data(first.arch, n_eval, settings.calibration_samples)
        if n_eval or exports
        else None
    )
    cuda = first.device == "cuda"
    rss_resettable = (not cuda) and reset_peak_rss()
    runners: list[Runner] = []
    inputs: dict[int, Inputs] = {}
    with tempfile.TemporaryDirectory(prefix="resnet-pl-bench-") as tmpdir:
        reference = build_model(OURS, first, None).eval()
        for case in cases:
            for impl in (OURS, TWIN) if case.has_twin else (OURS,):
                inp = Inputs(case, case.batch_size, num_classes, settings)
                try:
                    runner, _ = make_runner(
                        impl, case, inp, reference, settings, Path(tmpdir), data
                    )
                except Exception as e:  # one broken path must not lose the group's others
                    if failures is None:
                        raise
                    first_line = (str(e).strip().splitlines() or [""])[0]
                    failures.append((case, impl, f"{type(e).__name__}: {first_line}"[:500]))
                    continue
                inputs[id(runner)] = inp
                runners.append(runner)
        results: dict[int, dict[str, Any]] = {
            id(r): {"wall": [], "steps": [], "peak": None, "rise": None} for r in runners
        }
        for rep in range(settings.repeats):
            order = runners if rep % 2 == 0 else runners[::-1]
            for runner in order:
                assert runner.case is not None
                if rss_resettable:
                    reset_peak_rss()
                start_rss = current_rss_bytes() if not cuda else None
                wall, step_s, peak = timed_repeat(
                    runner, runner.case, inputs[id(runner)], settings.steps
                )
                res = results[id(runner)]
                res["wall"].append(wall)
                res["steps"].extend(step_s)
                if peak is not None:
                    res["peak"] = max(res["peak"] or 0, peak)
                    if start_rss is not None and rss_resettable:
                        res["rise"] = max(res["rise"] or 0, peak - start_rss)
        accuracy = _group_accuracy(runners, data, eval_cases or set())
    mem_kind = "cuda_allocated" if cuda else (
        "process_rss_peak" if rss_resettable else "process_rss_lifetime_peak"
    )  # fmt: skip
    out = []
    for r in runners:
        assert r.case is not None
        res = results[id(r)]
        extra = {"setup_s": r.setup_s, "params": r.params, **r.info, **accuracy.get(id(r), {})}
        if res["rise"] is not None:
            extra["peak_mem_rise_mb"] = res["rise"] / 2**20
        if data is not None and data.stand_in:
            extra.setdefault("eval_data", data.description)
        out.append(
            Measurement(
                case=r.case.as_dict(),
                impl=r.impl,
                batch_size=r.case.batch_size,
                repeat_wall_s=res["wall"],
                steps_per_repeat=settings.steps,
                step_s=res["steps"],
                flops_per_image=r.flops_per_image,
                peak_mem_bytes=res["peak"],
                peak_mem_kind=mem_kind if res["peak"] is not None else None,
                extra=extra,
            )
        )
    return out


def _group_accuracy(
    runners: list[Runner], data: Any, eval_cases: set[tuple[Any, ...]]
) -> dict[int, dict[str, Any]]:
    """Accuracy fields per runner (by id) for the runners whose path is in ``eval_cases``; the
    reference is the group's resnet_pl eager fp32 contiguous runner."""
    from resnet_pl.bench import deploy

    if data is None or data.x is None:
        return {}
    todo = [
        r
        for r in runners
        if r.forward is not None and r.case is not None and r.case.path_key() in eval_cases
    ]
    if not todo:
        return {}
    ref_runner = next(
        (
            r
            for r in runners
            if r.impl == OURS
            and r.case is not None
            and (r.case.backend, r.case.precision, r.case.memory_format)
            == ("eager", "fp32", "contiguous")
        ),
        None,
    )
    logits: dict[int, np.ndarray] = {}
    for r in ([ref_runner] if ref_runner is not None else []) + todo:
        if r.forward is not None and r.case is not None and id(r) not in logits:
            logits[id(r)] = deploy.batched_predict(r.forward, data.x, r.case.batch_size)
    reference = logits.get(id(ref_runner)) if ref_runner is not None else None
    return {id(r): deploy.accuracy_fields(logits[id(r)], reference, data) for r in todo}


def measure_case(case: Case, settings: Settings, batch_size: int) -> list[Measurement]:
    """Time ours (and torchvision's twin) on ``case`` at ``batch_size``: sequential set-up and
    warm-up, then ``repeats`` timed repeats alternating between the two in ABBA order."""
    torch.manual_seed(settings.seed)
    num_classes = 10 if case.family == "small" else 1000
    inputs = Inputs(case, batch_size, num_classes, settings)
    runners: list[Runner] = []
    models: list[nn.Module] = []
    cuda = case.device == "cuda"
    rss_resettable = (not cuda) and reset_peak_rss()
    try:
        with tempfile.TemporaryDirectory(prefix="resnet-pl-bench-") as tmpdir, tf32_mode(case):
            ours: nn.Module | None = None
            for impl in (OURS, TWIN) if case.has_twin else (OURS,):
                runner, model = make_runner(impl, case, inputs, ours, settings, Path(tmpdir))
                ours = ours or model
                runners.append(runner)
                models.append(model)
            results: dict[str, dict[str, Any]] = {
                r.impl: {"wall": [], "steps": [], "peak": None} for r in runners
            }
            for rep in range(settings.repeats):
                order = runners if rep % 2 == 0 else runners[::-1]
                for runner in order:
                    if rss_resettable:
                        reset_peak_rss()
                    wall, step_s, peak = timed_repeat(runner, case, inputs, settings.steps)
                    res = results[runner.impl]
                    res["wall"].append(wall)
                    res["steps"].extend(step_s)
                    if peak is not None:
                        res["peak"] = max(res["peak"] or 0, peak)
    finally:
        inputs.close()
    if cuda:
        mem_kind = None if case.backend.startswith("onnxruntime") else "cuda_allocated"
    else:
        mem_kind = "process_rss_peak" if rss_resettable else "process_rss_lifetime_peak"
    out = []
    for r in runners:
        res = results[r.impl]
        out.append(
            Measurement(
                case=case.as_dict(),
                impl=r.impl,
                batch_size=batch_size,
                repeat_wall_s=res["wall"],
                steps_per_repeat=settings.steps,
                step_s=res["steps"],
                flops_per_image=r.flops_per_image,
                peak_mem_bytes=res["peak"] if mem_kind else None,
                peak_mem_kind=mem_kind,
                extra={"setup_s": r.setup_s, "params": r.params},
            )
        )
    return out


def free_memory(device: str) -> None:
    """Drop what a finished case left behind (compiled graphs too), so cases do not interact."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    with contextlib.suppress(Exception):
        torch._dynamo.reset()


def measure_with_oom_retry(case: Case, settings: Settings) -> tuple[list[Measurement], int]:
    """:func:`measure_case`, halving the batch on CUDA out-of-memory until it fits.
    Returns the measurements and the number of halvings."""
    batch = case.batch_size
    retries = 0
    while True:
        oom = False
        try:
            return measure_case(case, settings, batch), retries
        except torch.cuda.OutOfMemoryError:
            oom = True  # handled outside the except block, so the traceback frees the tensors
        if oom:
            free_memory(case.device)
            if batch == 1:
                raise OutOfMemory("CUDA out of memory even at batch size 1")
            batch //= 2
            retries += 1
