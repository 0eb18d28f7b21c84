"""tvmq: autotuning and target optimization of pre-quantized TFLite models on Apache TVM.

The package is one namespace over the repository's concern folders:

- ``tvmq.model``   what a model is: loading, fetching, inspection, inputs, the TFLite reference
- ``tvmq.targets`` what a machine is: named target profiles, host detection
- ``tvmq.tuner``   how we search and build: Relax import, compilation, MetaSchedule tuning
- ``tvmq.db``      what we remember: the tuning database
- ``tvmq.int8``    how integers are computed: QDQ to int8 lowering, dot-product intrinsics
- ``tvmq.report``  what we tell: verification, benchmark statistics, reports
- ``tvmq.cli``     the command-line entry points
"""

__version__ = "0.1.0"
