"""``HubMixin``: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` methods for models.

Kept free of imports at module level (``resnet_pl.models.resnet`` inherits from it, and importing
a model must not import ``huggingface_hub`` or ``safetensors``); each method delegates to
:mod:`resnet_pl.hub.hf`, which documents the folder format and the strict-loading rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


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
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        num_classes: int | None = None,
        in_chans: int | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> Any:
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
