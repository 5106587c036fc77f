"""The command-line interface: a thin layer over the Python API."""


def main() -> None:
    """Entry point of the ``vecmetric`` console script."""
    from ._app import app

    app()


__all__ = ["main"]
