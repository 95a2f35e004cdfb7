"""How good a model or its music is: ``likelihood`` (NLL against unigram and n-gram
baselines), ``musicstats`` (statistics of pieces against a corpus), ``copycheck`` (long
runs copied from the training data) and ``judge`` (both, for ``composer evaluate``)."""
