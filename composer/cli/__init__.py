"""The ``composer`` command line (click): ``main`` (the group and its commands),
``options`` (shared options), ``evaluate``, ``serve`` and ``report`` (how results and
errors are printed). Option defaults are read from the config dataclasses."""
