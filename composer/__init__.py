"""composer: learn music from MIDI files and compose new music.

The package is a chain of subpackages by purpose; data flows one way, and each package
imports only from those before it (``benchmarks/import_graph.py`` checks it)::

    core < midi < tokens < corpus < controls < model < training < evaluation < generation
         < serve < cli

``midi`` is the only code that touches MIDI libraries; ``docs/architecture.md`` maps it.
"""

__version__ = "0.1.0"
