"""Hugging Face Hub-style folders: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

A folder (local, or a Hub model repo) holds:

- ``config.json``: ``architecture`` (registry name), ``arch_kwargs`` (builder options),
  ``num_classes``, ``in_chans``, ``pretrained_cfg`` (preprocessing, categories, metrics,
  recipe ...), and the ``sha256`` of the weights file;
- ``model.safetensors``: the fp32 state dict (never a pickle);
- ``README.md``: a model card (metrics, dataset, recipe, usage with ``create_model``,
  ``torch.hub`` and ONNX).

This mirrors ``huggingface_hub.PyTorchModelHubMixin`` but loads **strictly** (that mixin loads
with ``strict=False`` by default) with the same two explicit adaptations as every other load in
resnet-pl: a classifier of another size is re-initialised, a stem of another channel count is
adapted, each with a warning. ``huggingface_hub`` is imported only when the Hub is used.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnet_pl.hub.pretrained import (
    load_into,
    model_cfg,
    read_state_dict,
    sha256_file,
    structural_kwargs,
)
from resnet_pl.hub.weights import WeightsVerificationError, _tuples, jsonable, package_version
from resnet_pl.models.registry import get_builder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FOLDER_FORMAT = "resnet-pl/1"
GITHUB_REPO = "resnet-pl/resnet-pl"


def _architecture(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None)
    arch = cfg.get("architecture") if isinstance(cfg, Mapping) else None
    if not arch:
        raise ValueError(
            "this model has no pretrained_cfg['architecture']: build it with "
            "resnet_pl.create_model(...) so it can be saved and rebuilt by name"
        )
    return str(arch)


def _check_rebuildable(
    model: nn.Module, arch: str, arch_kwargs: dict[str, Any], num_classes: int, in_chans: int
) -> None:
    """Build ``arch`` with the options to be saved (on the meta device: free) and check its state
    dict has the same keys and shapes, so the folder is sure to load strictly."""
    with torch.device("meta"):
        twin = get_builder(arch)(num_classes=num_classes, in_chans=in_chans, **arch_kwargs)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:4]
        raise ValueError(
            f"create_model({arch!r}, **{arch_kwargs}) does not rebuild this model (differs in "
            f"{diff}); pass the options it was built with: save_pretrained(dir, "
            f"arch_kwargs={{...}})"
        )


def fp32_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Contiguous CPU tensors, floating point ones as fp32 (integer buffers kept)."""
    out: dict[str, Tensor] = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        out[k] = (v.float() if v.is_floating_point() else v).contiguous()
    return out


def write_safetensors(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write ``model``'s :func:`fp32_state_dict` to ``path`` atomically (through a temporary
    file beside it), readable by all (safetensors creates files private to the user)."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file(fp32_state_dict(model), str(tmp), metadata=metadata)
    os.replace(tmp, path)
    path.chmod(0o644)


