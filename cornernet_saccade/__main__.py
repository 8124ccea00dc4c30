import sys

from cornernet_saccade.cli import main

sys.exit(main())
