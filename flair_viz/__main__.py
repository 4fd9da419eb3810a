import sys

from flair_viz.cli.main import main

sys.exit(main())
