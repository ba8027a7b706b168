import sys

from aromni.cli.main import main

sys.exit(main())
