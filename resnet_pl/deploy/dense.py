"""Segmentation and detection checkpoints outside training: rebuild, predict files, export.

- :func:`load_dense_checkpoint`: a :class:`~resnet_pl.lightning.segmentation.SegmentationTask`
  or :class:`~resnet_pl.lightning.detection.DetectionTask` checkpoint, read by the one
  checkpoint reader (``weights_only=True``) and rebuilt from its hyperparameters, eval mode.
- :func:`predict_files`: image files through the one decoder
  (:func:`resnet_pl.data.decode.load_image`) and the training normalisation
  (:func:`resnet_pl.data.transforms.normalize`), at their own size (no resize: masks and boxes
  come back in the file's pixels).
- :func:`write_predictions`: index-mask PNGs (palette PNG, the class number is the pixel value),
  a JSON of boxes, and optional overlay images.
- :class:`SegmentationLogits`: the module ``resnet-pl export`` exports for a segmentation
  checkpoint (one output, ``logits`` ``(N, num_classes, H, W)``), verified like every export.
  Detection checkpoints are refused with one line (:data:`DETECTION_EXPORT_REFUSAL`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from resnet_pl.data.decode import load_image
from resnet_pl.data.transforms import normalize
from resnet_pl.errors import ResNetPLError
from resnet_pl.hub.checkpoint import MODEL_PREFIX, CheckpointError, dense_task_of, read_checkpoint

DETECTION_EXPORT_REFUSAL = (
    "detection checkpoints are not exported to ONNX: torchvision's detectors resize, run NMS "
    "and return a variable number of boxes per image in Python control flow, which resnet-pl "
    "cannot verify against PyTorch the way every export is verified; predict with `resnet-pl "
    "detect --model CHECKPOINT` instead"
)


class DenseExportRefused(ResNetPLError, ValueError):
    """A checkpoint ``resnet-pl export`` will not export; the message says why."""


@dataclass
class DenseModel:
    """An eval-mode dense model and what feeding and labelling it needs."""

    task: str  # "segmentation" | "detection"
    model: nn.Module
    hparams: dict[str, Any]
    path: Path

    @property
    def in_chans(self) -> int:
        return int(self.hparams.get("in_chans", 1))

    @property
    def class_names(self) -> list[str]:
        names = self.hparams.get("class_names")
        n = int(self.hparams["num_classes"])
        return list(names) if names else [str(i) for i in range(n)]

    @property
    def mean(self) -> list[float]:
        return list(self.hparams.get("mean") or [0.0] * self.in_chans)

    @property
    def std(self) -> list[float]:
        return list(self.hparams.get("std") or [1.0] * self.in_chans)


def load_dense_checkpoint(path: str | Path) -> DenseModel:
    """Rebuild a segmentation or detection checkpoint's network (strictly loaded, eval mode).

    Raises:
        CheckpointError: unreadable, untrusted, or not a dense task's checkpoint.
    """
    ck = read_checkpoint(path)
    # The reader flattens mapping-valued hyperparameters (the classifier's groups); the dense
    # tasks' own mappings (``detector_kwargs``, ``model_kwargs``) are read as saved.
    raw = torch.load(str(ck.path), map_location="cpu", weights_only=True, mmap=True)
    hp = dict(raw.get("hyper_parameters") or ck.hparams)
    task = dense_task_of(hp)
    if task is None:
        raise CheckpointError(
            f"{ck.path} is a classifier checkpoint, not a segmentation/detection one; use "
            "resnet-pl classify"
        )
    from resnet_pl import backbones

    build = (
        backbones.segmentation_from_hparams
        if task == "segmentation"
        else backbones.detection_from_hparams
    )
    try:
        model: nn.Module = build(hp)
    except (TypeError, ValueError, KeyError) as err:
        if isinstance(err, ResNetPLError):
            raise
        raise CheckpointError(
            f"{ck.path}: cannot rebuild the {task} model from its hyperparameters ({err})"
        ) from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ck.state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{ck.path}: weights do not match the {task} model its hyperparameters describe: "
            f"{str(err).splitlines()[0]}"
        ) from None
    return DenseModel(task, model.eval(), hp, ck.path)


def _pixels(path: str | Path, in_chans: int, max_pixels: int | None) -> Tensor:
    """uint8 ``(C, H, W)`` through the one decoder."""
    array = np.array(load_image(path, in_chans, max_pixels))
    t = torch.from_numpy(array)
    return t.permute(2, 0, 1).contiguous() if t.ndim == 3 else t[None]


def predict_files(
    dense: DenseModel, files: Sequence[str | Path], max_pixels: int | None = None
) -> list[dict[str, Any]]:
    """One result per file, in order: segmentation ``{"file", "mask" (H, W) uint8,
    "confidence" mean max-probability}``, detection ``{"file", "boxes" [[x0, y0, x1, y1]],
    "scores", "labels" (1-based category), "names"}``. Raises
    :class:`~resnet_pl.data.errors.ImageLoadError` (naming the problem) for a bad file."""
    results: list[dict[str, Any]] = []
    with torch.no_grad():
        for file in files:
            pixels = _pixels(file, dense.in_chans, max_pixels)
            if dense.task == "segmentation":
                x = normalize(pixels, dense.mean, dense.std)[None]
                probs = dense.model(x)["out"].softmax(1)[0]
                conf, mask = probs.max(0)
                results.append({"file": str(file), "mask": mask.to(torch.uint8).numpy(),
                                "confidence": round(float(conf.mean()), 4)})  # fmt: skip
            else:
                det = dense.model([pixels.float() / 255.0])[0]
                names = dense.class_names
                labels = [int(v) for v in det["labels"].tolist()]
                results.append({
                    "file": str(file),
                    "boxes": [[round(float(v), 2) for v in b] for b in det["boxes"].tolist()],
                    "scores": [round(float(s), 4) for s in det["scores"].tolist()],
                    "labels": labels,
                    "names": [names[i - 1] if 0 < i <= len(names) else str(i) for i in labels],
                })  # fmt: skip
    return results


def write_predictions(
    dense: DenseModel,
    results: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    overlay: bool = False,
    score_threshold: float = 0.5,
) -> list[Path]:
    """Write ``masks/<stem>.png`` (segmentation; palette PNG whose pixel values are the
    classes) or ``detections.json`` (detection, every box with its score), plus, with
    ``overlay``, ``overlays/<stem>.png`` (the image with the mask blended in, or boxes of score
    >= ``score_threshold`` drawn). Returns the files written."""
    from PIL import Image, ImageDraw

    from resnet_pl.data.scenes import voc_palette

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    palette = voc_palette()
    colours = np.array(palette, np.uint8).reshape(-1, 3)
    stems = _unique_stems([r["file"] for r in results])
    if dense.task == "detection":
        payload = {
            "model": str(dense.path), "class_names": dense.class_names,
            "box_format": "xyxy (pixels, edges)",
            "images": [{k: v for k, v in r.items()} for r in results],
        }  # fmt: skip
        path = out / "detections.json"
        path.write_text(json.dumps(payload, indent=1) + "\n")
        written.append(path)
    for stem, r in zip(stems, results, strict=True):
        if dense.task == "segmentation":
            mask = Image.fromarray(np.ascontiguousarray(r["mask"]), "P")
            mask.putpalette(palette)
            path = out / "masks" / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            mask.save(path)
            written.append(path)
        if overlay:
            base = load_image(r["file"], 3)
            if dense.task == "segmentation":
                colour = Image.fromarray(colours[np.asarray(r["mask"])], "RGB")
                keep = Image.fromarray(((np.asarray(r["mask"]) > 0) * 128).astype(np.uint8), "L")
                base.paste(colour, (0, 0), keep)
            else:
                draw = ImageDraw.Draw(base)
                for box, score, label in zip(r["boxes"], r["scores"], r["labels"], strict=True):
                    if score >= score_threshold:
                        colour_tuple = tuple(int(c) for c in colours[label % 255 or 1])
                        draw.rectangle(box, outline=colour_tuple)
            path = out / "overlays" / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            base.save(path)
            written.append(path)
    return written


def _unique_stems(files: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for f in files:
        stem = Path(f).stem
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        stems.append(stem if count == 0 else f"{stem}_{count}")
    return stems


class SegmentationLogits(nn.Module):
    """A segmentation model as ``resnet-pl export`` exports it: input the normalised image
    ``(N, C, H, W)``, one output ``logits`` ``(N, num_classes, H, W)`` (returned as a
    one-element list, so the export's per-output parity check applies to it)."""

    def __init__(self, dense: DenseModel, input_size: Sequence[int] = (1, 64, 64)) -> None:
        super().__init__()
        self.net = dense.model
        self.in_chans = dense.in_chans
        n = int(dense.hparams["num_classes"])
        self.feature_info = [{"module": "logits", "num_chs": n, "reduction": 1}]
        self.pretrained_cfg = {
            "architecture": f"{dense.hparams.get('head', 'deeplabv3')}_{dense.hparams['arch']}",
            "in_chans": dense.in_chans,
            "num_classes": n,
            "class_names": dense.class_names,
            "mean": tuple(dense.mean),
            "std": tuple(dense.std),
            "input_size": tuple(int(v) for v in input_size),
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "source_weights": dense.path.name,
        }

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.net(x)["out"]]


def export_dense_source(path: str | Path, input_size: Sequence[int] | None) -> SegmentationLogits:
    """The module to export for a dense checkpoint, or :class:`DenseExportRefused`."""
    dense = load_dense_checkpoint(path)
    if dense.task == "detection":
        raise DenseExportRefused(DETECTION_EXPORT_REFUSAL)
    if input_size is None:
        input_size = dense.hparams.get("input_size") or (dense.in_chans, 64, 64)
    size = tuple(int(v) for v in input_size)
    return SegmentationLogits(dense, size[-3:])


def is_dense_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a segmentation/detection checkpoint (False when unreadable: the
    classifier path then reports the problem)."""
    if not str(path).endswith((".ckpt", ".pt", ".pth")) or not Path(path).is_file():
        return False
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    hp = ck.get("hyper_parameters") if isinstance(ck, dict) else None
    return isinstance(hp, Mapping) and dense_task_of(hp) is not None


__all__ = [
    "DETECTION_EXPORT_REFUSAL",
    "MODEL_PREFIX",
    "DenseExportRefused",
    "DenseModel",
    "SegmentationLogits",
    "export_dense_source",
    "is_dense_checkpoint",
    "load_dense_checkpoint",
    "predict_files",
    "write_predictions",
]
