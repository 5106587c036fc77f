"""vecmetric: deep metric learning and vector search over images.

The Python API behind the ``vecmetric`` command::

    from vecmetric import load_encoder, embed_directory, open_store, build_index, search_store

Heavy libraries (torch, timm, open_clip) are imported only when a function needs them.
"""

__version__ = "0.1.0"

_LAZY = {
    "load_encoder": "vecmetric.encoders",
    "list_models": "vecmetric.encoders",
    "save_checkpoint": "vecmetric.encoders",
    "embed_directory": "vecmetric.store",
    "open_store": "vecmetric.store",
    "build_index": "vecmetric.index",
    "search_store": "vecmetric.query",
    "exact_search": "vecmetric.index",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vecmetric' has no attribute {name!r}")
