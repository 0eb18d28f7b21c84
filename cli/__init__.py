"""Command-line entry points: ``tvmq-tune``, ``tvmq-run`` and ``tvmq-db``.

Each one catches :class:`tvmq.errors.TvmqError` and ends with its one-line message and a
non-zero exit status; a user mistake never shows a traceback.
"""
