"""What we tell: verification against TFLite, latency statistics, and the reports.

- :mod:`tvmq.report.verify` compares TVM's outputs with TFLite's (tie-aware top-5, element-wise)
- :mod:`tvmq.report.stats`  latency statistics
- :mod:`tvmq.report.render` the terminal tables, the JSON and the Markdown report
"""
