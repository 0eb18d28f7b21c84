"""Issue 15's fuzz and fault corpus: hostile inputs, each ending in a class of outcome.

- ``flatbuffer``: seeded mutants of a TFLite model (bit flips, truncations, schema-aware edits);
- ``worker``: a long-lived process that takes each mutant through the first stages of a run;
- ``cli``, ``cases``, ``workspace``, ``server``: the scripted cases, each a real command;
- ``outcomes``: the classes (clean error, verdict, traceback, signal, hang) and their table;
- ``corpus``: all of it, side by side. ``tests/test_fuzz.py`` runs it; ``scripts/fuzz.py`` runs
  it with any seed and size.
"""
