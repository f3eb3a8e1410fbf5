"""Inference behind one interface for both backends: :class:`OnnxClassifier` (ONNX Runtime,
configured from the metadata inside the ``.onnx`` file) and :class:`TorchClassifier` (PyTorch,
from a registry name, a checkpoint or a module).

Both share the preprocessing (:func:`resnet_pl.data.transforms.eval_transform`) and the
post-processing (softmax, top-k), so they give the same labels for the same files.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from resnet_pl.data import (
    ImageLoadError,
    convert_mode,
    eval_transform,
    load_image,
    resolve_data_cfg,
)
from resnet_pl.deploy.metadata import base_metadata
from resnet_pl.deploy.source import ModelSource, load_model
from resnet_pl.deploy.untrusted import (
    OnnxMetadataError,
    check_logits,
    check_signature,
    read_onnx_metadata,
    run_error,
)
from resnet_pl.models.tta import with_tta

Backend = Literal["auto", "torch", "onnx"]
Runtime = Literal["onnxruntime", "openvino"]
RUNTIMES = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, most likely first."""

    indices: list[int]
    labels: list[str]
    probs: list[float]

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def index(self) -> int:
        return self.indices[0]

    @property
    def prob(self) -> float:
        return self.probs[0]


@dataclass(frozen=True)
class FileResult:
    """The outcome for one file: a prediction, or a one-line error."""

    path: Path
    prediction: Prediction | None
    error: str | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for large logits)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


