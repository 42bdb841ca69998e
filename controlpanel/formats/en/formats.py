"""English dates as the panel has always shown them: ISO-like, 24-hour, unambiguous worldwide.

Templates name a format (``|date:"SHORT_DATETIME_FORMAT"``) instead of spelling one, so German
pages get theirs from ../de/formats.py. Numbers keep Django's English separators (1,234.5).
"""

DATE_FORMAT = "j F Y"
DATETIME_FORMAT = "Y-m-d H:i:s"
TIME_FORMAT = "H:i"
YEAR_MONTH_FORMAT = "F Y"
MONTH_DAY_FORMAT = "j F"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
FIRST_DAY_OF_WEEK = 1  # Monday
DECIMAL_SEPARATOR = "."
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
