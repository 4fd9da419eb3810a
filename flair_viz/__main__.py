import sys

from flair_viz.cli import main

sys.exit(main())
