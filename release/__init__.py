"""Pre-release runs: a plan of models x targets, each pair tuned, built, verified and measured,
and a regression gate against the previous run's summary."""
