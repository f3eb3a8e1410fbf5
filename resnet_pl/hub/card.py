"""The model card of a weights folder or a shipped entry: its metadata header (library, licence,
task, tags, dataset, recorded accuracies as a ``model-index``) and its Markdown body (what the
weights are, how they were made and measured, how to load them). Used by
:mod:`resnet_pl.hub.hf` (folders) and by ``hub publish``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

GITHUB_REPO = "resnet-pl/resnet-pl"
CARD_TAGS = ["image-classification", "resnet", "pytorch", "resnet-pl", "safetensors"]


def card_data(config: Mapping[str, Any], *, weights_name: str | None = None) -> ModelCardData:
    """The model card's metadata header: library, licence, task, tags, dataset and the
    recorded accuracies as a ``model-index`` (what the Hub shows beside the card)."""
    cfg: Mapping[str, Any] = config.get("pretrained_cfg") or {}
    arch = str(config.get("architecture") or cfg.get("architecture"))
    dataset = str(cfg.get("dataset") or "unknown")
    metrics: Mapping[str, Any] = cfg.get("metrics") or {}
    license_id = str(cfg.get("license") or "unknown").split(" ")[0].lower()
    results = []
    split = str(metrics.get("split", "test"))
    plain = metrics.get("plain_forward")
    tta = f" (with {metrics['tta']} TTA)" if metrics.get("tta") else ""
    entries = [(metrics, "top1", f"top-1 accuracy{tta}"), (metrics, "top5", f"top-5 accuracy{tta}")]
    if isinstance(plain, Mapping):
        entries += [(plain, "top1", "top-1 accuracy (plain forward)"),
                    (plain, "top5", "top-5 accuracy (plain forward)")]  # fmt: skip
    for source, key, label in entries:
        if isinstance(source.get(key), int | float):
            results.append(
                EvalResult(
                    task_type="image-classification",
                    dataset_type=dataset,
                    dataset_name=dataset,
                    dataset_split=split,
                    metric_type="accuracy",
                    metric_name=label,
                    metric_value=float(source[key]),
                )
            )
    return ModelCardData(
        library_name="resnet-pl",
        license=license_id if license_id != "unknown" else "other",
        pipeline_tag="image-classification",
        tags=list(CARD_TAGS),
        datasets=[dataset],
        metrics=["accuracy"],
        model_name=weights_name or cfg.get("hf_hub_id") or arch,
        eval_results=results or None,
    )


def model_card(config: Mapping[str, Any], *, weights_name: str | None = None) -> ModelCard:
    """A :class:`huggingface_hub.ModelCard` for a folder or a shipped entry: the metadata of
    :func:`card_data` and the body of :func:`render_card_body`."""
    data = card_data(config, weights_name=weights_name)
    body = render_card_body(config, weights_name=weights_name)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def render_model_card(config: Mapping[str, Any], *, weights_name: str | None = None) -> str:
    """The model card as Markdown text (YAML header included)."""
    return str(model_card(config, weights_name=weights_name))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def render_card_body(config: Mapping[str, Any], *, weights_name: str | None = None) -> str:
    """The Markdown body of the model card (the metadata header is :func:`card_data`).

    ``weights_name`` (``arch.tag``) adds the ``create_model``/``torch.hub`` lines for registered
    weights; without it the usage shows ``from_pretrained``.
    """
    cfg: Mapping[str, Any] = config.get("pretrained_cfg") or {}
    arch = str(config.get("architecture") or cfg.get("architecture"))
    dataset = cfg.get("dataset") or "unknown"
    metrics: Mapping[str, Any] = cfg.get("metrics") or {}
    recipe = cfg.get("recipe")
    categories = cfg.get("categories") or []
    hf_id = cfg.get("hf_hub_id")
    lines = [
        f"# {weights_name or arch} ({dataset})",
        "",
        f"`{arch}` ({cfg.get('paper', 'a residual network')}) with the `{cfg.get('stem')}` stem, "
        f"trained for {cfg.get('num_classes')}-class classification on `{dataset}`. "
        f"{cfg.get('num_params', '?')} parameters, {_fmt(cfg.get('gflops', '?'))} GFLOPs per "
        f"{_fmt(cfg.get('input_size'))} image (2 FLOPs per multiply-accumulate).",
        "",
        "## Metrics",
        "",
    ]
    if "top1" in metrics:
        lines += ["| images | forward | top-1 (%) | top-5 (%) |", "|---|---|---:|---:|"]
        split = metrics.get("split", "test")
        tta = metrics.get("tta")
        plain = metrics.get("plain_forward")
        tables = [(metrics, f"with {tta} TTA" if tta else "plain")]
        if isinstance(plain, Mapping) and "top1" in plain:
            tables.append((plain, "plain"))
        for table, forward in tables:
            lines.append(
                f"| {dataset} {split}, all {table.get('n', '?')} | {forward} | "
                f"{_fmt(table['top1'])} | {_fmt(table.get('top5', '-'))} |"
            )
            for key, value in table.items():
                if key.startswith("first_") and isinstance(value, Mapping) and "top1" in value:
                    label = key.replace("first_", "first ")
                    lines.append(
                        f"| {dataset} {split}, {label} | {forward} | {_fmt(value['top1'])} | "
                        f"{_fmt(value.get('top5', '-'))} |"
                    )
        source = metrics.get("source") or (
            f"measured by resnet-pl in {metrics.get('precision', 'fp32')} with the "
            "preprocessing below; `resnet-pl hub verify` re-measures them"
        )
        lines += ["", f"Accuracies {source}."]
        if tta:
            lines.append(
                f"`create_model` and `torch.hub.load` give the plain network; `resnet-pl "
                f"classify` and `serve` apply the recorded {tta} TTA (the first row)."
            )
    else:
        lines.append("No metrics recorded for these weights.")
    lines += [
        "",
        "## Preprocessing",
        "",
        f"- input size (C, H, W): {_fmt(cfg.get('input_size'))}",
        f"- mean: {_fmt(cfg.get('mean'))}, std: {_fmt(cfg.get('std'))} (after scaling to [0, 1])",
        f"- resize interpolation: {cfg.get('interpolation')}, "
        f"crop_pct: {_fmt(cfg.get('crop_pct'))}",
        "- `resnet_pl.transforms(model.pretrained_cfg)` builds exactly this transform.",
        "",
    ]
    if categories:
        shown = ", ".join(str(c) for c in categories[:20])
        more = f" ... ({len(categories)} in all)" if len(categories) > 20 else ""
        lines += ["## Classes", "", shown + more, ""]
    lines += ["## Recipe", ""]
    if isinstance(recipe, Mapping):
        for key, value in recipe.items():
            if key == "config" and isinstance(value, Mapping):
                import yaml

                text = yaml.safe_dump(dict(value), sort_keys=False).rstrip()
                lines += ["- training config (LightningCLI):", "", "```yaml", text, "```", ""]
            else:
                lines.append(f"- {key}: `{value}`")
    else:
        lines.append(f"- {recipe or 'not recorded'}")
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "import torch",
        "import resnet_pl",
        "",
    ]
    if weights_name:
        lines += [
            f'model = resnet_pl.create_model("{weights_name}", pretrained=True).eval()',
            "# or, through torch.hub (offline from a clone: source='local'):",
            f'model = torch.hub.load("{GITHUB_REPO}", "{arch}", weights="'
            f'{weights_name.split(".", 1)[1]}", trust_repo=True)',
        ]
    else:
        where = hf_id or "path/to/this/folder"
        lines += [f'model = resnet_pl.ResNet.from_pretrained("{where}").eval()']
    lines += [
        "transform = resnet_pl.transforms(model.pretrained_cfg)",
        "# x = transform(pil_image).unsqueeze(0); probs = model(x).softmax(1)",
        "```",
        "",
        "ONNX export: `resnet-pl export --help`, or directly:",
        "",
        "```python",
        'c, h, w = model.pretrained_cfg["input_size"]',
        'torch.onnx.export(model, torch.zeros(1, c, h, w), "model.onnx", dynamo=True)',
        "```",
        "",
        "## Files and provenance",
        "",
        f"- weights: `{cfg.get('file') or cfg.get('url')}` (safetensors, fp32), sha256 "
        f"`{cfg.get('sha256')}`",
        f"- origin: {cfg.get('origin')}",
    ]
    if cfg.get("credit"):
        lines.append(f"- credit: {cfg.get('credit')}")
    lines += [
        f"- license: {cfg.get('license')}",
        f"- resnet-pl version: {cfg.get('resnet_pl_version')}",
        "",
        "## Limitations",
        "",
        f"Trained only on `{dataset}` images at {_fmt(cfg.get('input_size'))}; accuracy on other "
        "kinds of images is unknown. Check it on your own data before relying on it.",
        "",
    ]
    return "\n".join(lines)
