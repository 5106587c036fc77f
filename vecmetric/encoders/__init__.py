"""Encoders: one registry of sources and one factory, ``load_encoder(spec)``."""

from ._checkpoint import is_checkpoint_dir, load_checkpoint, read_checkpoint_config, save_checkpoint
from ._config import ArchitectureConfig, PreprocessConfig
from ._device import PRECISIONS, resolve_device, resolve_precision
from ._factory import ParsedSpec, load_encoder, parse_spec
from ._inference import Normalizer, inference_autocast
from ._registry import list_models, list_sources, register_source
from ._sources import DEFAULT_SPEC, RANDOM_TAG

__all__ = [
    "ArchitectureConfig",
    "DEFAULT_SPEC",
    "Normalizer",
    "PRECISIONS",
    "ParsedSpec",
    "PreprocessConfig",
    "RANDOM_TAG",
    "inference_autocast",
    "is_checkpoint_dir",
    "list_models",
    "list_sources",
    "load_checkpoint",
    "load_encoder",
    "parse_spec",
    "read_checkpoint_config",
    "register_source",
    "resolve_device",
    "resolve_precision",
    "save_checkpoint",
]
