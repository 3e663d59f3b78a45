"""Plain, greppable log lines on stderr for every process of the shop."""

import logging

from shop.settings import get_settings


def configure_logging() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
