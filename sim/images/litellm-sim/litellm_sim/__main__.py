"""`python3 -m litellm_sim [the proxy's arguments]`: the image's entrypoint."""

import sys

from .main import main

sys.exit(main())
