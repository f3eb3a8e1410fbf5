"""``python -m resnet_pl.cli ...``: the same as the ``resnet-pl`` command."""

import sys

from resnet_pl.cli import main

sys.exit(main())
