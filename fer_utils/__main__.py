"""``python -m fer_utils …``: see :mod:`fer_utils.cli`."""

from fer_utils.cli import main

raise SystemExit(main())
