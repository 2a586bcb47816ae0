"""The frozen backbone every esq backbone builds on: taps through forward hooks, in batches,
under ``torch.inference_mode()``.

Frozen means frozen: parameters have ``requires_grad=False`` and the network stays in eval mode
whatever a parent module does (``train()`` is overridden), so BatchNorm statistics and dropout
never change. Subclasses name their tappable modules in order; a layer is requested by that name,
by its index in ``layers()``, or by an alias (``layer4`` for the last block of ResNet's stage 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esq import ConfigError, UnknownNameError, WithOptions, check_bool, check_int, did_you_mean
from esq_backbones.images import rgb_batch
from esq_backbones.weights import PretrainedFile, apply_weights, torchvision_file

LayerRequest = str | int | Sequence[str | int] | None


class _AllTapped(Exception):
    """Raised by the last hook: the rest of the forward pass is not needed."""


def freeze(module: nn.Module) -> None:
    module.eval()
    module.requires_grad_(False)


class FrozenBackbone(WithOptions, nn.Module):
    """A frozen ``network`` whose modules ``taps`` (name → module, in forward order) can be read.

    Subclasses set ``name`` and ``preprocess``, ``WEIGHTS`` (a torchvision weights enum member)
    or their own ``pretrained_files``, and may override ``_run`` (the forward pass that feeds the
    taps), ``_tap_output`` (e.g. dropping a class token) and ``_check_size``. Each constructor
    parameter of a subclass is stored under its own name (``weights``, ``layer`` and
    ``batch_size`` here), which is how ``options`` reads them back (``esq.WithOptions``).
    ``feature_dim`` is the default layer's width, measured once on a ``probe_size`` image.
    """

    name = "backbone"
    WEIGHTS: Any = None
    probe_size = 32

    def __init__(
        self,
        network: nn.Module,
        taps: Mapping[str, nn.Module],
        default_layer: str,
        *,
        weights: str | Path = "none",
        aliases: Mapping[str, nn.Module] | None = None,
        batch_size: int = 32,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.network = network
        freeze(network)
        self.weights = str(weights)
        self._taps = dict(taps)
        self._aliases = dict(aliases or {})
        self.layer = default_layer
        self.default_layer = self._layer_name(default_layer)
        self.batch_size = check_int(self.name, "batch_size", batch_size, minimum=1)
        self.channels_last = check_bool(self.name, "channels_last", channels_last)
        if self.channels_last:
            network.to(memory_format=torch.channels_last)

    @classmethod
    def pretrained_files(cls) -> list[PretrainedFile]:
        """The files ``weights="default"`` reads (``esq weights`` lists them)."""
        return [torchvision_file(cls.WEIGHTS)] if cls.WEIGHTS is not None else []

    @classmethod
    def load_weights(cls, weights: Any, network: nn.Module, **how: Any) -> None:
        """Random init, the default pretrained file, or a given file, into ``network``."""
        files = cls.pretrained_files()
        apply_weights(weights, cls.name, network, (lambda: files[0]) if files else None, **how)

    @property
    def feature_dim(self) -> int:
        """Channels (maps) or token width (tokens) of the default layer."""
        if "_feature_dim" not in self.__dict__:
            probe = torch.zeros(1, 3, self.probe_size, self.probe_size)
            output = self.features(probe, self.default_layer)[self.default_layer]
            self.__dict__["_feature_dim"] = int(output.shape[1] if output.ndim == 4 else output.shape[-1])
        return self.__dict__["_feature_dim"]

    def train(self, mode: bool = True) -> FrozenBackbone:
        super().train(mode)
        self.network.eval()
        for block in self.trainable_blocks():
            block.train(mode)
        return self

    def trainable_blocks(self) -> list[nn.Module]:
        """Parts of ``network`` that train with the head (none unless a subclass says so)."""
        return []

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def layers(self) -> list[str]:
        """Tappable layer names, in forward order; ``features`` also takes their indices."""
        return list(self._taps)

    def _layer_name(self, layer: str | int) -> str:
        names = self.layers()
        if isinstance(layer, int) and not isinstance(layer, bool):
            if not -len(names) <= layer < len(names):
                raise ConfigError(
                    f"{self.name}: layer index {layer} is out of range; it has {len(names)} layers "
                    f"(0–{len(names) - 1}): {', '.join(names)}"
                )
            return names[layer]
        if isinstance(layer, str) and (layer in self._taps or layer in self._aliases):
            return layer
        valid = names + sorted(self._aliases)
        raise UnknownNameError(
            f"{self.name}: unknown layer {layer!r}{did_you_mean(str(layer), valid)}; valid layers: {', '.join(valid)}"
        )

    def resolve_layers(self, layers: LayerRequest = None) -> list[str]:
        """Names for a request of one name or index, a list of them, or ``None`` (the default)."""
        if layers is None:
            return [self.default_layer]
        if isinstance(layers, (str, int)):
            layers = [layers]
        names = [self._layer_name(layer) for layer in layers]
        if not names:
            raise ConfigError(f"{self.name}: no layers requested; choose from {', '.join(self.layers())}")
        return list(dict.fromkeys(names))

    def _check_size(self, height: int, width: int) -> None:
        """Refuse image sizes the architecture cannot take (a ``DataError``)."""

    def _checked(self, images: torch.Tensor) -> torch.Tensor:
        images = rgb_batch(images, self.name)
        self._check_size(*images.shape[-2:])
        return images

    def _run(self, images: torch.Tensor) -> Any:
        return self.network(images)

    def _tap_output(self, name: str, output: torch.Tensor) -> torch.Tensor:
        return output

    @contextmanager
    def _tapping(self, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
        captured: dict[str, torch.Tensor] = {}

        def hook_for(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                output = output[0] if isinstance(output, (tuple, list)) else output
                if len(captured) + 1 == len(names):
                    captured[name] = output
                    raise _AllTapped
                # later in-place operations (ReLU(inplace=True) after a conv) would overwrite it
                captured[name] = output.clone()

            return hook

        modules = {**self._taps, **self._aliases}
        handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    def features(
        self, images: torch.Tensor, layers: LayerRequest = None, *, batch_size: int | None = None
    ) -> dict[str, torch.Tensor]:
        """``{layer: (N, C, H, W) maps or (N, T, D) tokens}`` for preprocessed ``images``.

        Runs in ``batch_size`` chunks under ``torch.inference_mode()`` with the whole network in
        eval mode, in the network's dtype, stopping each forward pass at the last requested layer;
        the hooks are removed afterwards. The results are ordinary tensors without history.
        """
        names = self.resolve_layers(layers)
        images = self._checked(images)
        size = check_int(self.name, "batch_size", batch_size, minimum=1) if batch_size is not None else self.batch_size
        parameter = next(self.network.parameters())
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        with self._all_eval(), torch.inference_mode(), self._tapping(names) as captured:
            for start in range(0, images.shape[0], size):
                batch = images[start : start + size]
                batch = batch.to(parameter.device, parameter.dtype, memory_format=memory_format)
                captured.clear()
                try:
                    self._run(batch)
                except _AllTapped:
                    pass
                for name in names:
                    parts[name].append(self._tap_output(name, captured[name]).contiguous())
        # outside inference mode: ordinary tensors, which a user may modify or train a model on
        return {name: torch.cat(chunks) if len(chunks) > 1 else chunks[0].clone() for name, chunks in parts.items()}

    @contextmanager
    def _all_eval(self) -> Iterator[None]:
        """The whole network in eval mode for an extraction, a trainable last block included
        (its BatchNorm statistics must not move); each block's mode is restored afterwards."""
        modes = [(module, module.training) for module in self.network.modules()]
        self.network.eval()
        try:
            yield
        finally:
            for module, mode in modes:
                module.training = mode
