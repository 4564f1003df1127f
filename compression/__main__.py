import sys

from compression.cli import main

sys.exit(main())
