"""The benchmark suite: ``chaos-shop bench`` (see ``runner``)."""
