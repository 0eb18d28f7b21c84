"""How we search and build: Relax import, compilation, artifacts, MetaSchedule tuning.

- :mod:`tvmq.tuner.compile`   TFLite → Relax import and the build of a Relax module for a target
- :mod:`tvmq.tuner.artifact`  exported libraries with their metadata, loadable without recompiling
- :mod:`tvmq.tuner.tasks`     task extraction and de-duplication
- :mod:`tvmq.tuner.tune`      the MetaSchedule search with the XGBoost cost model
- :mod:`tvmq.tuner.scheduler` task selection that commits every batch as it is measured
- :mod:`tvmq.tuner.builder`   a builder that keeps its worker processes
- :mod:`tvmq.tuner.pool`      long-lived worker processes with per-task timeouts
- :mod:`tvmq.tuner.worker`    one worker process and its pipe protocol
- :mod:`tvmq.tuner.rules`     schedule rules and postprocessors for the int8 dot products
- :mod:`tvmq.tuner.runner`    local measurement in isolated processes
- :mod:`tvmq.tuner.remote`    measurement through TVM's RPC tracker
- :mod:`tvmq.tuner.layout`    per-profile layout and convolution-strategy transforms
"""