class Classifier(ABC):
    """Preprocess images with the model's own config, run a backend, return top-k."""

    backend: str

    def __init__(self, cfg: Mapping[str, Any], class_names: Sequence[str] | None) -> None:
        self.cfg = resolve_data_cfg(cfg)
        self.in_chans = int(self.cfg["input_size"][0])
        self.transform = eval_transform(self.cfg)
        self.class_names = list(class_names) if class_names else None

    @abstractmethod
    def logits(self, batch: Tensor) -> np.ndarray:
        """Raw outputs ``(N, num_classes)`` for a preprocessed float batch."""

    def preprocess(self, images: Sequence[Image.Image]) -> Tensor:
        """A float batch from PIL images already in the model's mode (see ``load_image``)."""
        return torch.stack([self.transform(im) for im in images])

    def label_of(self, index: int) -> str:
        names = self.class_names
        return names[index] if names is not None and index < len(names) else str(index)

    def predict(self, images: Sequence[Image.Image], top_k: int = 5) -> list[Prediction]:
        """Top-k predictions for PIL images (any mode: converted to the model's)."""
        batch = self.preprocess([convert_mode(im, self.in_chans) for im in images])
        return self._top_k(self.logits(batch), top_k)

    def _top_k(self, logits: np.ndarray, top_k: int) -> list[Prediction]:
        probs = softmax(logits)
        k = max(1, min(top_k, probs.shape[1]))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            Prediction(
                [int(i) for i in row],
                [self.label_of(int(i)) for i in row],
                [float(p[i]) for i in row],
            )
            for row, p in zip(order, probs, strict=True)
        ]

    def classify_files(
        self,
        paths: Sequence[Path],
        *,
        top_k: int = 5,
        batch_size: int = 32,
        max_pixels: int | None = None,
        on_file: Callable[[FileResult], None] | None = None,
    ) -> Iterator[FileResult]:
        """Classify files in batches, yielding one result per file in input order. A file
        that cannot be read becomes a result with ``error`` set; the others still run."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            loaded: list[tuple[int, Image.Image]] = []
            errors: dict[int, str] = {}
            for i, path in enumerate(chunk):
                try:
                    loaded.append((i, load_image(path, self.in_chans, max_pixels)))
                except ImageLoadError as e:
                    errors[i] = str(e)
            preds: dict[int, Prediction] = {}
            if loaded:
                batch = self.preprocess([im for _, im in loaded])
                for (i, _), pred in zip(
                    loaded, self._top_k(self.logits(batch), top_k), strict=True
                ):
                    preds[i] = pred
            for i, path in enumerate(chunk):
                result = FileResult(path, preds.get(i), errors.get(i))
                if on_file is not None:
                    on_file(result)
                yield result


class OnnxClassifier(Classifier):
    """An exported ``.onnx`` file in ONNX Runtime, configured from its own metadata (input
    size, mean/std, interpolation, crop, class names), so the file is all a deployment needs.

    Args:
        path: the ``.onnx`` file.
        device: ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu).
        threads: intra-op threads (default: ONNX Runtime's choice).
    """

    backend = "onnx"

    def __init__(
        self, path: str | Path, *, device: str = "cpu", threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    "device='cuda' needs onnxruntime-gpu (CUDAExecutionProvider is not "
                    "available); use --device cpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        elif device != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file {self.path} does not exist")
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"{self.path} is not a loadable ONNX model ({first}); re-export it with "
                "resnet-pl export"
            ) from None
        # Untrusted: every metadata value is checked and bounded before it sizes anything.
        meta = read_onnx_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise OnnxMetadataError(
                f"{self.path}: the graph has {len(inputs)} inputs and {len(outputs)} outputs; an "
                "image classifier has one input and an output; re-export it with resnet-pl export"
            )
        inp = inputs[0]
        self.input_name = inp.name
        self._configure(meta, list(inp.shape), inp.type, list(outputs[0].shape))

    def _configure(
        self,
        meta: dict[str, Any],
        dims: list[Any],
        input_type: str | None = None,
        output_dims: list[Any] | None = None,
    ) -> None:
        """Preprocessing from the file's metadata (or, without it, its static input shape),
        checked against the graph's input and output."""
        self.metadata = meta
        if meta.get("features_only"):
            raise ValueError(
                f"{self.path} is a features_only backbone (outputs "
                f"{', '.join(meta.get('output_names') or [])}), not a classifier; classify "
                "needs a model exported with its classifier head"
            )
        check_signature(self.path, meta, dims, input_type, output_dims)
        self.fixed_batch = dims[0] if isinstance(dims[0], int) else None
        cfg = dict(meta)
        if cfg.get("input_size") is None:
            if len(dims) != 4 or not all(isinstance(d, int) for d in dims[1:]):
                raise ValueError(
                    f"{self.path} has no resnet-pl metadata and a non-static input {dims}; "
                    "export it with resnet_pl.deploy.export_onnx"
                )
            cfg["input_size"] = dims[1:]
        Classifier.__init__(self, cfg, meta.get("class_names"))

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run(None, {self.input_name: x})[0]
        except Exception as err:  # onnxruntime's own types (Fail, InvalidArgument ...)
            raise run_error(self.path, err) from None
        return check_logits(self.path, out, len(x))

    def logits(self, batch: Tensor) -> np.ndarray:
        x = batch.numpy().astype(np.float32, copy=False)
        if self.fixed_batch is None:
            return self._run(x)
        # A static batch axis: run full chunks, zero-padding the last one.
        n, b = len(x), self.fixed_batch
        outs = []
        for i in range(0, n, b):
            chunk = x[i : i + b]
            pad = b - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            outs.append(self._run(chunk)[: b - pad])
        return np.concatenate(outs)


class OpenVinoClassifier(OnnxClassifier):
    """The same ``.onnx`` file in OpenVINO's CPU plugin (``pip install 'resnet-pl[openvino]'``),
    configured from the same metadata, with the same preprocessing and post-processing.

    OpenVINO compiles for the CPU it finds: on CPUs with AVX512-BF16 or AMX it runs fp32
    files in bf16 unless told otherwise (``inference_precision="f32"``); see
    :attr:`precision_hint`.

    Args:
        path: the ``.onnx`` file.
        device: ``"cpu"`` (OpenVINO's ``CPU`` plugin).
        threads: inference threads (default: OpenVINO's choice).
        inference_precision: ``None`` (OpenVINO's default for this CPU), ``"f32"`` or
            ``"bf16"``.
    """

    backend = "openvino"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        inference_precision: str | None = None,
    ) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ImportError(
                "--runtime openvino needs OpenVINO: pip install 'resnet-pl[openvino]'"
            ) from None
        if device != "cpu":
            raise ValueError(f"the openvino runtime runs on the CPU here; got device={device!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file {self.path} does not exist")
        core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if inference_precision:
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, "CPU", config)
            meta_props = _onnx_props(self.path)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"{self.path} is not an ONNX model OpenVINO can load ({first}); re-export it "
                "with resnet-pl export"
            ) from None
        self.request = self.compiled.create_infer_request()
        self.precision_hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        meta = read_onnx_metadata(meta_props, self.path)  # untrusted: checked and bounded
        if len(model.inputs) != 1 or not model.outputs:
            raise OnnxMetadataError(
                f"{self.path}: the graph has {len(model.inputs)} inputs and "
                f"{len(model.outputs)} outputs; an image classifier has one input and an output"
            )

        def dims_of(port: Any) -> list[Any] | None:
            shape = port.get_partial_shape()
            if shape.rank.is_dynamic:
                return None
            return [d.get_length() if d.is_static else None for d in shape]

        in_dims = dims_of(model.inputs[0]) or [None] * 4
        self._configure(meta, in_dims, None, dims_of(model.outputs[0]))

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            self.request.infer({0: x})
            out = np.array(self.request.get_output_tensor(0).data)
        except Exception as err:  # OpenVINO's own RuntimeError subclasses
            raise run_error(self.path, err) from None
        return check_logits(self.path, out, len(x))


