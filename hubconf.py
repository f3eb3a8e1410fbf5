"""torch.hub entry points: one per resnet-pl architecture, with verified pretrained weights.

    import torch
    model = torch.hub.load("resnet-pl/resnet-pl", "resnet20", pretrained=True, trust_repo=True)
    model = torch.hub.load("/path/to/clone", "resnet20", source="local", pretrained=True)

``torch.hub.list(...)`` shows every architecture; ``torch.hub.help(..., "resnet20")`` shows its
weights, their measured accuracy and preprocessing. Importing this file imports only torch,
torchvision and the light part of resnet_pl (no Lightning, ONNX or huggingface_hub); everything
not meant as an entry point starts with ``_``.
"""

dependencies = ["torch", "torchvision", "safetensors"]

from collections.abc import Callable as _Callable  # noqa: E402
from typing import Any as _Any  # noqa: E402

import resnet_pl as _resnet_pl  # noqa: E402
from resnet_pl.hub import weights as _weights  # noqa: E402
from resnet_pl.models.registry import get_default_cfg as _get_default_cfg  # noqa: E402

_GITHUB = "resnet-pl/resnet-pl"


def _describe_weights(arch: str) -> list[str]:
    """One paragraph per registered weights of ``arch``: accuracy, preprocessing, source."""
    lines: list[str] = []
    for entry in _weights.iter_weights(arch):
        cfg = entry.pretrained_cfg
        metrics = cfg.get("metrics") or {}
        default = " (default)" if _weights.default_tag(arch) == entry.tag else ""
        if "top1" in metrics:
            acc = (
                f"{cfg.get('dataset')} {metrics.get('split', 'test')} top-1 "
                f"{metrics['top1']:.2f}%, top-5 {metrics.get('top5', float('nan')):.2f}% "
                f"({metrics.get('n', '?')} images, {metrics.get('source') or 'measured'})"
            )
        else:
            acc = f"{cfg.get('dataset')}: no recorded metrics"
        where = (
            "file shipped with the package"
            if entry.shipped_path
            else f"downloaded on first use from {entry.url or entry.hf_hub_id}"
        )
        try:
            preprocessing = (
                f"input {tuple(cfg['input_size'])}, mean {tuple(cfg['mean'])}, std "
                f"{tuple(cfg['std'])}, {cfg['interpolation']} resize, crop_pct {cfg['crop_pct']}"
            )
        except (TypeError, KeyError):  # a malformed third-party record must not break import
            preprocessing = "preprocessing not recorded"
        lines += [
            f"    {entry.tag}{default}: {acc}.",
            f"        {preprocessing}; {cfg.get('num_classes')} classes; {where}.",
        ]
    return lines


def _docstring(arch: str) -> str:
    cfg = _get_default_cfg(arch)
    weights = _describe_weights(arch)
    default = _weights.default_tag(arch)
    if default:
        args = [
            f"    pretrained: load the default weights ({default!r}), checked against their "
            "sha256 before use.",
            f"    weights: a weights tag to load instead (implies pretrained), e.g. {default!r}.",
        ]
        example = [
            f'    model = torch.hub.load("{_GITHUB}", "{arch}", pretrained=True, trust_repo=True)',
            "    # from a local clone, offline:",
            f'    model = torch.hub.load("/path/to/resnet-pl", "{arch}", source="local", '
            "pretrained=True)",
        ]
    else:
        args = [
            "    pretrained: no weights are registered for this architecture yet, so True "
            "raises UnknownWeightsError (train it: resnet-pl fit).",
            "    weights: a weights tag to load (implies pretrained); none registered.",
        ]
        example = [f'    model = torch.hub.load("{_GITHUB}", "{arch}", trust_repo=True)']
    lines = [
        f"{arch}: {cfg.get('family')}-family residual network ({cfg.get('paper')}); default "
        f"input {tuple(cfg['input_size'])}.",
        "",
        "Args:",
        *args,
        "    num_classes: classifier size; weights of another size get a re-initialised head "
        "(with a warning).",
        "    in_chans: input channels; weights of another count get an adapted stem (with a "
        "warning).",
        "    **kwargs: other ResNet options (drop_path_rate, features_only, out_indices, ...).",
        "",
        "Weights:",
        *(weights or ["    none registered yet."]),
        "",
        "Preprocessing: resnet_pl.transforms(model.pretrained_cfg) builds the evaluation "
        "transform (resize, centre crop, scale to [0, 1], normalise) for PIL images or tensors.",
        "",
        "Example:",
        "    import torch",
        *example,
    ]
    return "\n".join(lines) + "\n"


def _make_entry(arch: str) -> _Callable[..., _Any]:
    def entry(
        pretrained: bool = False,
        weights: str | None = None,
        num_classes: int | None = None,
        in_chans: int | None = None,
        **kwargs: _Any,
    ) -> _Any:
        name = arch
        if weights is not None:
            tag = weights[len(arch) + 1 :] if weights.startswith(arch + ".") else weights
            if not tag or "." in tag:
                raise ValueError(
                    f"weights must be a tag of {arch} (e.g. {_weights.default_tag(arch)!r}), "
                    f"got {weights!r}"
                )
            name, pretrained = f"{arch}.{tag}", True
        return _resnet_pl.create_model(
            name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs
        )

    entry.__name__ = entry.__qualname__ = arch
    entry.__doc__ = _docstring(arch)
    return entry


for _arch in _resnet_pl.list_models():
    globals()[_arch] = _make_entry(_arch)