def save_pretrained(
    model: nn.Module,
    save_directory: str | Path,
    *,
    arch_kwargs: Mapping[str, Any] | None = None,
    pretrained_cfg: Mapping[str, Any] | None = None,
    model_card: bool = True,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (by default) ``README.md`` to
    ``save_directory``.

    Args:
        model: a model built by :func:`resnet_pl.create_model` (it knows its architecture).
        arch_kwargs: builder options needed to rebuild it; default: those recorded in its
            ``pretrained_cfg`` (set when it was built from weights). Checked by rebuilding.
        pretrained_cfg: overrides ``model.pretrained_cfg`` (e.g. with measured metrics).
        model_card: also write the model card.

    Returns:
        The folder.
    """
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.update(dict(pretrained_cfg or {}))
    arch = str(cfg.get("architecture") or _architecture(model))
    kwargs = structural_kwargs(arch_kwargs if arch_kwargs is not None else cfg.get("arch_kwargs"))
    if getattr(model, "features_only", False):
        kwargs["features_only"] = True
        kwargs["out_indices"] = list(getattr(model, "out_indices", ()))
    num_classes = int(getattr(model, "num_classes", cfg.get("num_classes") or 0))
    in_chans = int(getattr(model, "in_chans", cfg.get("input_size", (3,))[0]))
    _check_rebuildable(model, arch, kwargs, num_classes, in_chans)

    weights = folder / WEIGHTS_NAME
    write_safetensors(
        model,
        weights,
        {"format": "pt", "architecture": arch, "resnet_pl_version": package_version()},
    )
    digest = sha256_file(weights)
    cfg.update(
        {
            "architecture": arch,
            "arch_kwargs": kwargs,
            "num_classes": num_classes,
            "file": WEIGHTS_NAME,
            "url": None,
            "sha256": digest,
            "sha256_prefix": None,
            "file_size": weights.stat().st_size,
            "resnet_pl_version": cfg.get("resnet_pl_version") or package_version(),
        }
    )
    config = {
        "format": FOLDER_FORMAT,
        "library_name": "resnet-pl",
        "architecture": arch,
        "arch_kwargs": kwargs,
        "num_classes": num_classes,
        "in_chans": in_chans,
        "weights_file": WEIGHTS_NAME,
        "sha256": digest,
        "resnet_pl_version": package_version(),
        "pretrained_cfg": jsonable(cfg),
    }
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if model_card:
        (folder / CARD_NAME).write_text(render_model_card(config), encoding="utf-8")
    return folder


def _fetch(
    name_or_path: str | Path, revision: str | None, token: str | bool | None
) -> tuple[Path, Path]:
    """config.json and model.safetensors of a local folder or a Hub repo id."""
    local = Path(name_or_path)
    if local.is_dir():
        return local / CONFIG_NAME, local / WEIGHTS_NAME
    if local.exists() or str(name_or_path).count("/") != 1:
        raise FileNotFoundError(
            f"{name_or_path!s} is neither a folder holding {CONFIG_NAME} and {WEIGHTS_NAME} "
            f"nor a Hugging Face Hub repo id ('user/name')"
        )
    from huggingface_hub import hf_hub_download

    repo = str(name_or_path)
    try:
        config = hf_hub_download(
            repo,
            CONFIG_NAME,
            revision=revision,
            token=token,
            library_name="resnet-pl",
            library_version=package_version(),
        )
        weights = hf_hub_download(
            repo,
            WEIGHTS_NAME,
            revision=revision,
            token=token,
            library_name="resnet-pl",
            library_version=package_version(),
        )
    except Exception as err:  # not found, offline, no access: one clear line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(
            f"{repo!r} is not a local folder, and fetching it from the Hugging Face Hub failed: "
            f"{first}"
        ) from None
    return Path(str(config)), Path(str(weights))


def read_config(path: Path) -> dict[str, Any]:
    """A folder's ``config.json``, checked for the keys needed to rebuild the model."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a resnet-pl save_pretrained folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a resnet-pl config (a JSON {type(config).__name__})")
    missing = [k for k in ("architecture", "num_classes", "in_chans") if k not in config]
    if config.get("format") != FOLDER_FORMAT or missing:
        raise ValueError(
            f"{path} is not a resnet-pl config (format {config.get('format')!r}, missing "
            f"{missing or 'nothing'}); it was written by another library?"
        )
    return dict(config)


def from_pretrained(
    name_or_path: str | Path,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Rebuild a model from a ``save_pretrained`` folder or a Hub repo id (``"user/name"``).

    The weights file's sha256 must match the one in ``config.json``; loading is strict, with a
    re-initialised classifier if ``num_classes`` differs and an adapted stem if ``in_chans``
    differs (each warned about). Extra ``kwargs`` go to the builder (e.g. ``drop_path_rate``).
    """
    config_path, weights_path = _fetch(name_or_path, revision, token)
    config = read_config(config_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} not found beside {config_path}")
    expected = config.get("sha256")
    digest = sha256_file(weights_path)
    if expected and digest != expected:
        raise WeightsVerificationError(
            f"sha256 mismatch for {weights_path}: config.json records {expected}, the file is "
            f"{digest} ({weights_path.stat().st_size} bytes). The folder is corrupt or was "
            f"modified; re-save or re-download it (force_download for Hub files)."
        )
    state = read_state_dict(weights_path, "safetensors")
    arch = str(config["architecture"])
    options = {**dict(config.get("arch_kwargs") or {}), **kwargs}
    model = get_builder(arch)(
        num_classes=int(config["num_classes"]) if num_classes is None else num_classes,
        in_chans=int(config["in_chans"]) if in_chans is None else in_chans,
        **options,
    )
    name = str(name_or_path)
    adapted = load_into(model, state, name=name)
    cfg = _tuples(model_cfg(arch, config.get("pretrained_cfg") or {}, adapted, name))
    cfg["arch_kwargs"] = structural_kwargs(options)
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    return model


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = "Upload resnet-pl model",
    revision: str | None = None,
    create_pr: bool = False,
    arch_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Save the model to a temporary folder (config, safetensors, model card) and upload it to
    the Hub repo ``repo_id`` (created if needed). Returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        cfg["hf_hub_id"] = repo_id
        save_pretrained(model, tmp, arch_kwargs=arch_kwargs, pretrained_cfg=cfg)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )
    return str(getattr(info, "commit_url", info))


# --------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def render_model_card(config: Mapping[str, Any], *, weights_name: str | None = None) -> str:
    """A Markdown model card (with Hub YAML front matter) for a folder or a shipped entry.

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
    license_id = str(cfg.get("license") or "unknown").split(" ")[0].lower()
    lines = [
        "---",
        "library_name: resnet-pl",
        f"license: {license_id}",
        "pipeline_tag: image-classification",
        "tags: [image-classification, resnet, pytorch, resnet-pl, safetensors]",
        f"datasets: [{dataset}]",
        "metrics: [accuracy]",
        "---",
        "",
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
        lines += ["| images | top-1 (%) | top-5 (%) |", "|---|---:|---:|"]
        split = metrics.get("split", "test")
        lines.append(
            f"| {dataset} {split}, all {metrics.get('n', '?')} | {_fmt(metrics['top1'])} | "
            f"{_fmt(metrics.get('top5', '-'))} |"
        )
        for key, value in metrics.items():
            if isinstance(value, Mapping) and "top1" in value:
                label = key.replace("first_", "first ")
                lines.append(
                    f"| {dataset} {split}, {label} | {_fmt(value['top1'])} | "
                    f"{_fmt(value.get('top5', '-'))} |"
                )
        source = metrics.get("source") or (
            f"measured by resnet-pl in {metrics.get('precision', 'fp32')} with the "
            "preprocessing below; `resnet-pl hub verify` re-measures them"
        )
        lines += ["", f"Accuracies {source}."]
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
        "c, h, w = model.pretrained_cfg['input_size']",
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