def _onnx_props(path: Path) -> dict[str, str]:
    """The raw ``metadata_props`` of an ONNX file (decoded and checked by
    :func:`~resnet_pl.deploy.untrusted.read_onnx_metadata`)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


class TorchClassifier(Classifier):
    """A PyTorch model (registry name, checkpoint or module) behind the same interface."""

    backend = "torch"

    def __init__(
        self, source: ModelSource, *, device: str = "cpu", pretrained: bool | None = None
    ) -> None:
        loaded = load_model(source, pretrained=pretrained)
        self.warnings = loaded.warnings
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA device is available; use --device cpu")
        # The TTA views a checkpoint was evaluated with (resnet_pl.models.tta).
        self.model = with_tta(loaded.model, loaded.cfg.get("tta")).to(self.device).eval()
        self.metadata = base_metadata(loaded.cfg)
        super().__init__(loaded.cfg, self.metadata.get("class_names"))

    def logits(self, batch: Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.model(batch.to(self.device)).float().cpu().numpy()


def open_classifier(
    model: str | Path,
    *,
    backend: Backend = "auto",
    device: str = "cpu",
    threads: int | None = None,
    pretrained: bool | None = None,
    runtime: Runtime = "onnxruntime",
) -> Classifier:
    """A classifier for ``model``: an ``.onnx`` file (in ONNX Runtime, or OpenVINO with
    ``runtime="openvino"``), or a registry name / checkpoint (PyTorch; with ``backend="onnx"``
    it is exported to ONNX first, in memory)."""
    is_onnx = str(model).endswith(".onnx")
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'onnx', got {backend!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be 'onnxruntime' or 'openvino', got {runtime!r}")
    if is_onnx and backend == "torch":
        raise ValueError("an .onnx file runs on ONNX Runtime; use --backend onnx or auto")
    if runtime == "openvino" and not is_onnx:
        raise ValueError(
            "--runtime openvino runs .onnx files; export one first: resnet-pl export "
            f"{model} -o model.onnx"
        )
    if is_onnx:
        if runtime == "openvino":
            return OpenVinoClassifier(model, device=device, threads=threads)
        return OnnxClassifier(model, device=device, threads=threads)
    if backend in ("auto", "torch"):
        return TorchClassifier(model, device=device, pretrained=pretrained)
    from resnet_pl.deploy.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="resnet_pl_classify_") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, pretrained=pretrained, verify=False)
        clf = OnnxClassifier(path, device=device, threads=threads)  # the session holds it all
    return clf
