"""``python -m runwire`` is the ``runwire`` command."""

from runwire.cli import main

main()
