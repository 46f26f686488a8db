"""The one-shot protocol every method is measured by: which supports and queries, how a
prediction is scored and summarised, where predictions are cached, how work is spread over
processes. Methods plug in as functions; nothing here knows one method from another."""
