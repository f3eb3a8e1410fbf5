"""Hugging Face Hub-style folders: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

A folder (local, or a Hub model repo) holds:

- ``config.json``: ``architecture`` (registry name), ``arch_kwargs`` (builder options),
  ``num_classes``, ``in_chans``, ``pretrained_cfg`` (preprocessing, categories, metrics,
  recipe ...), and the ``sha256`` of the weights file;
- ``model.safetensors``: the fp32 state dict (never a pickle);
- ``README.md``: a model card (:class:`huggingface_hub.ModelCard`) whose YAML header
  (``library_name``, ``tags``, ``datasets``, ``metrics`` and the measured accuracies as a
  ``model-index``) is what the Hub reads and renders.

Built on :class:`huggingface_hub.ModelHubMixin`: :class:`HubAdapter` wraps a model and
provides the mixin's ``_save_pretrained`` / ``_from_pretrained`` / ``generate_model_card``, so
saving, downloading (straight from the Hugging Face cache, in place) and uploading follow the
library's conventions. Unlike ``PyTorchModelHubMixin`` (which loads with ``strict=False`` by
default), loading is **strict**, the weights file must match the sha256 recorded in
``config.json``, and ``config.json`` must agree with the shapes in the safetensors header
before anything is allocated; the only adaptations are the warned ones of every load in
resnet-pl (a classifier of another size re-initialised, a stem of another channel count
adapted). This module imports ``huggingface_hub``, so it is imported only when used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelHubMixin, hf_hub_download
from torch import Tensor, nn

from resnet_pl.fileio import WriteError, as_write_error, atomic_paths, make_dirs, write_with
from resnet_pl.hub.card import (  # noqa: F401 (card_data & co.: re-exported, their old home)
    CARD_TAGS,
    GITHUB_REPO,
    card_data,
    model_card,
    render_card_body,
    render_model_card,
)
from resnet_pl.hub.files import check_safetensors, read_state_dict, sha256_file
from resnet_pl.hub.loading import load_into, model_cfg, structural_kwargs
from resnet_pl.hub.weights import (
    WeightsMismatchError,
    WeightsVerificationError,
    _tuples,
    jsonable,
    package_version,
)
from resnet_pl.models.registry import get_builder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FOLDER_FORMAT = "resnet-pl/1"


def _architecture(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None)
    arch = cfg.get("architecture") if isinstance(cfg, Mapping) else None
    if not arch:
        raise ValueError(
            "this model has no pretrained_cfg['architecture']: build it with "
            "resnet_pl.create_model(...) so it can be saved and rebuilt by name"
        )
    return str(arch)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _meta_twin(arch: str, num_classes: int, in_chans: int, arch_kwargs: Mapping[str, Any]) -> Any:
    """``arch`` built on the meta device: its state-dict shapes, for free (no memory, even for
    absurd sizes)."""
    with torch.device("meta"):
        return get_builder(arch)(num_classes=num_classes, in_chans=in_chans, **arch_kwargs)


def _check_rebuildable(
    model: nn.Module, arch: str, arch_kwargs: dict[str, Any], num_classes: int, in_chans: int
) -> None:
    """Build ``arch`` with the options to be saved (on the meta device: free) and check its state
    dict has the same keys and shapes, so the folder is sure to load strictly."""
    want, got = _shapes(model), _shapes(_meta_twin(arch, num_classes, in_chans, arch_kwargs))
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:4]
        raise ValueError(
            f"create_model({arch!r}, **{arch_kwargs}) does not rebuild this model (differs in "
            f"{diff}); pass the options it was built with: save_pretrained(dir, "
            f"arch_kwargs={{...}})"
        )


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors file's header (``safe_open``: no tensor is
    read or allocated)."""
    from safetensors import safe_open

    check_safetensors(path)  # a pickle or a torn file: the clear message, nothing unpickled
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as err:  # SafetensorError for a damaged header
        raise WeightsVerificationError(f"{path}: unreadable safetensors header: {err}") from None


def check_config_matches_weights(
    config: Mapping[str, Any], config_path: Path, weights_path: Path
) -> None:
    """Refuse a folder whose ``config.json`` describes another network than its weights file
    (say ``num_classes: 1000000000``), comparing the shapes the config implies (a meta-device
    build) with the safetensors header, before any real tensor is allocated.

    Raises:
        WeightsMismatchError: naming the sizes that disagree and the fix.
    """
    arch = str(config["architecture"])
    try:
        num_classes, in_chans = int(config["num_classes"]), int(config["in_chans"])
        twin = _meta_twin(arch, num_classes, in_chans, dict(config.get("arch_kwargs") or {}))
    except (TypeError, ValueError) as err:
        raise WeightsMismatchError(
            f"{config_path} describes no buildable {arch!r} ({err}); fix config.json or re-save "
            f"the folder with model.save_pretrained"
        ) from None
    want, got = _shapes(twin), safetensors_shapes(weights_path)
    if want != got:
        diff = [
            f"{k}: config implies {want.get(k)}, weights hold {got.get(k)}"
            for k in sorted(set(want) | set(got))
            if want.get(k) != got.get(k)
        ]
        raise WeightsMismatchError(
            f"{config_path} (num_classes={num_classes}, in_chans={in_chans}) disagrees with "
            f"{weights_path.name}: {'; '.join(diff[:3])}{' ...' if len(diff) > 3 else ''}. "
            f"The config was edited or belongs to other weights: re-save the folder with "
            f"model.save_pretrained (to change the class count, load it and pass num_classes)"
        )


