"""The command line: the napari-unet subcommands and their cluster variants."""

from napari_unet.cli.commands import main

__all__ = ["main"]
