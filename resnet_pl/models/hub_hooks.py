"""The two doors from the model layer up to the weights hub, both opened only when called.

``resnet_pl.models`` is the bottom layer: importing it imports no hub, Lightning, ONNX or
``huggingface_hub`` module. Two conveniences still have to reach the hub from here:

- ``resnet50(pretrained=True)`` (the named builders) loads verified weights;
- ``ResNet.from_pretrained`` / ``model.save_pretrained`` / ``model.push_to_hub`` (the Hugging
  Face Hub convention, methods on the model class).

Both import :mod:`resnet_pl.factory` / :mod:`resnet_pl.hub.hf` **inside the call**, and this is
the only module of the layer that does (a test checks it).

Why a lazy mixin rather than ``huggingface_hub.PyTorchModelHubMixin`` as a base of
:class:`~resnet_pl.models.ResNet`: that base class runs at class definition (it inspects
``__init__``, builds model card metadata) and so needs ``huggingface_hub`` imported with the
model, which the layering forbids. Applying it to a subclass instead would leave the models
that ``create_model`` and the builders return without the methods, or give two ``ResNet``
classes. So the methods live here, and :mod:`resnet_pl.hub.hf` implements them with
``huggingface_hub.ModelHubMixin`` (an adapter class around the model), keeping resnet-pl's
strict loading and sha256 checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

T = TypeVar("T", bound="HubMixin")


def load_pretrained(arch: str, **kwargs: Any) -> nn.Module:
    """``create_model(arch, pretrained=True, **kwargs)``: the default weights of ``arch``,
    sha256-checked, loaded strictly (see :mod:`resnet_pl.hub.files`)."""
    from resnet_pl.factory import create_model

    return create_model(arch, pretrained=True, **kwargs)


class HubMixin:
    """Hugging Face Hub-style persistence for registry-built models (strict loading)."""

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        arch_kwargs: Mapping[str, Any] | None = None,
        model_card: bool = True,
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card to
        ``save_directory`` (see :func:`resnet_pl.hub.hf.save_pretrained`)."""
        from resnet_pl.hub.hf import save_pretrained

        return save_pretrained(
            self,  # type: ignore[arg-type]
            save_directory,
            arch_kwargs=arch_kwargs,
            model_card=model_card,
        )

    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained_model_name_or_path: str | Path,
        *,
        num_classes: int | None = None,
        in_chans: int | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> T:
        """Rebuild a model from a ``save_pretrained`` folder or a Hub repo id, verified by the
        sha256 in its ``config.json`` and loaded strictly (see
        :func:`resnet_pl.hub.hf.from_pretrained`)."""
        from resnet_pl.hub.hf import from_pretrained

        model = from_pretrained(
            pretrained_model_name_or_path,
            num_classes=num_classes,
            in_chans=in_chans,
            revision=revision,
            token=token,
            **kwargs,
        )
        if not isinstance(model, cls):
            raise TypeError(
                f"{pretrained_model_name_or_path!s} holds a {type(model).__name__}, not a "
                f"{cls.__name__}; load it with resnet_pl.hub.from_pretrained"
            )
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        commit_message: str = "Upload resnet-pl model",
        revision: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload config, safetensors weights and model card to the Hub repo ``repo_id``
        (created if needed); returns the commit URL."""
        from resnet_pl.hub.hf import push_to_hub

        return push_to_hub(
            self,  # type: ignore[arg-type]
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )
