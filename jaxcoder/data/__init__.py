

import logging


class _NoBigQueryNotice(logging.Filter):
    """apache-beam announces, when imported, that its optional BigQuery client libraries are
    missing (a root-logger warning on every `data prepare`); nothing here uses them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found")


logging.getLogger().addFilter(_NoBigQueryNotice())
