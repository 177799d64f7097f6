import sys

from firstboot.cli import main

sys.exit(main())
