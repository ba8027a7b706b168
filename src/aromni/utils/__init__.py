"""Small helpers with no model logic: atomic file I/O, seeding, progress."""
