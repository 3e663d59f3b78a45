"""The chaos lab: the shop as local processes, faults, experiments and their reports."""
