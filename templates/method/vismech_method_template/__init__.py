"""A vismech method package: one method (`method.py`), its typed config (`config.py`), its test (`tests/`)."""
