"""``python -m napari_unet.cli``: the ``napari-unet`` command."""

import sys

from napari_unet.cli.commands import main

sys.exit(main())