def fp32_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Contiguous CPU tensors, floating point ones as fp32 (integer buffers kept)."""
    out: dict[str, Tensor] = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        out[k] = (v.float() if v.is_floating_point() else v).contiguous()
    return out


_WRITE_HINT = "free space there or choose another folder; files already there are intact"


def save_safetensors_to(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write ``model``'s :func:`fp32_state_dict` to ``path`` (e.g. a temporary path of
    :func:`resnet_pl.fileio.atomic_paths`), readable by all (safetensors creates files private
    to the user)."""
    from safetensors.torch import save_file

    save_file(fp32_state_dict(model), str(path), metadata=metadata)
    path.chmod(0o644)


def write_safetensors(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write ``model``'s :func:`fp32_state_dict` to ``path`` atomically (through a temporary
    file beside it); a full disk raises :class:`~resnet_pl.fileio.WriteError` (safetensors
    itself raises a bare ``SafetensorError ... os error 28``) and leaves any previous file as it
    was."""
    write_with(path, lambda tmp: save_safetensors_to(model, tmp, metadata), hint=_WRITE_HINT)


class HubAdapter(
    ModelHubMixin,
    library_name="resnet-pl",
    repo_url=f"https://github.com/{GITHUB_REPO}",
    pipeline_tag="image-classification",
    tags=list(CARD_TAGS),  # a copy: the mixin appends its own tag to the list it is given
):
    """A resnet-pl model seen through :class:`huggingface_hub.ModelHubMixin`.

    ``HubAdapter(model, overrides).save_pretrained(dir)`` / ``.push_to_hub(repo_id)`` and
    ``HubAdapter.from_pretrained(dir_or_repo_id).model`` are what :func:`save_pretrained`,
    :func:`push_to_hub` and :func:`from_pretrained` (and the methods of
    :class:`resnet_pl.ResNet`) run. The model is wrapped, not subclassed, so the model layer
    never imports ``huggingface_hub`` (see :mod:`resnet_pl.models.hub_hooks`).
    """

    def __init__(
        self,
        model: nn.Module,
        overrides: Mapping[str, Any] | None = None,
        rebuild_kwargs: Mapping[str, Any] | None = None,
        card: bool = True,
    ) -> None:
        self.model = model
        self.overrides = dict(overrides or {})
        self.rebuild_kwargs = None if rebuild_kwargs is None else dict(rebuild_kwargs)
        self.card = card
        self.config: dict[str, Any] = {}

    # ---- saving ------------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        """Weights first, then ``config.json`` recording their sha256 (the mixin leaves a
        config written here alone)."""
        model = self.model
        cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
        cfg.update(self.overrides)
        arch = str(cfg.get("architecture") or _architecture(model))
        kwargs = structural_kwargs(
            self.rebuild_kwargs if self.rebuild_kwargs is not None else cfg.get("arch_kwargs")
        )
        if getattr(model, "features_only", False):
            kwargs["features_only"] = True
            kwargs["out_indices"] = list(getattr(model, "out_indices", ()))
        num_classes = int(getattr(model, "num_classes", cfg.get("num_classes") or 0))
        in_chans = int(getattr(model, "in_chans", cfg.get("input_size", (3,))[0]))
        _check_rebuildable(model, arch, kwargs, num_classes, in_chans)

        weights = save_directory / WEIGHTS_NAME
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
        self.config = {
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
        text = json.dumps(self.config, indent=2) + "\n"
        (save_directory / CONFIG_NAME).write_text(text, encoding="utf-8")
        card = save_directory / CARD_NAME
        if self.card:
            card.unlink(missing_ok=True)  # the mixin writes a card only where none exists

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        return _SkippedCard() if not self.card else model_card(self.config)

    # ---- loading -----------------------------------------------------------------------------
    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        num_classes: int | None = None,
        in_chans: int | None = None,
        builder_kwargs: Mapping[str, Any] | None = None,
        **unused: Any,
    ) -> HubAdapter:
        folder = Path(model_id)
        if folder.is_dir():
            config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        else:
            # Straight from the Hugging Face cache (downloaded there if needed), used in place.
            def fetch(filename: str) -> Path:
                return Path(
                    hf_hub_download(
                        model_id,
                        filename,
                        revision=revision,
                        cache_dir=cache_dir,
                        force_download=force_download,
                        local_files_only=local_files_only,
                        token=token,
                        library_name="resnet-pl",
                        library_version=package_version(),
                    )
                )

            config_path, weights_path = fetch(CONFIG_NAME), fetch(WEIGHTS_NAME)
        config = read_config(config_path)
        if not weights_path.is_file():
            raise FileNotFoundError(f"{weights_path} not found beside {config_path}")
        expected = config.get("sha256")
        digest = sha256_file(weights_path)
        if expected and digest != expected:
            raise WeightsVerificationError(
                f"sha256 mismatch for {weights_path}: config.json records {expected}, the file "
                f"is {digest} ({weights_path.stat().st_size} bytes). The folder is corrupt or "
                f"was modified; re-save or re-download it (force_download for Hub files)."
            )
        check_config_matches_weights(config, config_path, weights_path)
        state = read_state_dict(weights_path, "safetensors")
        arch = str(config["architecture"])
        options = {**dict(config.get("arch_kwargs") or {}), **dict(builder_kwargs or {})}
        model = get_builder(arch)(
            num_classes=int(config["num_classes"]) if num_classes is None else num_classes,
            in_chans=int(config["in_chans"]) if in_chans is None else in_chans,
            **options,
        )
        adapted = load_into(model, state, name=model_id)
        cfg = _tuples(model_cfg(arch, config.get("pretrained_cfg") or {}, adapted, model_id))
        cfg["arch_kwargs"] = structural_kwargs(options)
        model.pretrained_cfg = cfg  # type: ignore[assignment]
        return cls(model)


class _SkippedCard(ModelCard):
    """What :meth:`HubAdapter.generate_model_card` returns for ``model_card=False``: saving it
    writes nothing."""

    def __init__(self) -> None:
        super().__init__("", ignore_metadata_errors=True)

    def save(self, filepath: Any) -> None:
        return None


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
    make_dirs(folder.parent, _WRITE_HINT)
    created = not folder.exists()
    # The mixin writes into a staging folder beside the target; its files are then renamed
    # into place as one group (all fsynced before the first rename), so a full disk, an error
    # or Ctrl-C at any point leaves an earlier save in `folder` byte-identical, and a failed
    # first save leaves no (empty) folder.
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as err:
        raise (as_write_error(folder, err, _WRITE_HINT) or err) from None
    try:
        try:
            HubAdapter(model, pretrained_cfg, arch_kwargs, model_card).save_pretrained(stage)
        except Exception as err:
            error = as_write_error(folder, err, _WRITE_HINT)
            if error is None:
                raise
            if stage in error.path.parents:  # name the file the user asked for, not the stage
                cause = OSError(error.errno, error.strerror)
                error = WriteError(folder / error.path.relative_to(stage), cause, _WRITE_HINT)
            raise error from err
        names = sorted(p.name for p in stage.iterdir() if p.is_file())
        with atomic_paths([folder / n for n in names], hint=_WRITE_HINT) as temps:
            for name, tmp in zip(names, temps, strict=True):
                os.replace(stage / name, tmp)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # only if empty: never someone else's files
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return folder


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
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Rebuild a model from a ``save_pretrained`` folder or a Hub repo id (``"user/name"``).

    The weights file's sha256 must match the one in ``config.json``, and ``config.json`` the
    shapes in the weights file; loading is strict, with a re-initialised classifier if
    ``num_classes`` differs and an adapted stem if ``in_chans`` differs (each warned about).
    Hub files are used in place in the Hugging Face cache (``cache_dir``, ``force_download``,
    ``local_files_only`` as in :func:`huggingface_hub.hf_hub_download`). Extra ``kwargs`` go
    to the builder (e.g. ``drop_path_rate``).
    """
    local = Path(name_or_path)
    if local.is_dir():
        read_config(local / CONFIG_NAME)  # our clear errors, before the mixin parses it
    elif local.exists() or str(name_or_path).count("/") != 1:
        raise FileNotFoundError(
            f"{name_or_path!s} is neither a folder holding {CONFIG_NAME} and {WEIGHTS_NAME} "
            f"nor a Hugging Face Hub repo id ('user/name')"
        )

    def load() -> nn.Module:
        adapter = HubAdapter.from_pretrained(
            str(name_or_path),
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            num_classes=num_classes,
            in_chans=in_chans,
            builder_kwargs=kwargs,
        )
        return adapter.model

    if local.is_dir():
        return load()
    try:
        return load()
    except (WeightsVerificationError, WeightsMismatchError):
        raise
    except Exception as err:  # not found, offline, no access, a foreign config: one clear line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(
            f"{str(name_or_path)!r} is not a local folder, and fetching it from the Hugging Face "
            f"Hub failed: {first}"
        ) from None


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
    the Hub repo ``repo_id`` (created if needed), through ``ModelHubMixin.push_to_hub``.
    Returns the commit URL."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg["hf_hub_id"] = repo_id
    info = HubAdapter(model, cfg, arch_kwargs).push_to_hub(
        repo_id,
        commit_message=commit_message,
        private=private,
        token=token if isinstance(token, str) else None,
        branch=revision,
        create_pr=create_pr,
    )
    return str(getattr(info, "commit_url", info))
