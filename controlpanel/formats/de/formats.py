"""German dates and numbers: 07.12.2026 08:30, 1.234,56 (see ../en/formats.py for the names)."""

DATE_FORMAT = "j. F Y"
DATETIME_FORMAT = "d.m.Y H:i:s"
TIME_FORMAT = "H:i"
YEAR_MONTH_FORMAT = "F Y"
MONTH_DAY_FORMAT = "j. F"
SHORT_DATE_FORMAT = "d.m.Y"
SHORT_DATETIME_FORMAT = "d.m.Y H:i"
FIRST_DAY_OF_WEEK = 1  # Monday
DECIMAL_SEPARATOR = ","
THOUSAND_SEPARATOR = "."
NUMBER_GROUPING = 3
