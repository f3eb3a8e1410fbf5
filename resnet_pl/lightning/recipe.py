"""``recipe: auto`` (configs/finetune.yaml): fill the options a user left unset from what the
image folder and the starting weights are (:mod:`resnet_pl.data.recipe`), print the decisions
at the start of ``fit``, and save them beside the run's logs (``recipe.json``).

An option counts as set by the user when it appears on the command line (``--model.lr 0.01``,
``--model.lr=0.01``) or in any ``--config`` file; the recipe never changes those."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnet_pl.lightning.errors import ConfigError

RECIPE_MODES = ("off", "auto")


def explicit_keys(argv: Sequence[str]) -> dict[str, Any]:
    """Dotted option keys a command sets, with their values (command line over config
    files), e.g. ``{"model.lr": "0.01", "data.data_dir": "imgs"}``."""
    import yaml

    given: dict[str, Any] = {}
    args = list(argv)
    for i, arg in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else None
        if arg in ("--config", "-c") or arg.startswith("--config="):
            path = arg.split("=", 1)[1] if "=" in arg else value
            try:
                loaded = yaml.safe_load(Path(str(path)).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue  # LightningCLI reports it
            if isinstance(loaded, dict):
                if isinstance(loaded.get("fit"), dict) and "model" not in loaded:
                    loaded = loaded["fit"]
                given.update(_flatten(loaded))
    for i, arg in enumerate(args):
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            continue
        key, sep, inline = arg[2:].partition("=")
        given[key] = inline if sep else (args[i + 1] if i + 1 < len(args) else None)
    return given


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        # Sections and option groups (model.optim.lr ...); dict-valued options stay whole.
        if isinstance(v, Mapping) and k not in ("model_kwargs", "dict_kwargs", "callbacks"):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _set(cfg: Any, key: str, value: Any) -> None:
    section, _, rest = key.partition(".")
    if section == "model" and "init_args" in cfg["model"]:  # subclass mode
        key = f"model.init_args.{rest}"
    cfg[key] = value  # a jsonargparse Namespace takes dotted keys, groups included


def apply_recipe(
    cfg: Any, argv: Sequence[str], run_dir: Path | None, *, data_only: bool = False
) -> str:
    """Decide and write the unset options into ``cfg`` (a LightningCLI ``fit`` config; with
    ``data_only``, for validate/test/predict, only the ``data.*`` ones); return the printed
    block."""
    from resnet_pl.data.folder import scan_image_folder
    from resnet_pl.data.recipe import decide, decision_block, folder_stats
    from resnet_pl.lightning.start_weights import weights_record

    data = cfg["data"]
    if data.get("dataset") != "imagefolder" or not data.get("data_dir"):
        raise ConfigError(
            "recipe auto adapts training to an image folder: give --data.data_dir DIR "
            "(DIR/train/<class>/<images>)"
        )
    given = explicit_keys(argv)
    info = scan_image_folder(Path(str(data["data_dir"])).expanduser())
    stats = folder_stats(info)
    weights = given.get("model.weights", "__default__")
    if weights in ("null", "None", "none", ""):
        weights = None
    decisions = decide(
        stats,
        weights=weights,
        weights_cfg=None,
        given=given,
        val_fraction=float(data.get("val_fraction") or 0.1),
    )
    chosen = {d.key: d.value for d in decisions if d.key != "note"}
    weights = chosen.get("model.weights", weights)
    if weights:
        # Now that the weights are known, decide again with their record (input size).
        record = weights_record(str(weights))
        decisions = decide(
            stats,
            weights=str(weights),
            weights_cfg=record,
            given={**given, "model.weights": weights},
            val_fraction=float(data.get("val_fraction") or 0.1),
        )
    from resnet_pl.data.recipe import Decision

    decisions = [d for d in decisions if d.key != "model.weights"]
    if "model.weights" in given:
        decisions.insert(0, Decision("model.weights", weights, "set by you", given=True))
    else:
        decisions.insert(0, Decision("model.weights", weights, _weights_reason(stats)))
    for d in decisions:
        if d.key == "note" or d.given or (data_only and not d.key.startswith("data.")):
            continue
        _set(cfg, d.key, d.value)
    block = decision_block(stats, decisions)
    if data_only:
        # A checkpoint's recorded input wins: test/predict see what training saw.
        model = cfg["model"].get("init_args") or cfg["model"]
        info = model.get("data_info") or {}
        recorded = info.get("input_size") if hasattr(info, "get") else None
        if recorded:
            for key, value in (("data.in_chans", recorded[0]), ("data.image_size", recorded[-1])):
                if key not in given:
                    _set(cfg, key, int(value))
        return block
    if run_dir is not None:
        payload = {
            "folder": stats.__dict__,
            "decisions": [
                {"key": d.key, "value": d.value, "reason": d.reason, "set_by_user": d.given}
                for d in decisions
            ],
        }
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "recipe.json").write_text(json.dumps(payload, indent=2, default=str))
        except OSError:
            pass  # the run's own writes report an unwritable folder
    return block


def _weights_reason(stats: Any) -> str:
    from resnet_pl.data.specs import SMALL_IMAGE_MAX

    small = stats.median_side <= SMALL_IMAGE_MAX
    return (
        "the best shipped weights for small images (--model.weights null: from scratch)"
        if small
        else "ImageNet weights for photos, downloaded once and verified"
    )
