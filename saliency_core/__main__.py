import sys

from saliency_core.cli import main

sys.exit(main())
